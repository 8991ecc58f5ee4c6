"""Compact ids for streamed pools: the id column, the hash-based duplicate check and ranking over compact ids."""

import numpy as np
import pytest

import mona.data.ids as ids_module
from conftest import write_jsonl
from mona.data.formats import Rejected
from mona.data.ids import IdColumn, scan_samples
from mona.data.readers import read_samples
from mona.errors import InputError
from mona.selection.budget import rank


def test_id_column_round_trips_and_is_compact():
    values = ["a", "", "élan-7", "x" * 300, "数据"]
    col = IdColumn(values)
    assert len(col) == 5 and list(col) == values
    assert [col[i] for i in range(5)] == values and col[-1] == "数据"
    with pytest.raises(IndexError):
        col[5]


def test_id_column_reads_back_across_buffer_flushes():
    values = [f"row-{i}-" + "é" * (i % 7) for i in range(5000)]
    col = IdColumn(buffer_bytes=64)  # flushes to the file every few ids
    col.extend(values[:2500])
    assert col[10] == values[10] and col[2499] == values[2499]  # one from the file, one maybe still buffered
    col.extend(values[2500:])
    assert list(col) == values
    assert [col[i] for i in (0, 1234, 4999, -1)] == [values[0], values[1234], values[4999], values[-1]]


ROWS = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"text": ""}, {"id": "a", "text": "z"},
        {"id": "b", "text": "w"}, {"id": "c", "text": "v"}, {"id": "a", "text": "u"}]


def test_scan_fails_on_the_first_duplicate_like_the_reader(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [r for r in ROWS if r.get("text")])
    with pytest.raises(InputError) as expected:
        read_samples(path)
    with pytest.raises(InputError) as got:
        scan_samples(path)
    assert str(got.value) == str(expected.value)
    assert "line 1" in str(got.value) and f"{path}:3:" in str(got.value)


def test_scan_skips_the_rows_the_reader_skips(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    expected: list[Rejected] = []
    kept = read_samples(path, rejects=expected)
    got: list[Rejected] = []
    assert scan_samples(path, rejects=got) == len(kept) == 3
    assert got == expected  # same rows, reasons and raw lines, in file order
    assert [r.line for r in got] == [3, 4, 5, 7]


def test_hash_collisions_never_reject_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(ids_module, "hash", lambda _: 42, raising=False)  # every id collides
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": f"r{i}", "text": "t"} for i in range(50)])
    assert scan_samples(path) == 50
    path2 = write_jsonl(tmp_path / "q.jsonl", [{"id": f"r{i % 40}", "text": "t"} for i in range(50)])
    with pytest.raises(InputError, match=r"duplicate id 'r0' \(first seen on line 1\)"):
        scan_samples(path2)


def test_rank_on_compact_ids_matches_sorting_by_score_then_id():
    rng = np.random.default_rng(0)
    n = 2000
    names = [f"id{v}" for v in rng.permutation(n)]
    scores = rng.integers(0, 30, n).astype(np.float64) / 7  # many ties
    scores[:5] = np.nan
    expected = sorted(range(n), key=lambda i: (np.isnan(scores[i]), -np.nan_to_num(scores[i]), names[i]))
    assert rank(IdColumn(names), scores).tolist() == expected
    assert rank(names, scores).tolist() == expected
