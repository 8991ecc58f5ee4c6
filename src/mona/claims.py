"""Claims on the steps of a long run, so that several processes started on one work dir share its steps instead of
all doing each one: a step is taken by whoever holds the lock of its claim file. The lock is the OS's (flock),
so it ends with its process however that ends (a crash, SIGKILL, a machine's reboot): there is no stale claim to
clean up. Where the OS has no flock (Windows), every claim is granted: one process per work dir, as before."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CLAIM_FILE = ".claim"  # in .gitignore: a claim describes a process on one machine, never a result


def holder(path: Path) -> str:
    """Who holds the claim at `path`, as its file says ("pid 123 on host since 2026-12-02 10:00:00")."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def claim(path: str | Path, wait: bool = False) -> Iterator[bool]:
    """Try to take the claim at `path` (its folder created) for the block: yields True if this process holds
    it, False if another live process does (`wait`: wait until it is released instead, then True). The file
    stays afterwards, unlocked; it only ever names the last holder."""
    target = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        yield True
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield True
    finally:
        os.close(fd)  # releases the lock


def held(path: str | Path) -> bool:
    """Whether a live process holds the claim at `path` now (creates nothing: no file, no claim)."""
    if fcntl is None:  # pragma: no cover - Windows
        return False
    if not Path(path).exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
