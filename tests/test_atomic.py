"""The atomic writers every cache and output goes through: the target appears only complete, and a failure
leaves the old file and no temp beside it."""

import os

import numpy as np
import pytest

from mona.atomic import atomic_dir, atomic_path, atomic_write, write_text


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_serves_writers_that_take_a_file_name(tmp_path):
    target = tmp_path / "sub" / "values.npy"
    with atomic_path(target) as tmp:
        # np.save appends ".npy" to a name without it; the temp keeps the suffix so the rename finds the file
        assert tmp.suffix == ".npy" and tmp.parent == target.parent and tmp != target
        np.save(tmp, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["values.npy"]


def test_atomic_path_removes_its_temp_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "values.npy"
    np.save(target, np.zeros(2))
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        np.save(tmp, np.ones(5))
        raise KeyboardInterrupt
    assert np.load(target).tolist() == [0.0, 0.0]
    assert list(tmp_path.iterdir()) == [target]


def test_two_writers_of_one_path_get_different_temps(tmp_path):
    target = tmp_path / "state.safetensors"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_bytes(b"a")
        second.write_bytes(b"b")
    assert target.read_bytes() == b"a"  # the outer block finishes last


def test_write_text_is_atomic_and_utf8(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    write_text(target, "caf\u00e9\n")
    assert target.read_bytes() == "caf\u00e9\n".encode()
    import mona.atomic as atomic

    real = atomic.os.replace

    def crash(*_a):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        write_text(target, "half")
    monkeypatch.setattr(atomic.os, "replace", real)
    assert target.read_text(encoding="utf-8") == "caf\u00e9\n" and list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole, not merged
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_atomic_dir_moves_the_old_folder_back_when_the_last_rename_fails(tmp_path, monkeypatch):
    import mona.atomic as atomic

    target = tmp_path / "sae"
    with atomic_dir(target) as tmp:
        (tmp / "cfg.json").write_text("{}")
    real = atomic.os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_second)
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "cfg.json").write_text('{"new": 1}')
    monkeypatch.setattr(atomic.os, "replace", real)
    assert (target / "cfg.json").read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["sae"]
