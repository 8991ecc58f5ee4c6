"""How many rows to select and in which order."""

from __future__ import annotations

import numpy as np
import pytest

from mona.errors import ConfigError
from mona.selection.budget import rank, resolve_budget


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
