"""The random baseline: a seeded uniform score per row, from a hash of (seed, id), so that a row's score depends on
nothing else and a streamed pool gets the same scores in any chunking."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mona.data.formats import Sample
from mona.features.options import MethodSettings
from mona.progress import Progress


def random_scores(pool: Sequence[Sample], _targets: Sequence[Sample], options: MethodSettings,
                  _cache: Path | None, _progress: Progress | None = None) -> np.ndarray:
    """Registry text scorer: uniform in [0, 1) per pool row, seeded by options.seed."""
    def draw(sample_id: str) -> float:
        digest = hashlib.blake2b(f"{options.seed}\x00{sample_id}".encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)

    return np.fromiter((draw(s.id) for s in pool), dtype=np.float64, count=len(pool))
