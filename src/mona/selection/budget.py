"""Budgets and ranking: how many rows to select, and in what order (score descending, ties by id)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mona.errors import ConfigError


def check_budget(*, ratio: float | None = None, budget: int | None = None) -> None:
    """The checks of a budget that need no pool: exactly one of `ratio` in (0, 1] or `budget` >= 1."""
    if (ratio is None) == (budget is None):
        raise ConfigError("give exactly one of --ratio or --budget")
    if ratio is not None and (not (0.0 < ratio <= 1.0) or math.isnan(ratio)):
        raise ConfigError(f"--ratio must be in (0, 1], got {ratio}")
    if budget is not None and budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")


def resolve_budget(n_pool: int, *, ratio: float | None = None, budget: int | None = None) -> int:
    """Number of rows to select: exactly one of `ratio` in (0, 1] (rounded, at least 1) or `budget`."""
    check_budget(ratio=ratio, budget=budget)
    if ratio is not None:
        return max(1, min(n_pool, round(ratio * n_pool)))
    assert budget is not None
    if budget > n_pool:
        raise ConfigError(f"--budget {budget} is larger than the pool ({n_pool} rows)")
    return budget


def rank(ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """Pool positions ordered best first: score descending, ties broken by id (ascending). Only the ids of tied
    rows are looked at, so `ids` may be a compact column that decodes on access."""
    if len(ids) != len(scores):
        raise ValueError("ids and scores differ in length")
    neg = -np.asarray(scores, dtype=np.float64)
    order = np.argsort(neg, kind="stable")
    ordered = neg[order]
    tied = (ordered[1:] == ordered[:-1]) | (np.isnan(ordered[1:]) & np.isnan(ordered[:-1]))
    if tied.any():
        edges = np.diff(np.concatenate(([0], tied.astype(np.int8), [0])))
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) + 1, strict=True):
            run = order[start:end]
            order[start:end] = run[np.argsort(np.asarray([ids[int(i)] for i in run], dtype=object), kind="stable")]
    return order


class _Subset(Sequence[str]):
    """The ids at some positions of a larger id sequence, looked up only when asked for."""

    def __init__(self, ids: Sequence[str], positions: np.ndarray) -> None:
        self.ids, self.positions = ids, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):  # type: ignore[override]
        return self.ids[int(self.positions[i])]


def top_order(ids: Sequence[str], scores: np.ndarray, n: int) -> np.ndarray:
    """The first `n` positions of `rank(ids, scores)`, without sorting the whole pool: the rows scoring at
    least the n-th best score (ties included, so the boundary is broken by id as in `rank`) are ranked alone."""
    scores = np.asarray(scores, dtype=np.float64)
    if n >= len(scores):
        return rank(ids, scores)
    kth = np.partition(-scores, n - 1)[n - 1]
    if np.isnan(kth):  # fewer than n real scores: NaNs take part in the ranking
        return rank(ids, scores)[:n]
    candidates = np.flatnonzero(-scores <= kth)
    return candidates[rank(_Subset(ids, candidates), scores[candidates])[:n]]


def round_robin(ids: Sequence[str], group_scores: np.ndarray) -> np.ndarray:
    """Pool positions interleaving the groups' rankings (one prototype per target subtask): the best row not yet
    taken for group 1, then for group 2, ..., then again from group 1."""
    n, n_groups = group_scores.shape
    orders = [rank(ids, group_scores[:, g]) for g in range(n_groups)]
    taken = np.zeros(n, dtype=bool)
    pointers = [0] * n_groups
    out: list[int] = []
    while len(out) < n:
        for g in range(n_groups):
            order = orders[g]
            while pointers[g] < n and taken[order[pointers[g]]]:
                pointers[g] += 1
            if pointers[g] < n:
                pos = int(order[pointers[g]])
                taken[pos] = True
                out.append(pos)
    return np.asarray(out, dtype=np.int64)


def distinct_first(order: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, int]:
    """(`order` with each row whose key a better-ranked row has moved after all the distinct ones, both parts in
    their ranked order; the number of distinct rows). `keys`: one per pool position (data.formats.content_key)."""
    order = np.asarray(order, dtype=np.int64)
    _, first = np.unique(np.asarray(keys)[order], return_index=True)  # the first occurrence in ranked order
    keep = np.zeros(len(order), dtype=bool)
    keep[first] = True
    return np.concatenate([order[keep], order[~keep]]), int(keep.sum())
