"""Atomic file writes, for every layer: the target appears only complete (a unique temp file beside it, synced,
then renamed over it), and a failed or killed write leaves the old file and no temp. Unique temp names let
several processes write one path (two benchmark pieces unpacking one asset, say) without clobbering each
other's temp file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def temp_beside(target: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new file `.NAME.XXXX<suffix>` beside `target` (its directory created), open for writing: (fd, path)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
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
