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

from mona.data.formats import Sample
from mona.data.readers import Rejected


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[str]]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
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


def row_line(sample: Sample) -> str:
    """The row as it came in (the original JSONL line when there is one)."""
    rec = sample.record
    if rec.raw is not None:
        return rec.raw
    return json.dumps(rec.row, ensure_ascii=False, default=str)


def write_selection(path: str | Path, selected: Sequence[Sample]) -> None:
    """The selected rows, in the order given (best first), as JSONL."""
    with atomic_write(path) as fh:
        for sample in selected:
            fh.write(row_line(sample) + "\n")


def write_scores(path: str | Path, ids: Sequence[str], scores: np.ndarray, order: np.ndarray, n: int) -> None:
    """One line per pool row, in pool order: {id, score, rank, selected}; rank 1 is best."""
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(1, len(ids) + 1)
    with atomic_write(path) as fh:
        for i, sample_id in enumerate(ids):
            fh.write(json.dumps({"id": sample_id, "score": round(float(scores[i]), 8),
                                 "rank": int(ranks[i]), "selected": bool(ranks[i] <= n)}) + "\n")


def write_quarantine(path: str | Path, rejected: Sequence[Rejected]) -> None:
    """Rows skipped under --on-error skip, one JSON object each: file, line, reason and the raw row."""
    with atomic_write(path) as fh:
        for r in rejected:
            fh.write(json.dumps({"file": r.path, "line": r.line, "reason": r.reason, "row": r.raw},
                                ensure_ascii=False) + "\n")
