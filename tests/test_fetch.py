"""Files from the package index are only used when their sha256 is the pinned one."""

from __future__ import annotations

import hashlib

import pytest

from mona.errors import DependencyError
from mona.fetch import fetch_verified


def test_fetch_verified_accepts_the_pinned_hash_and_refuses_others(tmp_path, monkeypatch):
    monkeypatch.setenv("MONA_CACHE", str(tmp_path / "cache"))
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    wheel = downloads / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    good = hashlib.sha256(b"wheel bytes").hexdigest()
    # found in the cache by pattern: no pip call
    assert fetch_verified("pkg==1.0", "pkg-1.0-*.whl", good) == wheel
    with pytest.raises(DependencyError, match="checksum mismatch"):
        fetch_verified("pkg==1.0", "pkg-1.0-*.whl", "0" * 64)
