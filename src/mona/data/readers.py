"""Read pool and target files into records: JSONL (plain, gzip, zstd), JSON, Parquet, `save_to_disk` dirs."""

from __future__ import annotations

import codecs
import errno
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mona.data.formats import Record, Rejected, Sample, detect_format, has_fallback_id, json_line, raw_row, to_sample
from mona.errors import DependencyError, InputError, MissingFileError

# Called with a row-level error and the raw row: raises (--on-error fail) or records it (skip).
Reject = Callable[[InputError, str | None], None]


class DamagedFile(Exception):
    """A compressed container (gzip, zstd) whose data ends early or fails its checks."""


class _ZstdReader(io.RawIOBase):
    """zstd frames decompressed as a stream, like `zstandard`'s stream reader, but a stream that ends inside a
    frame (a truncated file) is an error instead of a silent early end of data."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        import zstandard

        self._zstd = zstandard
        self._raw = raw
        self._new_frame()
        self._pending = b""
        self._done = False

    def _new_frame(self) -> None:
        self._dobj = self._zstd.ZstdDecompressor().decompressobj()
        self._fed = False  # bytes of the current frame seen (a file may hold several frames back to back)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                if self._fed:
                    raise DamagedFile("truncated: the file ends inside a zstd frame")
                self._done = True
                break
            while chunk:
                self._fed = True
                try:
                    self._pending += self._dobj.decompress(chunk)
                except self._zstd.ZstdError as exc:
                    raise DamagedFile(str(exc)) from None
                if not self._dobj.eof:
                    break
                chunk = self._dobj.unused_data
                self._new_frame()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_binary(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst") or name.endswith(".zstd"):
        try:
            import zstandard  # noqa: F401
        except ImportError as exc:
            raise DependencyError("reading .zst needs the 'zstandard' package: pip install zstandard",
                                  path=str(path)) from exc
        return io.BufferedReader(_ZstdReader(path.open("rb")), buffer_size=1 << 16)
    return path.open("rb")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _container(path: Path) -> str:
    name = path.name.lower()
    return "gzip" if name.endswith(".gz") else "zstd" if name.endswith((".zst", ".zstd")) else ""


def _damaged(path: Path, exc: BaseException, after_line: int | None = None) -> InputError:
    """A file-level error for a container that cannot be read to its end: never a skipped row, since the rows
    it cut off are unknown."""
    kind = _container(path) or "file"
    where = f", found after line {after_line}" if after_line else ""
    if isinstance(exc, EOFError) or "truncated" in str(exc):
        why = f"truncated: the compressed data ends early{where}"
    elif isinstance(exc, gzip.BadGzipFile) and "Not a gzipped file" in str(exc):
        why = "not gzip data despite the .gz name"
    else:
        why = f"{_one_line(exc)}{where}"
    return InputError(f"damaged {kind} data ({why}); no row of this file was used", path=str(path))


# What decompressing a damaged container raises (zlib.error: a corrupt deflate stream).
_CONTAINER_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, DamagedFile)


def _lines(handle: io.BufferedIOBase, path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each line, one line ahead of the reader: when the container turns out damaged,
    the cut-off line it delivered last is never judged as a row (it would be reported as broken JSON)."""
    lineno = 0
    try:
        it = iter(handle)
        current = next(it, None)
        while current is not None:
            lineno += 1
            following = next(it, None)
            yield lineno, current
            current = following
    except _CONTAINER_ERRORS as exc:
        raise _damaged(path, exc, lineno) from None


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


def _sniff(path: Path) -> None:
    """Refuse, in one line that says what the file looks like, a file whose name promises text JSON(L) but whose
    first bytes are something else (compressed data, Parquet, UTF-16 text)."""
    if _container(path):
        return
    with path.open("rb") as fh:
        head = fh.read(4096)
    name = path.name
    if head.startswith(b"\x1f\x8b"):
        raise InputError(f"this looks like gzip data; name it {name}.gz", path=str(path))
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InputError(f"this looks like zstd data; name it {name}.zst", path=str(path))
    if head.startswith(b"PAR1"):
        raise InputError(f"this looks like a Parquet file; name it {path.stem}.parquet", path=str(path))
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _utf16_like(head):
        raise InputError("this looks like UTF-16 text; save it as UTF-8", path=str(path))


def _utf16_like(head: bytes) -> bool:
    # ASCII-heavy text in UTF-16 without a byte order mark: every other byte is NUL
    if len(head) < 8:
        return False
    even, odd = head[0::2], head[1::2]
    return (odd.count(0) > 0.8 * len(odd) and even.count(0) < 0.2 * len(even)) or (
        even.count(0) > 0.8 * len(even) and odd.count(0) < 0.2 * len(odd))


def _line_problem(data: bytes) -> str | None:
    """What a line that failed to parse looks like, when that is more telling than the JSON error."""
    body = data.rstrip(b"\r\n")
    if b"\x00" in body:
        if not body.strip(b"\x00"):
            return "the line is NUL bytes only: the file looks padded or damaged (cut off while being written?)"
        return (f"NUL bytes (\\x00) at column {body.index(0) + 1}: the file looks padded or damaged (cut off while "
                "being written?)")
    return None


# rows joined by a bare CR: a file with old-Mac line endings read as one line
_CR_ROWS = re.compile(r"\}\s*\r\s*\{")


def _file_problem(text: str, first: bool, path: Path) -> str | None:
    """A first line that shows the whole file is not JSONL: a JSON array or pretty-printed JSON, or old-Mac
    line endings (one physical line holding every row)."""
    if _CR_ROWS.search(text):
        return ("lines end in CR alone (old Mac line endings), so the file reads as one line; convert them to LF "
                "(or CRLF)")
    if not first:
        return None
    stripped = text.strip()
    if stripped.startswith("["):
        return f"this looks like a JSON array, not JSONL (one object per line); name it {_as_json_name(path)}"
    if stripped == "{":
        return ("this looks like JSON spread over several lines, not JSONL (one object per line); name it "
                f"{_as_json_name(path)} if it is one JSON document")
    return None


def _as_json_name(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl", ".ndjson"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] + ".json"
    return name + ".json"


def _iter_jsonl(path: Path, reject: Reject) -> Iterator[Record]:
    # Lines are decoded one by one, so bad bytes are reported (or skipped) with their line number.
    index = 0
    _sniff(path)
    if _container(path):
        reject = _container_checked(reject, path)
    first = True  # no non-blank line seen yet
    try:
        with _open_binary(path) as handle:
            for lineno, data in _lines(handle, path):
                if lineno == 1 and data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8):]  # a UTF-8 byte order mark is no part of the first row
                problem = _line_problem(data)
                try:
                    text = data.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    reject(InputError(problem or f"undecodable bytes (not UTF-8) at column {exc.start + 1}",
                                      path=str(path), line=lineno),
                           data.decode("utf-8", errors="replace").rstrip("\r\n"))
                    continue
                if not text.strip(" \t\r\n\f\v"):  # not str.strip(): NUL padding is not blank
                    continue
                was_first, first = first, False
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    whole = _file_problem(text, was_first, path)
                    if whole:  # the file, not this row: skipping the "row" would skip everything
                        raise InputError(whole, path=str(path)) from None
                    reject(InputError(problem or f"broken JSON: {exc.msg} at column {exc.colno}", path=str(path),
                                      line=lineno), text)
                    continue
                if not isinstance(row, dict):
                    if was_first and isinstance(row, list):
                        raise InputError(_file_problem(text, True, path) or "", path=str(path))
                    reject(InputError(f"expected a JSON object, got {type(row).__name__}", path=str(path),
                                      line=lineno), text)
                    continue
                yield Record(row=row, index=index, line=lineno, raw=text)
                index += 1
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise
        raise InputError(f"cannot read: {_one_line(exc)}", path=str(path)) from None


def _container_checked(reject: Reject, path: Path) -> Reject:
    """`reject` for a compressed file: before a bad row stops the run, the rest of the file is decompressed, so
    a damaged container (corrupt data decodes to garbage rows before its checksum fails) is reported as what it
    is rather than as the garbage row."""
    def checked(error: InputError, raw: str | None) -> None:
        try:
            reject(error, raw)
        except InputError:
            with _open_binary(path) as handle:
                for _ in _lines(handle, path):
                    pass
            raise

    return checked


def _looks_like_jsonl(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()][:2]
    try:
        return len(lines) == 2 and all(isinstance(json.loads(line), dict) for line in lines)
    except json.JSONDecodeError:
        return False


def _iter_json(path: Path, reject: Reject) -> Iterator[Record]:
    _sniff(path)
    try:
        with _open_binary(path) as handle:
            raw = handle.read()
        text = raw.decode("utf-8-sig")  # -sig: a leading byte order mark is dropped
        data = json.loads(text)
    except _CONTAINER_ERRORS as exc:
        raise _damaged(path, exc) from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _looks_like_jsonl(text):
            stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.stem
            raise InputError(f"this looks like JSONL (one object per line), not one JSON document; name it "
                             f"{stem}.jsonl", path=str(path)) from None
        if "\x00" in text:
            raise InputError("NUL bytes (\\x00) in the file: it looks padded or damaged (cut off while being "
                             "written?)", path=str(path), line=exc.lineno) from None
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
    index = 0
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            reject(InputError(f"row {i}: expected a JSON object, got {type(row).__name__}", path=str(path),
                              line=i + 1), json_line(row))
            continue
        yield Record(row=row, index=index, line=i + 1)
        index += 1


def _batches(batches: Iterator[Any], path: Path, what: str) -> Iterator[Any]:
    """The items of a columnar reader; any failure while decoding (a corrupt page, a missing or damaged Arrow
    file) is a file-level error naming the row reached."""
    done = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # pyarrow and datasets raise many unrelated types for bad data
            raise InputError(f"damaged {what} ({_one_line(exc)}) after row {done}; no row of this file was used",
                             path=str(path)) from None
        # a pyarrow RecordBatch, or a dict of columns (datasets)
        done += batch.num_rows if hasattr(batch, "num_rows") else len(next(iter(batch.values()), []))
        yield batch


def _iter_parquet(path: Path, _reject: Reject) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(f"not a readable Parquet file: {_one_line(exc)}", path=str(path)) from None
    index = 0
    for batch in _batches(iter(parquet.iter_batches(batch_size=4096)), path, "Parquet file"):
        for row in batch.to_pylist():
            yield Record(row=row, index=index, line=index + 1)
            index += 1


def _iter_hf(path: Path, _reject: Reject) -> Iterator[Record]:
    if not any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
        raise InputError("a directory must be a dataset saved with datasets.save_to_disk", path=str(path))
    from datasets import DatasetDict, load_from_disk

    what = "dataset directory (datasets.save_to_disk)"
    try:
        data = load_from_disk(str(path))
        if isinstance(data, DatasetDict):
            split = "train" if "train" in data else next(iter(data))
            data = data[split]
    except Exception as exc:  # a bad state.json, a missing or truncated .arrow file, ...
        raise InputError(f"damaged {what}: {_one_line(exc)}", path=str(path)) from None
    index = 0
    for batch in _batches(iter(data.iter(batch_size=1024)), path, what):
        for row in _columns_to_rows(batch):
            yield Record(row=row, index=index, line=index + 1)
            index += 1


def _columns_to_rows(batch: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    names = list(batch)
    for values in zip(*(batch[n] for n in names), strict=True):
        yield dict(zip(names, values, strict=True))


_READERS = {"jsonl": _iter_jsonl, "json": _iter_json, "parquet": _iter_parquet, "hf": _iter_hf}


def iter_records(path: str | Path, rejects: list[Rejected] | None = None) -> Iterator[Record]:
    """Every row of a pool or target file, in order, with its position for error messages, read lazily (a
    pool never has to fit in memory). With a `rejects` list, rows that cannot be parsed are appended to it
    instead of raising. A missing file fails at the call, before iteration."""
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            try:
                os.stat(p)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise MissingFileError("symbolic link loop (the link leads back to itself)", path=str(p)) from None
            raise MissingFileError(f"broken symbolic link: it points to {os.readlink(p)}, which does not exist",
                                   path=str(p))
        raise MissingFileError("no such file or directory", path=str(p))
    if not p.is_dir() and not p.is_file():
        raise MissingFileError("not a regular file", path=str(p))
    kind = _kind(p)

    def reject(error: InputError, raw: str | None) -> None:
        if rejects is None:
            raise error
        rejects.append(Rejected(str(p), error.line, error.reason, raw))

    def rows() -> Iterator[Record]:
        try:
            yield from _READERS[kind](p, reject)
        except PermissionError:
            raise MissingFileError("permission denied", path=str(p)) from None

    return rows()


def read_records(path: str | Path, rejects: list[Rejected] | None = None) -> list[Record]:
    """All rows of a file as a list (see iter_records)."""
    return list(iter_records(path, rejects))


def duplicate_id_error(sample_id: str, first_line: int, path: str | Path, line: int, *,
                       first_fallback: bool = False, fallback: bool = False) -> InputError:
    """The error for a row whose id an earlier row (on `first_line`) already has. A row without an id is known
    by its 0-based row number: the message says so when that is how one of the two got the id."""
    if first_fallback:
        why = f"line {first_line} has no id and is known by its row number '{sample_id}'"
    elif fallback:
        why = f"this row has no id, and its row number '{sample_id}' is the id of line {first_line}"
    else:
        why = f"first seen on line {first_line}"
    return InputError(f"duplicate id '{sample_id}' ({why})", path=str(path), line=line, field="id")


def validate_samples(samples: Sequence[Sample], name: str) -> None:
    """The checks `iter_samples` makes on a file, for samples built in memory (the Python API): at least one
    row, text in every row (not blank, valid Unicode) and unique ids. The InputError names `name` (e.g. "pool")
    in place of a file, and the row's line (Record.line)."""
    if not samples:
        raise InputError("has no rows", path=name)
    seen: dict[str, tuple[int, bool]] = {}
    for sample in samples:
        line, row = sample.record.line, sample.record.row
        if not sample.plain_text().strip():
            raise InputError("empty text", path=name, line=line)
        for field, value in (("id", sample.id), ("text", sample.plain_text())):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputError(f"lone surrogate \\u{ord(value[exc.start]):04x} at character {exc.start + 1} "
                                 "(not valid Unicode text)", path=name, line=line, field=field) from None
        if sample.id in seen:
            first, first_fallback = seen[sample.id]
            raise duplicate_id_error(sample.id, first, name, line, first_fallback=first_fallback,
                                     fallback=has_fallback_id(row))
        seen[sample.id] = (line, has_fallback_id(row))


def iter_samples(path: str | Path, *, text_field: str | None = None, allow_empty: bool = False,
                 rejects: list[Rejected] | None = None, check_ids: bool = True) -> Iterator[Sample]:
    """Every row of a file as a `Sample` (id, conversation or plain text, original row), read lazily.

    Raises InputError naming file and line for unparseable rows, rows without text, empty text or duplicate
    ids; with a `rejects` list (--on-error skip) those rows are appended to it and left out instead. An empty
    file (or one whose every row was rejected) is an InputError unless `allow_empty`, raised when the
    iteration reaches the end. Only the ids seen so far are kept (for the duplicate check); `check_ids=False`
    skips that check and keeps nothing, for a file already read once with it.
    """
    return samples_of(iter_records(path, rejects), str(path), text_field=text_field, allow_empty=allow_empty,
                      rejects=rejects, check_ids=check_ids, empty="file has")


def row_records(rows: Iterable[Any], name: str, rejects: list[Rejected] | None = None) -> Iterator[Record]:
    """Rows held in memory (dicts, e.g. a list, a `datasets.Dataset` or DataFrame records) as records, the n-th
    on "line" n (1-based) of the input called `name`. A row that is not a mapping is an InputError (or, with
    `rejects`, left out and recorded)."""
    index = 0
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            error = InputError(f"expected a row (a dict), got {type(row).__name__}", path=name, line=i + 1)
            if rejects is None:
                raise error
            rejects.append(Rejected(name, i + 1, error.reason, json_line(row)))
            continue
        yield Record(row=dict(row), index=index, line=i + 1)
        index += 1


def samples_of(records: Iterable[Record], name: str, *, text_field: str | None = None, allow_empty: bool = False,
               rejects: list[Rejected] | None = None, check_ids: bool = True, empty: str = "has") -> Iterator[Sample]:
    """Records as Samples, checked as `iter_samples` checks a file's rows (errors name `name`; `empty` words the
    error for no rows: "file has" for a file)."""

    def samples() -> Iterator[Sample]:
        seen: dict[str, tuple[int, bool]] = {}  # id -> (line, known by its row number)
        n_samples = 0
        fmt = None
        n_records = 0
        for rec in records:
            n_records += 1
            try:
                if fmt is None and text_field is None:
                    fmt = detect_format(rec.row, path=name, line=rec.line)
                sample = to_sample(rec, fmt=fmt, text_field=text_field, path=name)
                if check_ids and sample.id in seen:
                    first, first_fallback = seen[sample.id]
                    raise duplicate_id_error(sample.id, first, name, rec.line, first_fallback=first_fallback,
                                             fallback=has_fallback_id(rec.row))
            except InputError as exc:
                if rejects is None:
                    raise
                rejects.append(Rejected(name, rec.line, exc.reason, raw_row(rec)))
                continue
            if check_ids:
                seen[sample.id] = (rec.line, has_fallback_id(rec.row))
            n_samples += 1
            yield sample
        if not n_samples and not allow_empty:
            raise InputError(f"{empty} no rows" if not n_records and not rejects else f"{empty} no usable rows",
                             path=name)

    return samples()


def read_samples(path: str | Path, *, text_field: str | None = None, allow_empty: bool = False,
                 rejects: list[Rejected] | None = None) -> list[Sample]:
    """All rows of a file as Samples (see iter_samples for the errors)."""
    return list(iter_samples(path, text_field=text_field, allow_empty=allow_empty, rejects=rejects))
