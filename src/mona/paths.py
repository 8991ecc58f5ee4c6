"""Where mona keeps its cache (models, features, downloaded data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$MONA_CACHE`, else `$XDG_CACHE_HOME/mona`, else `~/.cache/mona`."""
    env = os.environ.get("MONA_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mona"


def package_asset(*parts: str) -> Path:
    """Path of a file shipped inside the package (`mona/assets/...`)."""
    return Path(__file__).parent.joinpath("assets", *parts)
