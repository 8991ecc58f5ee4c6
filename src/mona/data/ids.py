"""Per-row ids of a pool too large to keep as Python objects: a compact id column, and a validation pass whose
duplicate-id check keeps 16 bytes a row (a 64-bit hash and a line number) instead of a dict of strings
(about 130 bytes a row), so the memory of `mona select` on a streamed pool hardly grows with its rows."""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mona.data.formats import Rejected, has_fallback_id, raw_row
from mona.data.readers import duplicate_id_error, iter_samples
from mona.errors import InputError


class IdColumn(Sequence[str]):
    """Ids written back to back (UTF-8) to an anonymous temporary file, with their end offsets in memory: 8 bytes
    of memory a row whatever the ids' length. The file is unlinked from the start, so nothing is left behind,
    even by a killed run. Reads go through the file, not a memory map, so they do not grow the resident set."""

    def __init__(self, ids: Iterable[str] = (), *, buffer_bytes: int = 1 << 20) -> None:
        self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115  # closed with the column (GC)
        self._buffer = bytearray()  # not yet written; starts at file offset self._written
        self._buffer_bytes = buffer_bytes
        self._written = 0
        self._ends = array("q")
        self.extend(ids)

    def append(self, sample_id: str) -> None:
        self._buffer += sample_id.encode("utf-8")
        self._ends.append(self._written + len(self._buffer))
        if len(self._buffer) >= self._buffer_bytes:
            self._flush()

    def extend(self, ids: Iterable[str]) -> None:
        for sample_id in ids:
            self.append(sample_id)

    def _flush(self) -> None:
        self._file.write(self._buffer)
        self._written += len(self._buffer)
        self._buffer.clear()

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i):  # type: ignore[override]  # int indexing only
        if not isinstance(i, int | np.integer):
            raise TypeError("IdColumn supports integer indexing only")
        n = len(self._ends)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        start, end = (self._ends[i - 1] if i else 0), self._ends[i]
        if start >= self._written:
            return self._buffer[start - self._written:end - self._written].decode("utf-8")
        self._flush()
        return os.pread(self._file.fileno(), end - start, start).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        self._flush()
        start = 0
        block, block_start = b"", 0
        for end in self._ends:
            if end > block_start + len(block):  # read on from `start`, at least a buffer's worth
                block = os.pread(self._file.fileno(), max(self._buffer_bytes, end - start), start)
                block_start = start
            yield block[start - block_start:end - block_start].decode("utf-8")
            start = end


def scan_samples(path: str | Path, *, text_field: str | None = None,
                 rejects: list[Rejected] | None = None) -> int:
    """Validate every row of a file in one pass without keeping its ids; returns the number of usable rows.

    The same errors as `iter_samples` (and, with `rejects`, the same rows left out), but duplicate ids are found
    after the pass: rows with equal 64-bit id hashes are read again to compare their ids exactly, so a hash
    collision never rejects a row. A failing run therefore names the first duplicate in file order, as
    `iter_samples` does, only after reading to the end."""
    hashes = array("q")
    lines = array("q")
    n_before = len(rejects) if rejects is not None else 0
    for sample in iter_samples(path, text_field=text_field, rejects=rejects, check_ids=False):
        hashes.append(hash(sample.id))  # str hashes are stable within a process, which is all this needs
        lines.append(sample.record.line)
    h = np.frombuffer(hashes, dtype=np.int64)
    order = np.argsort(h, kind="stable")  # stable: equal hashes stay in file order
    sorted_h = h[order]
    same = np.flatnonzero(sorted_h[1:] == sorted_h[:-1])
    n_rows = len(h)
    if not len(same):
        return n_rows
    suspects = {int(lines[i]) for i in np.unique(np.concatenate([order[same], order[same + 1]]))}
    del h, order, sorted_h, hashes  # only the suspect lines matter from here
    first_line: dict[str, tuple[int, bool]] = {}  # id -> (line, known by its row number)
    duplicates: list[tuple[InputError, str]] = []  # (error, raw row)
    for sample in iter_samples(path, text_field=text_field, rejects=[], check_ids=False):
        line = sample.record.line
        if line not in suspects:
            continue
        if sample.id in first_line:
            first, first_fallback = first_line[sample.id]
            error = duplicate_id_error(sample.id, first, path, line, first_fallback=first_fallback,
                                       fallback=has_fallback_id(sample.record.row))
            duplicates.append((error, raw_row(sample.record)))
        else:
            first_line[sample.id] = (line, has_fallback_id(sample.record.row))
    if duplicates and rejects is None:
        raise duplicates[0][0]
    if rejects is not None:
        for error, raw in duplicates:
            rejects.append(Rejected(str(path), error.line, error.reason, raw))
        rejects[n_before:] = sorted(rejects[n_before:], key=lambda r: r.line or 0)
    return n_rows - len(duplicates)
