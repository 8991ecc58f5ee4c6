"""The files mona writes. Guards first: no output may be one of its inputs, two outputs may not share a path, and
every output location must be writable, all checked before any work is done. Then the writing: atomically (a
failed or killed run never leaves a file that looks complete), several files all or none (OutputSet), and the
JSONL files of a selection (OUT, SCORES, the quarantine)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from mona.atomic import atomic_write, temp_beside
from mona.data.formats import Rejected, Sample, id_value, raw_row
from mona.errors import ConfigError, MissingFileError

# An option names no path (None), one path, or several (a repeated option, or the files of a directory input
# such as an SAE, whose directory itself may legitimately receive outputs).
Paths = Path | str | Iterable[Path | str] | None


def _real(path: Path | str) -> Path:
    # strict=False: outputs usually do not exist yet; symlinks along the way (and a symlinked file) resolve
    return Path(os.path.realpath(os.path.expanduser(path)))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _each(paths: Paths) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, Path | str):
        return [Path(paths)]
    return [Path(p) for p in paths]


def local_path(spec: str | Path | None) -> Path | None:
    """`spec` as a path when it names something on disk (a model or SAE option may also be a hub id or a
    shipped asset's name, which no output can overwrite)."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    return path if path.exists() or path.is_symlink() else None


def check_outputs(inputs: Mapping[str, Paths], outputs: Mapping[str, Paths], *,
                  dirs: Collection[str] = (), writable: bool = True) -> None:
    """Refuse (ConfigError, exit 4) an output that resolves to an input, lies inside an input directory (a
    `save_to_disk` dataset) or holds an input inside it, and two outputs resolving to one path; refuse
    (MissingFileError, exit 3) an output whose location cannot be written. Names are option names (`--out`);
    outputs named in `dirs` are directories (a run or SAE folder) and are checked as such; `writable=False`
    leaves the writability checks to the caller (outputs of mixed kinds inside one directory)."""
    ins = [(name, p, _real(p)) for name, paths in inputs.items() for p in _each(paths)]
    outs = [(name, p, _real(p)) for name, paths in outputs.items() for p in _each(paths)]
    for out_name, shown, out in outs:
        for in_name, src_shown, src in ins:
            if _inside(out, src) or _inside(src, out):
                raise ConfigError(f"{out_name} {shown} would overwrite the input {in_name} {src_shown}; "
                                  "choose another path")
    seen: dict[Path, str] = {}
    for out_name, shown, out in outs:
        clash = next((p for p in seen if _inside(out, p) or _inside(p, out)), None)
        if clash is not None:
            first = seen[clash]
            what = f"{first} and {out_name}" if first != out_name else f"{out_name} (given twice)"
            raise ConfigError(f"{what} name the same file {shown}; choose different paths")
        seen[out] = out_name
    if not writable:
        return
    for out_name, shown, out in outs:
        if out_name in dirs:
            check_output_dir(out_name, out, shown)
        else:
            check_writable(out_name, out, shown)


def _check_creatable(name: str, shown: Path, start: Path, use: str) -> None:
    """The nearest existing ancestor of `start` (itself included) is a directory this process may write in."""
    probe = start
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise MissingFileError(f"{name} {shown} cannot be {use}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise MissingFileError(f"{name} {shown} cannot be written: no write permission in {probe}")


def check_writable(name: str, real: Path, shown: Path | None = None) -> None:
    """An output file can be created at `real`: not a directory, its parent a writable directory (or
    creatable under one)."""
    shown = shown if shown is not None else real
    if real.is_dir():
        raise MissingFileError(f"{name} {shown} is a directory; give a file path")
    _check_creatable(name, shown, real.parent, "created")


def check_output_dir(name: str, path: Path, shown: Path | None = None) -> None:
    """A directory output (a cache, an SAE folder) is a directory or can be created as one, and is writable."""
    _check_creatable(name, shown if shown is not None else path, _real(path), "used")


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
            fd, tmp = temp_beside(target)
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


def write_selection(path: str | Path, selected: Sequence[Sample], outputs: OutputSet | None = None) -> None:
    """The selected rows, in the order given (best first), as JSONL (into `outputs` if given, else atomically on
    its own)."""
    with _open(path, outputs) as fh:
        for sample in selected:
            fh.write(raw_row(sample.record) + "\n")


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
