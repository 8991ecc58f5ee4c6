"""Write OUT (selected rows, unchanged, best first) and SCORES atomically: a failed or killed run never
leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from mona.data.formats import Sample, id_value
from mona.data.readers import Rejected, raw_row


def _temp_beside(target: Path) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[str]]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    fd, tmp = _temp_beside(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class OutputSet:
    """The files of one run, written together: each to a temp file beside its target, all renamed into place
    only once every one is complete. If any write fails (or the run is interrupted) every temp file is removed,
    and if a rename fails the files already renamed are removed too: a failed run leaves none of its outputs.
    An OSError names the target it failed on (`filename`), never a temp name."""

    def __init__(self) -> None:
        self._staged: list[tuple[str, Path]] = []

    @contextlib.contextmanager
    def open(self, path: str | Path) -> Iterator[IO[str]]:
        """A text handle whose content becomes `path` when the set is committed."""
        target = Path(path)
        tmp = None
        try:
            fd, tmp = _temp_beside(target)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            self._staged.append((tmp, target))
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            if isinstance(exc, OSError):
                exc.filename = str(target)
            raise

    def commit(self) -> None:
        """Rename every staged file into place (all or none)."""
        done: list[Path] = []
        try:
            for tmp, target in self._staged:
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    exc.filename = str(target)
                    raise
                done.append(target)
        except BaseException:
            for target in done:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
            self.discard()
            raise
        self._staged = []

    def discard(self) -> None:
        """Remove every staged temp file."""
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._staged = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _open(path: str | Path, outputs: OutputSet | None) -> contextlib.AbstractContextManager[IO[str]]:
    return outputs.open(path) if outputs is not None else atomic_write(path)


def row_line(sample: Sample) -> str:
    """The row as it came in (the original JSONL line when there is one)."""
    rec = sample.record
    if rec.raw is not None:
        return rec.raw
    return raw_row(rec)


def write_selection(path: str | Path, selected: Sequence[Sample], outputs: OutputSet | None = None) -> None:
    """The selected rows, in the order given (best first), as JSONL (into `outputs` if given, else atomically on
    its own)."""
    with _open(path, outputs) as fh:
        for sample in selected:
            fh.write(row_line(sample) + "\n")


def write_scores(path: str | Path, ids: Sequence[str], scores: np.ndarray, order: np.ndarray, n: int,
                 outputs: OutputSet | None = None, id_kinds: np.ndarray | None = None) -> None:
    """One line per pool row, in pool order: {id, score, rank, selected}; rank 1 is best. `id_kinds` (see
    mona.data.formats.id_kind; None: all strings) gives ids back their JSON type: an integer id stays one."""
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(1, len(ids) + 1)
    with _open(path, outputs) as fh:
        for i, sample_id in enumerate(ids):
            value = sample_id if id_kinds is None or not id_kinds[i] else id_value(sample_id, int(id_kinds[i]))
            fh.write(json.dumps({"id": value, "score": round(float(scores[i]), 8),
                                 "rank": int(ranks[i]), "selected": bool(ranks[i] <= n)}) + "\n")


def write_quarantine(path: str | Path, rejected: Sequence[Rejected], outputs: OutputSet | None = None) -> None:
    """Rows skipped under --on-error skip, one JSON object each: file, line, reason and the raw row."""
    with _open(path, outputs) as fh:
        for r in rejected:
            fh.write(json.dumps({"file": r.path, "line": r.line, "reason": r.reason, "row": r.raw},
                                ensure_ascii=False) + "\n")
