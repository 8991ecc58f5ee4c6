"""Ranking metrics with binary relevance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the top k that is relevant."""
    return sum(1 for i in ranked[:k] if i in relevant) / k


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant rows found in the top k."""
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant) if relevant else 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Normalised discounted cumulative gain of the top k (gain 1 per relevant row)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(sum(d for d, i in zip(discounts, ranked[:k], strict=False) if i in relevant))
    ideal = float(discounts[: min(k, len(relevant))].sum())
    return dcg / ideal if ideal > 0 else 0.0
