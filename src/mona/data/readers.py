"""Read pool and target files into records: JSONL (plain, gzip, zstd), JSON, Parquet, `save_to_disk` dirs."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mona.data.formats import Sample, detect_format, to_sample
from mona.errors import DependencyError, InputError, MissingFileError


@dataclass(frozen=True)
class Record:
    """One row of an input file. `line` is 1-based (physical line for JSONL, row number otherwise)."""

    row: dict[str, Any]
    index: int
    line: int
    raw: str | None = None  # the original JSONL line, so selected rows are written back unchanged


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    if name.endswith(".zst") or name.endswith(".zstd"):
        try:
            import zstandard
        except ImportError as exc:
            raise DependencyError("reading .zst needs the 'zstandard' package: pip install zstandard",
                                  path=str(path)) from exc
        stream = zstandard.ZstdDecompressor().stream_reader(path.open("rb"))
        return io.TextIOWrapper(stream, encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _kind(path: Path) -> str:
    if path.is_dir():
        return "hf"
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    raise InputError("unknown file type: expected .jsonl, .json, .parquet (optionally .gz/.zst) "
                     "or a directory saved with datasets.save_to_disk", path=str(path))


def _iter_jsonl(path: Path) -> Iterator[Record]:
    index = 0
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InputError(f"broken JSON: {exc.msg} at column {exc.colno}",
                                     path=str(path), line=lineno) from None
                if not isinstance(row, dict):
                    raise InputError(f"expected a JSON object, got {type(row).__name__}",
                                     path=str(path), line=lineno)
                yield Record(row=row, index=index, line=lineno, raw=text)
                index += 1
    except UnicodeDecodeError as exc:
        raise InputError(f"undecodable bytes (not UTF-8) at byte {exc.start}", path=str(path)) from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise InputError(f"cannot read: {exc}", path=str(path)) from None


def _iter_json(path: Path) -> Iterator[Record]:
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise InputError(f"broken JSON: {exc.msg} at column {exc.colno}", path=str(path),
                         line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"undecodable bytes (not UTF-8) at byte {exc.start}", path=str(path)) from None
    if isinstance(data, dict):
        # Common wrappers: {"data": [...]}, {"examples": [...]}, {"rows": [...]}.
        lists = [v for k, v in data.items() if k in ("data", "examples", "rows") and isinstance(v, list)]
        if not lists:
            raise InputError("expected a JSON list of objects (or {'data': [...]})", path=str(path))
        data = lists[0]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of objects", path=str(path))
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise InputError(f"row {i}: expected a JSON object, got {type(row).__name__}",
                             path=str(path), line=i + 1)
        yield Record(row=row, index=i, line=i + 1)


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(f"not a readable Parquet file: {exc}", path=str(path)) from None
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield Record(row=row, index=index, line=index + 1)
            index += 1


def _iter_hf(path: Path) -> Iterator[Record]:
    if not any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
        raise InputError("a directory must be a dataset saved with datasets.save_to_disk", path=str(path))
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        split = "train" if "train" in data else next(iter(data))
        data = data[split]
    for i, row in enumerate(data):
        yield Record(row=dict(row), index=i, line=i + 1)


_READERS = {"jsonl": _iter_jsonl, "json": _iter_json, "parquet": _iter_parquet, "hf": _iter_hf}


def read_records(path: str | Path) -> list[Record]:
    """Read every row of a pool or target file, in order, with its position for error messages."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError("no such file or directory", path=str(p))
    if not p.is_dir() and not p.is_file():
        raise MissingFileError("not a regular file", path=str(p))
    kind = _kind(p)
    try:
        return list(_READERS[kind](p))
    except PermissionError:
        raise MissingFileError("permission denied", path=str(p)) from None


def read_samples(path: str | Path, *, text_field: str | None = None, allow_empty: bool = False,
                 ) -> list[Sample]:
    """Read a file and turn every row into a `Sample` (id, conversation or plain text, original row).

    Raises InputError naming file and line for rows without text, empty text or duplicate ids,
    and for an empty file unless `allow_empty`.
    """
    records = read_records(path)
    if not records and not allow_empty:
        raise InputError("file has no rows", path=str(path))
    fmt = None if text_field else detect_format(records[0].row, path=str(path), line=records[0].line) \
        if records else None
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for rec in records:
        sample = to_sample(rec, fmt=fmt, text_field=text_field, path=str(path))
        if sample.id in seen:
            raise InputError(f"duplicate id '{sample.id}' (first seen on line {seen[sample.id]})",
                             path=str(path), line=rec.line, field="id")
        seen[sample.id] = rec.line
        samples.append(sample)
    return samples
