"""Atomic file writes, for every layer: the target appears only complete (a unique temp file beside it, synced,
then renamed over it), and a failed or killed write leaves the old file and no temp. Unique temp names let
several processes write one path (two benchmark pieces unpacking one asset, say) without clobbering each
other's temp file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _usual_mode(path: str, mode: int) -> None:
    # mkstemp and mkdtemp create 0600 / 0700; give what an ordinary open() or mkdir() would (mode minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def temp_beside(target: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new file `.NAME.XXXX<suffix>` beside `target` (its directory created), open for writing: (fd, path)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    _usual_mode(tmp, 0o666)
    return fd, tmp


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temp path beside `path`, for writers that take a file name (np.save, safetensors, gzip); once
    the block succeeds the file is synced and renamed over `path`, and on failure it is removed. The temp name
    (`.NAME.XXXX.tmpSUFFIX`) keeps `path`'s suffix, since some writers (np.save) append their own otherwise."""
    target = Path(path)
    fd, tmp = temp_beside(target, suffix=".tmp" + target.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[str]]:
    """Open a temp file beside `path` for text; rename it over `path` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        yield fh


def write_text(path: str | Path, text: str) -> None:
    """`Path.write_text`, atomically (UTF-8, "\\n" line ends)."""
    with atomic_write(path) as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A unique temp folder beside `path` to fill in the block; once it succeeds the folder replaces `path`
    whole. An old folder at `path` is moved aside, not deleted, until the new one is in place (and moved back if
    the rename fails); on failure the temp folder is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    _usual_mode(tmp, 0o777)
    aside: Path | None = None
    try:
        yield Path(tmp)
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, aside / target.name)
        os.replace(tmp, target)
    except BaseException:
        if aside is not None and not target.exists():
            os.replace(aside / target.name, target)
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
