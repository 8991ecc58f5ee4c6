"""Diverse selection (`--diversity W`): maximal marginal relevance (Carbonell & Goldstein 1998, "The Use of MMR,
Diversity-Based Reranking for Reordering Documents and Producing Summaries") over the method's own vectors, so a
budget is not spent on near-duplicates of one target example.

The method's ranking (by score, or round-robin over subtasks) gives the candidates: its first CANDIDATES x n rows
for a budget of n. MMR then picks n of them greedily, each time the candidate maximising

    (1 - W) * relevance_i - W * max_{j already picked} cos(x_i, x_j)

with relevance_i = 1 - r_i / c for the candidate of rank r_i (0-based) among c: the rank, not the raw score, so W
means the same for every method, whatever its score's scale (a Jaccard near 0.1, a cosine near 0.9, a log
importance weight). The redundancy term is 0 before the first pick and never below 0. W = 0 is the plain ranking;
W = 1 ignores relevance among the candidates. The candidates not picked follow the picks in their ranked order,
then every other row, so the whole order stays a ranking of the pool (SCORES' ranks follow it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from mona.features.base import Matrix

CANDIDATES = 4  # candidates per selected row: MMR looks only at the method's best 4n rows


def candidate_count(n: int, n_pool: int) -> int:
    """How many of the best-ranked rows MMR chooses `n` picks among."""
    return min(n_pool, CANDIDATES * n)


def _unit_rows(vectors: Matrix) -> Matrix:
    if sp.issparse(vectors):
        csr = sp.csr_matrix(vectors, dtype=np.float64)
        norms = np.sqrt(np.asarray(csr.multiply(csr).sum(axis=1)).ravel())
        return sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ csr
    dense = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)


def mmr_order(vectors: Matrix, n: int, weight: float) -> np.ndarray:
    """Candidates given best first (the rows of `vectors`) reordered: MMR's `n` picks in the order picked, then
    the other candidates in their given order. Ties go to the better-ranked candidate."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the diversity weight must be in [0, 1], got {weight}")
    unit = _unit_rows(vectors)
    c = unit.shape[0]
    relevance = 1.0 - np.arange(c) / max(c, 1)
    redundancy = np.zeros(c)
    taken = np.zeros(c, dtype=bool)
    picks: list[int] = []
    for _ in range(min(n, c)):
        gain = (1.0 - weight) * relevance - weight * redundancy
        gain[taken] = -np.inf
        i = int(np.argmax(gain))  # the first maximum: the better-ranked candidate
        picks.append(i)
        taken[i] = True
        sims = unit @ unit[i].T
        sims = sims.toarray().ravel() if sp.issparse(sims) else np.asarray(sims).ravel()
        redundancy = np.maximum(redundancy, sims)
    return np.concatenate([np.asarray(picks, dtype=np.int64), np.flatnonzero(~taken)])


def diversify(order: np.ndarray, n: int, weight: float, vectors_of: Callable[[np.ndarray], Matrix]) -> np.ndarray:
    """`order` (pool positions, best first, covering at least `candidate_count(n, pool size)` rows) with its
    first candidates reordered by MMR. `vectors_of(positions)` gives the method's vectors of those pool rows."""
    c = candidate_count(n, len(order))
    candidates = np.asarray(order[:c], dtype=np.int64)
    reordered = candidates[mmr_order(vectors_of(candidates), n, weight)]
    return np.concatenate([reordered, np.asarray(order[c:], dtype=np.int64)])
