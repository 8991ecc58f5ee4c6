"""Ranking metrics with binary relevance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

Matrix = sp.csr_matrix | np.ndarray


def precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the top k that is relevant."""
    return sum(1 for i in ranked[:k] if i in relevant) / k


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant rows found in the top k."""
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant) if relevant else 0.0


def target_coverage(picks: Matrix, targets: Matrix) -> float:
    """Share of the target examples that are the nearest (by cosine; ties: the first) target example of at least
    one pick: 1 when the picks spread over every target example, 1/len(targets) when all resemble one."""
    sims = np.asarray((_unit(picks) @ _unit(targets).T).todense() if sp.issparse(picks) else
                      _unit(picks) @ _unit(targets).T)
    return len(set(np.argmax(sims, axis=1).tolist())) / targets.shape[0]


def _unit(x: Matrix) -> Matrix:
    if sp.issparse(x):
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        return sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x, dtype=np.float64), where=norms > 0)


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Normalised discounted cumulative gain of the top k (gain 1 per relevant row)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(sum(d for d, i in zip(discounts, ranked[:k], strict=False) if i in relevant))
    ideal = float(discounts[: min(k, len(relevant))].sum())
    return dcg / ideal if ideal > 0 else 0.0
