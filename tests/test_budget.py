"""How many rows to select and in which order."""

from __future__ import annotations

import numpy as np
import pytest

from mona.errors import ConfigError
from mona.selection.budget import rank, resolve_budget, top_order


@pytest.mark.parametrize(("n", "ratio", "expected"), [
    (100, 0.05, 5), (100, 1.0, 100), (10, 0.26, 3), (100, 0.001, 1), (7, 0.5, 4),
])
def test_ratio(n, ratio, expected):
    assert resolve_budget(n, ratio=ratio) == expected


def test_budget():
    assert resolve_budget(10, budget=10) == 10
    assert resolve_budget(10, budget=3) == 3


@pytest.mark.parametrize("kwargs", [
    {"ratio": 0.0}, {"ratio": -0.1}, {"ratio": 1.5}, {"ratio": float("nan")},
    {"budget": 0}, {"budget": -2}, {"budget": 11},
    {"ratio": 0.5, "budget": 2}, {},
])
def test_bad_budgets(kwargs):
    with pytest.raises(ConfigError):
        resolve_budget(10, **kwargs)


def test_budget_larger_than_pool_message():
    with pytest.raises(ConfigError, match="larger than the pool") as info:
        resolve_budget(4, budget=5)
    assert "4" in str(info.value)


def test_rank_by_score_then_id():
    ids = ["b", "a", "d", "c", "e"]
    scores = np.array([0.5, 0.5, 0.9, 0.1, 0.5])
    assert rank(ids, scores).tolist() == [2, 1, 0, 4, 3]


def test_rank_ties_do_not_depend_on_input_order():
    ids = ["x3", "x1", "x2"]
    order = rank(ids, np.zeros(3))
    assert [ids[i] for i in order] == ["x1", "x2", "x3"]
    order = rank(ids[::-1], np.zeros(3))
    assert [ids[::-1][i] for i in order] == ["x1", "x2", "x3"]


def test_rank_length_mismatch():
    with pytest.raises(ValueError):
        rank(["a"], np.zeros(2))


@pytest.mark.parametrize("n", [1, 7, 50, 199, 200])
def test_top_order_is_the_head_of_the_full_ranking(n):
    rng = np.random.default_rng(n)
    ids = [f"r{v:03d}" for v in rng.permutation(200)]
    scores = rng.integers(0, 6, 200).astype(np.float64)  # ties across the budget boundary
    scores[rng.choice(200, 20, replace=False)] = np.nan
    assert top_order(ids, scores, n).tolist() == rank(ids, scores)[:n].tolist()


def test_top_order_when_nans_reach_the_budget():
    ids = ["b", "a", "c", "d"]
    scores = np.array([np.nan, 1.0, np.nan, np.nan])
    assert top_order(ids, scores, 3).tolist() == rank(ids, scores)[:3].tolist() == [1, 0, 2]
