"""Featurize through the per-sample cache: look every sample up, compute only the misses (writing each
block to the cache as it arrives), and return the vectors in input order."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from mona.claims import CLAIM_FILE, claim
from mona.data.formats import Sample
from mona.features.base import FeatureBlock, Featurizer, Matrix, ProgressFn, stack
from mona.features.cache import FeatureCache, text_hash

if TYPE_CHECKING:
    from mona.features.lm import LMFeaturizer

# Computes the vectors of samples the cache lacks, in blocks (positions index the list it was given), for a role
# ("pool" or "target", see Featurizer.role). The default is the featurizer's own `featurize`; a distributed
# backend (mona.selection.ray_backend) supplies another.
ComputeFn = Callable[[Sequence[Sample], str], Iterator[FeatureBlock]]


@dataclass
class FeaturizeStats:
    """What one featurization cost."""

    samples: int = 0
    cache_hits: int = 0
    computed: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def featurize_cached(featurizer: Featurizer, samples: Sequence[Sample], cache_dir: Path | None,
                     progress: ProgressFn | None = None, stats: FeaturizeStats | None = None,
                     compute: ComputeFn | None = None, *, role: str) -> Matrix:
    """Vectors of `samples` in order, as one side of a selection (`role`: "pool" or "target"; it enters the
    cache key of representations that treat the sides differently). With `cache_dir=None` nothing is cached.
    `compute` replaces `featurizer.featurize` for the cache misses (same blocks, computed elsewhere)."""
    with featurizer.acting_as(role):
        return _featurize_cached(featurizer, samples, cache_dir, progress, stats, compute)


def _featurize_cached(featurizer: Featurizer, samples: Sequence[Sample], cache_dir: Path | None,
                      progress: ProgressFn | None, stats: FeaturizeStats | None, compute: ComputeFn | None
                      ) -> Matrix:
    stats = stats if stats is not None else FeaturizeStats()
    t0 = time.perf_counter()
    hashes = [text_hash(featurizer.text_key(s)) for s in samples]
    cache = FeatureCache(cache_dir, featurizer.name, featurizer.key_config()) if cache_dir else None
    with ExitStack() as claims:
        found = _lookup_claimed(claims, cache, hashes) if cache else {}
        matrix = _compute_rest(featurizer, samples, hashes, found, cache, progress, stats, compute)
    stats.seconds += time.perf_counter() - t0
    return matrix


def _lookup_claimed(claims: ExitStack, cache: FeatureCache, hashes: Sequence[str]) -> dict[int, Any]:
    """The cached rows of `hashes` (as FeatureCache.lookup); when some are missing, this process first claims
    computing them (see _claim_request)."""
    found = cache.lookup(hashes)
    if len(found) < len(hashes) and _claim_request(claims, cache, hashes):
        cache.refresh()
        found = cache.lookup(hashes)
    return found


def _claim_request(claims: ExitStack, cache: FeatureCache, hashes: Sequence[str]) -> bool:
    """Take the claim on computing the rows of `hashes` in `cache` (mona.claims; held on `claims` while this
    process computes them), so that a second process asked for the same rows of the same representation (one
    command started twice on one cache, say) waits for the first and reads its rows instead of computing them
    again; different requests do not wait for each other. True if another process held it: what it wrote since
    is only seen after `cache.refresh()`."""
    request = hashlib.sha256("".join(sorted(set(hashes))).encode()).hexdigest()[:20]
    path = cache.dir / "claims" / f"{request}{CLAIM_FILE}"
    if claims.enter_context(claim(path)):
        return False
    claims.enter_context(claim(path, wait=True))
    return True


def _compute_rest(featurizer: Featurizer, samples: Sequence[Sample], hashes: Sequence[str],
                  found: dict[int, Any], cache: FeatureCache | None, progress: ProgressFn | None,
                  stats: FeaturizeStats, compute: ComputeFn | None) -> Matrix:
    """Compute the rows `found` lacks (each distinct input once), write them to `cache`, and return every row in
    input order."""
    # identical inputs inside one call are computed once
    first_of: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first_of.setdefault(h, i)
    missing = [i for i in range(len(samples)) if i not in found and first_of[hashes[i]] == i]
    stats.samples += len(samples)
    stats.cache_hits += len(found)
    done = len(found)
    if progress:
        progress(done, 0)
    # Computed blocks are stacked whole and the rows put in input order by one index (splitting every block into
    # rows and stacking those again cost more than a cheap featurizer such as DSIR's whole featurization).
    parts: list[Matrix] = []
    where = np.zeros(len(samples), dtype=np.int64)  # each sample's row in the stacked parts
    offset = 0
    if missing:
        todo = [samples[i] for i in missing]
        for block in (compute(todo, featurizer.role) if compute else featurizer.featurize(todo)):
            positions = [missing[p] for p in block.positions]
            if cache:
                cache.write([hashes[i] for i in positions], block.matrix)
            parts.append(block.matrix)
            where[positions] = np.arange(offset, offset + len(positions))
            offset += len(positions)
            stats.computed += len(positions)
            stats.tokens += block.tokens
            done += len(positions)
            if progress:
                progress(done, stats.tokens)
    for i, row in found.items():
        parts.append(row if sp.issparse(row) else np.atleast_2d(row))
        where[i] = offset
        offset += 1
    for i, h in enumerate(hashes):
        if i not in found and first_of[h] != i:  # a repeat of an input computed once
            where[i] = where[first_of[h]]
    matrix = stack(parts)
    return matrix if np.array_equal(where, np.arange(matrix.shape[0])) else matrix[where]


def prefetch_shared(featurizers: Sequence[Featurizer], samples: Sequence[Sample], cache_dir: Path,
                    progress: ProgressFn | None = None, *, role: str) -> FeaturizeStats:
    """Fill the cache of several LM representations that share one runner with one forward pass per batch
    (the benchmark asks for mona, neurons and hidden of the same model and layer together), as one side of a
    selection (`role`, as in featurize_cached)."""
    with ExitStack() as stack:
        for f in featurizers:
            stack.enter_context(f.acting_as(role))
        return _prefetch_shared(featurizers, samples, cache_dir, progress)


def _prefetch_shared(featurizers: Sequence[Featurizer], samples: Sequence[Sample], cache_dir: Path,
                     progress: ProgressFn | None) -> FeaturizeStats:
    from mona.features.lm import LMFeaturizer

    stats = FeaturizeStats(samples=len(samples))
    t0 = time.perf_counter()
    lm_feats = [f for f in featurizers if isinstance(f, LMFeaturizer)]
    if not lm_feats:
        return stats
    caches = [FeatureCache(cache_dir, f.name, f.key_config()) for f in lm_feats]
    hashes = [text_hash(lm_feats[0].text_key(s)) for s in samples]  # LM featurizers share the text key
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    unique = sorted(first.values())
    with ExitStack() as claims:
        # claims taken in one global order (by folder), so that two processes never wait on each other
        for cache in sorted(caches, key=lambda c: str(c.dir)):
            if any(hashes[i] not in cache.index() for i in unique) and _claim_request(claims, cache, hashes):
                cache.refresh()
        _prefetch_missing(lm_feats, caches, samples, hashes, unique, progress, stats)
    stats.seconds = time.perf_counter() - t0
    return stats


def _prefetch_missing(lm_feats: Sequence[LMFeaturizer], caches: Sequence[FeatureCache], samples: Sequence[Sample],
                      hashes: Sequence[str], unique: Sequence[int], progress: ProgressFn | None,
                      stats: FeaturizeStats) -> None:
    """One shared forward pass over the distinct samples (`unique` positions) that some cache lacks."""
    from mona.features.lm import run_lm_featurizers_multi

    missing_per = [{i for i in unique if hashes[i] not in c.index()} for c in caches]
    union = sorted(set().union(*missing_per))
    stats.cache_hits = len(samples) - len(union)
    done = stats.cache_hits
    if union:
        for blocks in run_lm_featurizers_multi(lm_feats, [samples[i] for i in union]):
            positions = [union[p] for p in blocks[0].positions]
            for cache, block, missing in zip(caches, blocks, missing_per, strict=True):
                rows = [r for r, i in enumerate(positions) if i in missing]
                if rows:
                    cache.write([hashes[positions[r]] for r in rows], block.matrix[rows])
            stats.computed += len(positions)
            stats.tokens += blocks[0].tokens
            done += len(positions)
            if progress:
                progress(done, stats.tokens)
