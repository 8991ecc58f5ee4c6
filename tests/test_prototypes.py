"""Prototype modes: the paper's single mean target, the best single target row, and one prototype per
subtask picked round-robin."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mona.data.formats import Record, to_sample
from mona.selection.budget import round_robin
from mona.selection.pipeline import prototype_scores, target_groups
from mona.selection.registry import MethodOptions, get_method


def _targets(subtasks: list[str]):
    return [to_sample(Record({"id": f"t{i}", "text": "x", "subtask": s}, i, i + 1)) for i, s in enumerate(subtasks)]


def test_round_robin_interleaves_group_rankings_without_repeats():
    ids = ["a", "b", "c", "d", "e"]
    # group 0 prefers a > b > c > d > e; group 1 prefers e > d > a > ...
    scores = np.array([[5, 3], [4, 0], [3, 1], [2, 4], [1, 5]], dtype=float)
    order = round_robin(ids, scores)
    assert [ids[i] for i in order] == ["a", "e", "b", "d", "c"]


def test_round_robin_breaks_ties_by_id():
    ids = ["b", "a", "c"]
    order = round_robin(ids, np.ones((3, 2)))
    assert [ids[i] for i in order] == ["a", "b", "c"]


def test_target_groups_by_field():
    assert target_groups(_targets(["x", "y", "x"]), "subtask") == {"x": [0, 2], "y": [1]}


@pytest.fixture
def matrices():
    pool = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0]]))
    targets = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    return pool, targets


def test_single_prototype_is_the_mean_target(matrices):
    pool, targets = matrices
    scores, groups = prototype_scores(get_method("mona").matrix_scorer(), pool, targets, _targets(["x", "y"]),
                                       MethodOptions(similarity="jaccard"))
    # prototype [0.5, 0.5, 0]: J(row0) = 0.5 / (1 + 1 - 0.5) = 1/3, J(row2) = 1
    assert groups is None
    assert scores == pytest.approx([1 / 3, 1 / 3, 1.0])


def test_max_prototype_takes_the_best_target_row(matrices):
    pool, targets = matrices
    scores, groups = prototype_scores(get_method("mona").matrix_scorer(), pool, targets, _targets(["x", "y"]),
                                       MethodOptions(similarity="jaccard", prototype="max"))
    # row0 equals target 0 (J = 1); row2 vs target 0: min sum 0.5 / max sum 1.5 = 1/3
    assert groups is None
    assert scores == pytest.approx([1.0, 1.0, 1 / 3])


def test_per_subtask_prototypes_give_one_column_per_subtask(matrices):
    pool, targets = matrices
    scores, groups = prototype_scores(get_method("mona").matrix_scorer(), pool, targets, _targets(["x", "y"]),
                                       MethodOptions(similarity="jaccard", prototype="per-subtask"))
    assert groups is not None and groups.shape == (3, 2)
    assert groups[:, 0] == pytest.approx([1.0, 0.0, 1 / 3])
    assert groups[:, 1] == pytest.approx([0.0, 1.0, 1 / 3])
    assert scores == pytest.approx(groups.max(axis=1))
