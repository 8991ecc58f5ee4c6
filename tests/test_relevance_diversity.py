"""The relevance benchmark's coverage metric (how many target examples the picks resemble most) and its
--diversity runs."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mona.bench.metrics import target_coverage
from mona.bench.relevance import run_method
from mona.bench.suite import Suite, TargetSet
from mona.selection.config import MethodOptions


def test_coverage_by_hand():
    targets = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert target_coverage(np.array([[2.0, 0.1], [3.0, 0.0]]), targets) == 1 / 3
    assert target_coverage(np.array([[2.0, 0.1], [0.0, 1.0], [1.0, 0.9]]), targets) == 1.0
    assert target_coverage(sp.csr_matrix([[2.0, 0.1], [0.0, 1.0]]), sp.csr_matrix(targets)) == 2 / 3


def test_diversity_spreads_the_picks_over_the_target_examples(tmp_path):
    pool = ([{"id": f"d{i}", "text": "add two numbers"} for i in range(4)]
            + [{"id": "c0", "text": "bake a cake with flour"}, {"id": "c1", "text": "bake a cake with sugar"},
               {"id": "x", "text": "the cat sat on the mat"}, {"id": "y", "text": "stir the soup"}])
    target = TargetSet("t", "k", [{"text": "add two numbers"}, {"text": "bake a cake"}], {"d0", "c0"})
    suite = Suite(pool, [target], {"per_task": 2})
    runs = {w: run_method("dsir", MethodOptions(method="dsir", diversity=w), suite, 2, tmp_path, log=lambda _: None)
            for w in (0.0, 0.5)}
    plain, diverse = (runs[w].per_target["t"] for w in (0.0, 0.5))
    assert plain["coverage"] == 0.5 and plain["precision"] == 0.5  # two copies of one target example
    assert diverse["coverage"] == 1.0 and diverse["precision"] == 1.0  # one copy and the cake row
    # the picks kept for comparing reports are the ranked top k the metrics were measured on
    assert runs[0.5].picks["t"][0] in {"d0", "d1", "d2", "d3"} and runs[0.5].picks["t"][1] in {"c0", "c1"}
    assert len(set(runs[0.0].picks["t"]) & {"d0", "d1", "d2", "d3"}) == 2
