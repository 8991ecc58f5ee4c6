"""A run that cannot finish says so in one line and leaves no output: a write that fails (all outputs are
written together, or none), a cache that cannot be written, Ctrl-C (what was cached, how to resume), and
options that are wrong, refused before the pool is read."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from conftest import sentences, write_jsonl
from mona.cli import app
from mona.progress import RichProgress
from test_cli import MONA, make_files


def _invoke(args: list[str], cache: Path):
    return CliRunner().invoke(app, args, env={"MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "COLUMNS": "300"})


def _select(files, *extra: str, method: str = "random") -> list[str]:
    return ["select", "--pool", str(files["pool"]), "--target", str(files["target"]), "--budget", "3", "--method",
            method, "--out", str(files["out"]), "--scores", str(files["scores"]), *extra]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- write failures


def test_failed_scores_write_leaves_no_output(files, monkeypatch):
    real = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:  # OUT is written first and succeeds; SCORES hits a full disk
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = _invoke(_select(files), files["cache"])
    assert result.exit_code == 3, result.output
    line = result.stderr.strip()
    assert line == (f"error: {files['scores']}: cannot write: No space left on device; no output of this run was "
                    "left behind")
    assert _leftovers(files["out"].parent) == []  # neither OUT nor any temp file


def test_failed_write_keeps_the_previous_outputs(files, monkeypatch):
    """An earlier run's OUT and SCORES survive a later run that cannot write (nothing was renamed over them)."""
    assert _invoke(_select(files), files["cache"]).exit_code == 0
    before = {p: p.read_bytes() for p in (files["out"], files["scores"])}

    def fsync(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    result = _invoke(_select(files, "--seed", "5"), files["cache"])
    assert result.exit_code == 3 and "cannot write: Input/output error" in result.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert _leftovers(files["out"].parent) == ["scores.jsonl", "sel.jsonl"]


def test_failed_rename_removes_the_outputs_already_renamed(files, monkeypatch):
    real = os.replace
    calls: list[str] = []

    def replace(src, dst) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    result = _invoke(_select(files), files["cache"])
    assert result.exit_code == 3, result.output
    assert f"{files['scores']}: cannot write: Invalid cross-device link" in result.stderr
    assert _leftovers(files["out"].parent) == []


def test_cache_that_cannot_be_written_is_one_line(files, monkeypatch, model_dir):
    from mona.features.cache import FeatureCache

    def write(self, hashes, matrix) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self.dir / "shard-x.npz"))

    monkeypatch.setattr(FeatureCache, "write", write)
    result = _invoke(_select(files, "--model", str(model_dir), method="hidden"), files["cache"])
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {files['cache']}: cannot write to the feature cache: Read-only file system (choose another "
        "--cache-dir, or --no-cache)")
    assert not files["out"].exists()


def test_other_commands_turn_os_errors_into_one_line(files, monkeypatch):
    """A failing write outside mona's own checks (here `mona report`) is one line, exit 3, no traceback."""
    assert _invoke(_select(files), files["cache"]).exit_code == 0
    import mona.atomic as output

    def fail(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(files["out"].parent / "r.html"))

    monkeypatch.setattr(output, "atomic_write", fail)
    result = _invoke(["report", "--pool", str(files["pool"]), "--scores", str(files["scores"]), "--out",
                      str(files["out"].parent / "r.html")], files["cache"])
    assert result.exit_code == 3, result.output
    assert result.stderr.strip() == f"error: {files['out'].parent / 'r.html'}: No space left on device"


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_says_what_was_cached_and_how_to_resume(files, monkeypatch, model_dir):
    from mona.features.cache import FeatureCache

    real = FeatureCache.write
    calls: list[int] = []

    def write(self, hashes, matrix) -> None:
        calls.append(len(hashes))
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(self, hashes, matrix)

    monkeypatch.setattr(FeatureCache, "write", write)
    args = _select(files, "--model", str(model_dir), "--batch-tokens", "16", method="hidden")
    result = _invoke(args, files["cache"])
    assert result.exit_code == 130, result.output
    done = calls[0] + calls[1]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: interrupted (Ctrl-C); no output was written; {done} rows featurized by this run are in the "
        f"feature cache {files['cache']}: run the same command again to resume from them")
    assert not files["out"].exists() and not files["scores"].exists()
    monkeypatch.setattr(FeatureCache, "write", real)
    rerun = _invoke(args, files["cache"])
    assert rerun.exit_code == 0
    assert f"cache hits {done}/" in rerun.stderr


def test_ctrl_c_with_a_method_without_cache(files, monkeypatch):
    import mona.selection.pipeline as pipeline

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "read_selected", interrupted)
    monkeypatch.setattr(pipeline, "top_order", interrupted)
    result = _invoke(_select(files), files["cache"])
    assert result.exit_code == 130
    assert result.stderr.strip() == ("error: interrupted (Ctrl-C); no output was written; random keeps no feature "
                                     "cache, so a rerun starts over")


def test_ctrl_c_while_the_pool_is_read(files, monkeypatch):
    import mona.selection.pipeline as pipeline

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "scan_samples", interrupted)
    result = _invoke(_select(files, method="hidden"), files["cache"])
    assert result.exit_code == 130
    assert result.stderr.strip() == ("error: interrupted (Ctrl-C); no output was written; no row was featurized "
                                     "yet: run the same command again")


def test_sigint_to_a_real_process(tmp_path, model_dir):
    """Ctrl-C as the terminal sends it: exit 130, one line, no OUT; the rerun reuses what was cached."""
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i:03d}", "text": t}
                                                 for i, t in enumerate(sentences(200, seed=3))])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in sentences(3, seed=4)])
    cache = tmp_path / "cache"
    args = [str(MONA), "select", "--pool", str(pool), "--target", str(target), "--budget", "5", "--method",
            "hidden", "--model", str(model_dir), "--batch-tokens", "32", "--out", str(tmp_path / "sel.jsonl"), "-q"]
    env = {**os.environ, "MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # a process started in the background by a non-interactive shell (`make test &`) inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: the child gets the disposition a terminal's would have
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while proc.poll() is None and len(list(cache.glob("features/*/shard-*.npz"))) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, errs = proc.communicate(timeout=60)
    assert proc.returncode == 130, errs
    lines = errs.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted (Ctrl-C); no output was written; ")
    assert "run the same command again to resume" in lines[0] and "Traceback" not in errs
    assert not (tmp_path / "sel.jsonl").exists()
    rerun = subprocess.run([a for a in args if a != "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "cache hits 0/" not in rerun.stderr


def test_progress_bar_is_not_drawn_complete_after_an_interrupt():
    def run(interrupt: bool) -> str:
        console = Console(file=io.StringIO(), width=120, force_terminal=False)
        bar = RichProgress(console)
        bar.start("pool", 10)
        bar.update(3, 0)
        if not interrupt:
            bar.finish()
        else:
            with contextlib.suppress(KeyboardInterrupt):
                try:
                    raise KeyboardInterrupt
                finally:  # as the pipeline calls it: while the interrupt propagates
                    bar.finish()
        return console.file.getvalue()

    assert "10/10" in run(False)
    drawn = run(True)
    assert "3/10" in drawn and "10/10" not in drawn


# ---------------------------------------------------------------- options checked before the pool is read

BAD_OPTIONS = {
    "--budget 0": (["--budget", "0"], "--budget must be at least 1, got 0"),
    "--budget -5": (["--budget", "-5"], "--budget must be at least 1, got -5"),
    "--ratio 0": (["--ratio", "0"], "--ratio must be in (0, 1], got 0.0"),
    "--ratio 1.5": (["--ratio", "1.5"], "--ratio must be in (0, 1], got 1.5"),
    "--ratio nan": (["--ratio", "nan"], "--ratio must be in (0, 1], got nan"),
    "both budgets": (["--ratio", "0.5", "--budget", "3"], "give exactly one of --ratio or --budget"),
    "no budget": ([], "give exactly one of --ratio or --budget"),
    "unknown method": (["--budget", "2", "--method", "nope"], "unknown method 'nope'"),
    "dsir --budget 0": (["--budget", "0", "--method", "dsir"], "--budget must be at least 1"),
    "dsir hash": (["--budget", "2", "--method", "dsir", "--dsir-hash", "md5"], "dsir: unknown hashing 'md5'"),
    "dsir buckets": (["--budget", "2", "--method", "dsir", "--dsir-buckets", "0"], "dsir: buckets and n-gram"),
    "bm25 combine": (["--budget", "2", "--method", "bm25", "--bm25-combine", "sum"], "unknown BM25 combination"),
    "bm25 prototype": (["--budget", "2", "--method", "bm25", "--prototype", "max"], "--prototype max needs a "
                                                                                     "feature-based method"),
    "less rank": (["--budget", "2", "--method", "less", "--less-rank", "0"], "--less-rank must be at least 1"),
    "pooling": (["--budget", "2", "--pooling", "median"], "unknown pooling 'median'"),
    "similarity": (["--budget", "2", "--similarity", "dot"], "unknown similarity 'dot'"),
    "render": (["--budget", "2", "--render", "fancy"], "unknown rendering 'fancy'"),
    "prototype": (["--budget", "2", "--prototype", "mean"], "unknown prototype mode 'mean'"),
    "k": (["--budget", "2", "--k", "0"], "--k must be at least 1"),
    "top-m": (["--budget", "2", "--top-m", "-1"], "--top-m must be at least 1"),
    "batch tokens": (["--budget", "2", "--batch-tokens", "0"], "--batch-tokens must be at least 1"),
    "max length": (["--budget", "2", "--max-length", "1"], "--max-length must be at least 2"),
    "stream rows": (["--budget", "2", "--stream-rows", "0"], "--stream-rows must be at least 1"),
    "on-error": (["--budget", "2", "--on-error", "ignore"], "unknown --on-error 'ignore'"),
    "too-long": (["--budget", "2", "--too-long", "cut"], "unknown --too-long 'cut'"),
    "backend": (["--budget", "2", "--backend", "spark"], "unknown --backend 'spark'"),
    "ray workers": (["--budget", "2", "--backend", "ray", "--num-workers", "0"], "--num-workers must be at least 1"),
    "threads": (["--budget", "2", "--threads", "0"], "--threads must be at least 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_options_are_checked_before_the_pool_is_read(tmp_path, case):
    """The pool does not exist: an option error that came after reading it would be 'no such file' (exit 3)."""
    extra, message = BAD_OPTIONS[case]
    args = ["select", "--pool", str(tmp_path / "missing.jsonl"), "--target", str(tmp_path / "missing-too.jsonl"),
            "--out", str(tmp_path / "sel.jsonl"), *extra]
    result = _invoke(args, tmp_path / "cache")
    assert result.exit_code == 4, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_budget_over_a_whole_read_pool_is_refused_before_scoring(files, monkeypatch):
    """dsir reads the pool whole; a budget larger than it is refused before any scoring."""
    import mona.selection.pipeline as pipeline

    def no_scoring(*_a, **_k):
        raise AssertionError("scored")

    monkeypatch.setattr(pipeline, "PoolScorer", no_scoring)
    result = _invoke(["select", "--pool", str(files["pool"]), "--target", str(files["target"]), "--budget", "99",
                      "--method", "dsir", "--out", str(files["out"])], files["cache"])
    assert result.exit_code == 4
    assert "--budget 99 is larger than the pool (12 rows)" in result.stderr


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


def test_usage_errors_have_their_own_exit_code(tmp_path):
    for args in (["select"], ["select", "--pool", "p", "--target", "t", "--out", "o", "--budget", "x"], ["nope"],
                 ["select", "--bogus"], ["sae", "train", "--bogus", "1"]):
        result = _invoke(args, tmp_path / "cache")
        assert result.exit_code == 64, (args, result.output)
