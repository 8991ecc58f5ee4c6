"""A damaged container (truncated or corrupt gzip/zstd, a corrupt Parquet file, a broken `save_to_disk`
directory) is a file-level error in one line, in fail and skip mode alike: never skipped rows, never a
traceback, and `mona select` leaves no OUT behind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mona.cli import app
from mona.data.formats import Rejected
from mona.data.readers import read_samples
from mona.errors import InputError
from test_cli import make_files

N_ROWS = 3000
ROWS = [{"id": f"r{i}", "text": f"hello world number {i} " + "abc " * (i % 7)} for i in range(N_ROWS)]
RAW = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def _flip(data: bytes, at: float = 0.5) -> bytes:
    out = bytearray(data)
    out[int(len(out) * at)] ^= 0xFF
    return bytes(out)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(write_checksum=True).compress(data)  # the zstd CLI's default


def _parquet(path: Path) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=500)
    return path.read_bytes()


def _save_to_disk(path: Path) -> Path:
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    Dataset.from_list(ROWS).save_to_disk(str(path))
    return path


def _arrow_file(folder: Path) -> Path:
    return next(folder.glob("*.arrow"))


# name -> (file name, a function writing the damaged file into tmp_path and returning its path, words expected)
def _write(name: str, data: bytes):
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path
    return make


def _corrupt_parquet(tmp: Path) -> Path:
    data = _parquet(tmp / "good.parquet")
    path = tmp / "pool.parquet"
    mid = len(data) // 2
    path.write_bytes(data[:mid] + bytes(200) + data[mid + 200:])
    return path


def _truncated_parquet(tmp: Path) -> Path:
    data = _parquet(tmp / "good.parquet")
    path = tmp / "pool.parquet"
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_state(tmp: Path) -> Path:
    path = _save_to_disk(tmp / "pool")
    (path / "state.json").write_text(json.dumps({"_data_files": [{"filename": "gone.arrow"}]}))
    return path


def _truncated_arrow(tmp: Path) -> Path:
    path = _save_to_disk(tmp / "pool")
    arrow = _arrow_file(path)
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    return path


def _missing_arrow(tmp: Path) -> Path:
    path = _save_to_disk(tmp / "pool")
    _arrow_file(path).unlink()
    return path


def _garbage_state(tmp: Path) -> Path:
    path = _save_to_disk(tmp / "pool")
    (path / "state.json").write_text("{not json")
    return path


CASES = {
    "truncated zstd": (_write("pool.jsonl.zst", _zstd(RAW)[: len(_zstd(RAW)) // 2]), "damaged zstd data (truncated"),
    "corrupt zstd": (_write("pool.jsonl.zst", _flip(_zstd(RAW))), "damaged zstd data"),
    "truncated gzip": (_write("pool.jsonl.gz", gzip.compress(RAW)[: len(gzip.compress(RAW)) // 2]),
                       "damaged gzip data (truncated"),
    "corrupt gzip": (_write("pool.jsonl.gz", _flip(gzip.compress(RAW))), "damaged gzip data"),
    "corrupt gzip near the end": (_write("pool.jsonl.gz", _flip(gzip.compress(RAW), 0.97)), "damaged gzip data"),
    "plain data named .gz": (_write("pool.jsonl.gz", RAW), "not gzip data"),
    "truncated gzip JSON": (_write("pool.json.gz", gzip.compress(json.dumps(ROWS).encode())[:4000]),
                            "damaged gzip data (truncated"),
    "corrupt Parquet": (_corrupt_parquet, "damaged Parquet file"),
    "truncated Parquet": (_truncated_parquet, "not a readable Parquet file"),
    "save_to_disk with a bad state.json": (_bad_state, "damaged dataset directory"),
    "save_to_disk with unparseable state.json": (_garbage_state, "damaged dataset directory"),
    "save_to_disk with a truncated .arrow": (_truncated_arrow, "damaged dataset directory"),
    "save_to_disk with its .arrow missing": (_missing_arrow, "damaged dataset directory"),
}


@pytest.mark.parametrize("skip", [False, True], ids=["fail", "skip"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_container_is_a_file_level_error(tmp_path, case, skip):
    make, words = CASES[case]
    path = make(tmp_path)
    rejects: list[Rejected] | None = [] if skip else None
    with pytest.raises(InputError) as info:
        read_samples(path, rejects=rejects)
    message = str(info.value)
    assert words in message and "\n" not in message
    assert info.value.line is None  # the file, not a row
    assert message.startswith(str(path))


@pytest.mark.parametrize("case", ["truncated zstd", "corrupt gzip", "save_to_disk with a truncated .arrow"])
def test_select_refuses_a_damaged_pool_even_when_skipping_rows(tmp_path, case):
    files = make_files(tmp_path)
    make, words = CASES[case]
    pool = make(tmp_path)
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(files["target"]), "--budget",
                                      "5", "--method", "random", "--out", str(files["out"]), "--on-error", "skip"],
                                env={"MONA_CACHE": str(files["cache"]), "HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and words in result.stderr and "Traceback" not in result.output
    assert not files["out"].exists() and not files["out"].with_name("sel.jsonl.rejected.jsonl").exists()


def test_intact_containers_still_read(tmp_path):
    """Several zstd frames back to back and an intact gzip, Parquet and dataset directory read whole."""
    import zstandard

    frames = zstandard.ZstdCompressor().compress(RAW[:1000]) + zstandard.ZstdCompressor().compress(RAW[1000:])
    (tmp_path / "frames.jsonl.zst").write_bytes(frames)
    (tmp_path / "p.jsonl.gz").write_bytes(gzip.compress(RAW))
    _parquet(tmp_path / "p.parquet")
    _save_to_disk(tmp_path / "ds")
    for name in ("frames.jsonl.zst", "p.jsonl.gz", "p.parquet", "ds"):
        samples = read_samples(tmp_path / name)
        assert [s.id for s in samples] == [r["id"] for r in ROWS], name
    (tmp_path / "empty.jsonl.zst").write_bytes(b"")
    with pytest.raises(InputError, match="file has no rows"):
        read_samples(tmp_path / "empty.jsonl.zst")

