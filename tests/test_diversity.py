"""--diversity: maximal marginal relevance over the method's vectors, by hand and through mona.select, the
Selector and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

import mona
from mona.errors import ConfigError
from mona.selection.config import MethodOptions
from mona.selection.diversity import candidate_count, diversify, mmr_order

# ranks 0 and 1 are near-duplicates, rank 2 points elsewhere, rank 3 is between
VECTORS = np.array([[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 0.0, 1.0], [0.6, 0.0, 0.8]])


def test_mmr_by_hand():
    np.testing.assert_array_equal(mmr_order(VECTORS, 2, 0.0), [0, 1, 2, 3])  # W = 0: the ranking
    # W = 0.5, c = 4, relevance 1, .75, .5, .25: after rank 0, rank 1 gains .5*.75 - .5*.995 < 0, rank 2 gains
    # .25 - 0 = .25, rank 3 .125 - .3; after rank 2, rank 3's redundancy is .8
    np.testing.assert_array_equal(mmr_order(VECTORS, 2, 0.5), [0, 2, 1, 3])
    np.testing.assert_array_equal(mmr_order(sp.csr_matrix(VECTORS), 2, 0.5), [0, 2, 1, 3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mmr_order(VECTORS, 2, 1.5)


def test_diversify_reorders_only_the_candidates():
    order = np.array([7, 3, 5, 1, 0, 2, 4, 6])
    vectors = {7: VECTORS[0], 3: VECTORS[1], 5: VECTORS[2], 1: VECTORS[3]}
    assert candidate_count(1, 8) == 4 and candidate_count(5, 8) == 8
    out = diversify(order, 1, 0.5, lambda positions: np.stack([vectors[int(p)] for p in positions]))
    np.testing.assert_array_equal(out, order)  # one pick: the best-ranked row
    seen = []
    out = diversify(order, 2, 0.5, lambda positions: seen.append(list(positions)) or np.zeros((8, 3)) + 1)
    assert seen == [list(order)] and sorted(out) == list(range(8))


POOL = ([{"id": f"dup{i}", "text": "add two numbers"} for i in range(3)]
        + [{"id": "near", "text": "add the two numbers please"}, {"id": "sum", "text": "the sum of two numbers"},
           {"id": "cake", "text": "bake a cake with flour"}, {"id": "cat", "text": "the cat sat on the mat"},
           {"id": "soup", "text": "stir the soup"}])
TARGET = [{"text": "add two numbers"}]


def test_a_budget_is_not_spent_on_duplicates(tmp_path):
    plain = mona.select(POOL, TARGET, budget=3, method="dsir", cache_dir=tmp_path)
    assert plain.ids == ["dup0", "dup1", "dup2"]
    diverse = mona.select(POOL, TARGET, budget=3, method="dsir", cache_dir=tmp_path, diversity=0.5)
    assert diverse.ids[0] == "dup0" and sum(i.startswith("dup") for i in diverse.ids) == 1
    selector = mona.Selector("dsir", cache_dir=tmp_path, diversity=0.5).fit(POOL)
    assert selector.select(TARGET, budget=3).ids == diverse.ids


def test_diversity_needs_vectors_and_a_weight_in_range():
    with pytest.raises(ConfigError, match="feature vectors"):
        MethodOptions(method="bm25", diversity=0.3).check()
    with pytest.raises(ConfigError, match="--diversity"):
        MethodOptions(method="dsir", diversity=-0.1).check()


def test_cli_diversity_streams_and_ranks_every_row(tmp_path):
    from typer.testing import CliRunner

    from mona.cli import app

    pool, target = tmp_path / "pool.jsonl", tmp_path / "target.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in POOL))
    target.write_text("".join(json.dumps(r) + "\n" for r in TARGET))
    out, scores = tmp_path / "out.jsonl", tmp_path / "scores.jsonl"
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "3",
                                      "--method", "dsir", "--diversity", "0.5", "--out", str(out), "--scores",
                                      str(scores), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    picked = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert picked == mona.select(POOL, TARGET, budget=3, method="dsir", diversity=0.5, no_cache=True).ids
    lines = [json.loads(line) for line in scores.read_text().splitlines()]
    assert sorted(r["rank"] for r in lines) == list(range(1, len(POOL) + 1))
    assert {r["id"] for r in lines if r["selected"]} == set(picked)
