"""What every representation produces: one pooled vector per sample, sparse (CSR) or dense, in input order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from mona.data.formats import Sample
from mona.progress import Progress

Matrix = sp.csr_matrix | np.ndarray
# progress(samples_done, tokens_done) after each unit of work
ProgressFn = Callable[[int, int], None]
# the two sides of a selection; a representation may treat them differently (Featurizer.role)
ROLES = ("pool", "target")


@dataclass
class FeatureBlock:
    """Vectors for the samples at `positions` (indices into the featurizer's input list)."""

    positions: list[int]
    matrix: Matrix
    tokens: int = 0


def stack(blocks: Sequence[Matrix]) -> Matrix:
    """Stack row blocks of the same kind."""
    if not blocks:
        raise ValueError("nothing to stack")
    if sp.issparse(blocks[0]):
        return sp.vstack(blocks, format="csr")
    return np.vstack(blocks)


class Featurizer(ABC):
    """One representation. `key_config` names everything its output depends on (the cache key);
    `text_key` gives the per-sample text whose hash completes the key."""

    name: ClassVar[str]
    # "pool" or "target", the side being featurized. Callers never set it: they name the side in every call of
    # featurize_cached / prefetch_shared / a ComputeFn, which hold it for the call (`acting_as`). Most
    # representations ignore it; one that treats the sides differently (LESS: Adam vs plain gradients; mona's
    # top-m storage of pool rows) must include it in `key_config`.
    role: str = "pool"

    @contextmanager
    def acting_as(self, role: str) -> Iterator[Featurizer]:
        """This featurizer featurizing one side ("pool" or "target") for the duration of the block; the role
        it had before is restored after."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        before, self.role = self.role, role
        try:
            yield self
        finally:
            self.role = before

    def prepare(self, pool: Sequence[Sample], cache_dir: Path | None, progress: Progress | None = None) -> None:
        """Corpus-level set-up, called by the pipeline once before any featurization (default: nothing). Keep it
        cheap: anything expensive belongs in `featurize`, which does not run when every vector is cached (a
        long step there may report to `progress`, nested inside the featurization's bar)."""
        return None

    @abstractmethod
    def key_config(self) -> dict[str, Any]:
        """Everything the vectors depend on, besides the sample's text (JSON-able)."""

    @abstractmethod
    def text_key(self, sample: Sample) -> str:
        """The string whose hash identifies a sample's vector (its rendered LM input, say)."""

    @abstractmethod
    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        """Compute vectors, in blocks small enough to cache as they arrive."""


@dataclass
class MethodScores:
    """What a text scorer may return instead of bare scores: the scores plus what the run's summary should say
    (MATES: its influence model's held-out Spearman) and the same as numbers (for the benchmarks)."""

    scores: np.ndarray
    notes: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
