"""Per-sample feature cache: one directory per representation config, holding shards written atomically as
featurization proceeds (so a killed run loses at most the shard in flight). Each shard maps text hashes to
rows; a corrupt shard is ignored and its samples recomputed."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mona.features.base import Matrix


def config_key(config: dict[str, Any]) -> str:
    """Short stable hash of a representation config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:20]


def text_hash(text: str) -> str:
    """Hash identifying one sample's input under a representation."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class FeatureCache:
    """Cache of pooled vectors for one representation config under `root/features/<name>-<key>/`."""

    def __init__(self, root: Path, name: str, config: dict[str, Any]) -> None:
        self.dir = Path(root) / "features" / f"{name}-{config_key(config)}"
        self.config = config
        self._index: dict[str, tuple[str, int]] | None = None

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz")) if self.dir.exists() else []

    def index(self) -> dict[str, tuple[str, int]]:
        """text hash -> (shard file name, row)."""
        if self._index is None:
            self._index = {}
            for shard in self._shards():
                try:
                    with np.load(shard) as data:
                        hashes = data["hashes"]
                except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
                    shard.unlink(missing_ok=True)  # corrupt: drop it, its samples get recomputed
                    continue
                for row, h in enumerate(hashes):
                    self._index[str(h)] = (shard.name, row)
        return self._index

    def refresh(self) -> None:
        """Forget the index, so that the next lookup also sees the shards other processes wrote since."""
        self._index = None

    def lookup(self, hashes: Sequence[str]) -> dict[int, Any]:
        """Cached vectors for the given hashes: {position in `hashes`: row (CSR 1-row or 1-D array)}."""
        index = self.index()
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for pos, h in enumerate(hashes):
            hit = index.get(h)
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((pos, hit[1]))
        found: dict[int, Any] = {}
        for shard, pairs in by_shard.items():
            matrix = self._load_matrix(self.dir / shard)
            if matrix is None:  # dropped: forget its rows, or a new shard of the same name would serve them
                self._index = {h: loc for h, loc in index.items() if loc[0] != shard}
                continue
            rows = matrix[[r for _, r in pairs]]
            for i, (pos, _) in enumerate(pairs):
                found[pos] = rows[i]
        return found

    @staticmethod
    def _load_matrix(path: Path) -> Matrix | None:
        try:
            with np.load(path) as data:
                if "dense" in data:
                    return data["dense"]
                shape = tuple(int(x) for x in data["shape"])
                return sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=shape)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            path.unlink(missing_ok=True)
            return None

    def _publish(self, tmp: Path) -> Path:
        """Give a finished temp shard the next free shard name. A hard link fails if the name exists, so two
        processes writing one cache at once (parallel selects, executor workers) never replace each other's
        shard, which a check-then-rename could. Where hard links are missing: check, then rename."""
        n = len(self._shards())
        try:
            while True:
                path = self.dir / f"shard-{n:06d}.npz"
                try:
                    os.link(tmp, path)
                    return path
                except FileExistsError:
                    pass
                except OSError:
                    if not path.exists():
                        os.replace(tmp, path)
                        return path
                n += 1
        finally:
            tmp.unlink(missing_ok=True)

    def write(self, hashes: Sequence[str], matrix: Matrix) -> None:
        """Add a shard (atomically: a temp file, then linked under the next free name)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "config.json"
        if not cfg.exists():
            tmp_cfg = cfg.with_suffix(".tmp")
            tmp_cfg.write_text(json.dumps(self.config, indent=1, sort_keys=True))
            os.replace(tmp_cfg, cfg)
        tmp = self.dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex}.npz"
        arrays: dict[str, np.ndarray] = {"hashes": np.asarray(hashes, dtype="U32")}
        if sp.issparse(matrix):
            csr = sp.csr_matrix(matrix)
            arrays.update(data=csr.data.astype(np.float32), indices=csr.indices.astype(np.int32),
                          indptr=csr.indptr.astype(np.int64), shape=np.asarray(csr.shape))
        else:
            arrays["dense"] = np.asarray(matrix, dtype=np.float32)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        path = self._publish(tmp)
        if self._index is not None:
            for row, h in enumerate(hashes):
                self._index[h] = (path.name, row)
