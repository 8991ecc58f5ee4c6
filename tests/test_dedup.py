"""`--dedup`: at most one of the rows that say the same is picked, the best-ranked one; the others rank after the
selection. Without it the contract's plain ranking holds (duplicates may both be picked)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import mona
from conftest import write_jsonl
from mona.data.formats import Record, Sample, content_key
from mona.selection.budget import distinct_first

runner = CliRunner()
TARGET = [{"instruction": "what is two plus two ?", "output": "four"}]
POOL = [
    {"id": "a", "instruction": "what is two plus two ?", "output": "four"},
    {"id": "b", "instruction": "what is  two plus two ?\n", "output": "four", "source": "mirror"},  # a's words
    {"id": "c", "instruction": "what is two plus three ?", "output": "five"},
    {"id": "d", "instruction": "bake a cake", "output": "mix flour and eggs"},
    {"id": "e", "instruction": "tell me a story", "output": "the cat sat on the mat"},
    {"id": "f", "instruction": "what is two plus two ?", "output": "four"},  # a again, exactly
]


def _sample(messages=None, text=None, sample_id="x") -> Sample:
    return Sample(sample_id, messages, text, Record({}, "p", 1))


def test_content_keys_ignore_ids_and_spacing_but_not_roles_or_words():
    key = content_key(_sample((("user", "two plus two"), ("assistant", "four"))))
    assert key == content_key(_sample((("user", " two  plus\ntwo "), ("assistant", "four")), sample_id="y"))
    assert key != content_key(_sample((("system", "two plus two"), ("assistant", "four"))))
    assert key != content_key(_sample((("user", "two plus two"), ("assistant", "five"))))
    assert key != content_key(_sample(text="two plus two four"))
    assert content_key(_sample(text="a \ud800 b")) == content_key(_sample(text="a  \ud800 b"))  # a lone surrogate


def test_distinct_first_moves_repeats_after_the_distinct_rows_in_ranked_order():
    order, distinct = distinct_first(np.array([4, 0, 2, 1, 3]), np.array([7, 8, 7, 9, 8], dtype=np.uint64))
    # keys in ranked order: 8, 7, 7 (a repeat), 8 (a repeat), 9
    assert distinct == 3 and order.tolist() == [4, 0, 3, 2, 1]


def test_dedup_picks_one_of_each_text_and_ranks_the_repeats_after(tmp_path):
    from mona.cli import app

    pool, target = write_jsonl(tmp_path / "pool.jsonl", POOL), write_jsonl(tmp_path / "target.jsonl", TARGET)
    plain = mona.select(pool, target, budget=3, method="bm25", no_cache=True)
    assert set(plain.ids[:3]) >= {"a", "f"}  # the contract's ranking: both copies score best
    out, scores = tmp_path / "out.jsonl", tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "3",
                                 "--method", "bm25", "--dedup", "--out", str(out), "--scores", str(scores)])
    assert result.exit_code == 0, result.output
    picked = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(picked) == 3 and len({"a", "b", "f"} & set(picked)) == 1 and "c" in picked
    assert "dedup: 2 rows repeat a better-ranked row's text, none selected" in result.output
    rows = {r["id"]: r for r in map(json.loads, scores.read_text().splitlines())}
    repeats = [i for i in ("a", "b", "f") if i not in picked]
    assert all(not rows[i]["selected"] and rows[i]["rank"] > 3 for i in repeats)
    assert sorted(r["rank"] for r in rows.values()) == list(range(1, 7))
    # the API gives the same picks, from a path or from rows in memory, and through a fitted Selector
    assert mona.select(pool, target, budget=3, method="bm25", dedup=True, no_cache=True).ids == picked
    assert mona.Selector(method="bm25", dedup=True, no_cache=True).fit(POOL).select(TARGET, budget=3).ids == picked


def test_a_budget_over_the_distinct_rows_selects_each_text_once(tmp_path):
    pool, target = write_jsonl(tmp_path / "pool.jsonl", POOL), write_jsonl(tmp_path / "target.jsonl", TARGET)
    picked = mona.select(pool, target, budget=6, method="bm25", dedup=True, no_cache=True)
    assert picked.n_selected == 4 and len(picked.ids) == 4
    assert len({"a", "b", "f"} & set(picked.ids)) == 1


@pytest.mark.parametrize("stream_rows", [2, 8192])
def test_dedup_with_a_featurizing_method_streams_alike(tmp_path, model_dir, cache_env, stream_rows):
    # the hidden method streams the pool in chunks: the keys are taken chunk by chunk, with the same result
    pool, target = write_jsonl(tmp_path / "pool.jsonl", POOL), write_jsonl(tmp_path / "target.jsonl", TARGET)
    picked = mona.select(pool, target, budget=3, method="hidden", model=str(model_dir), dedup=True,
                         stream_rows=stream_rows, diversity=0.5)
    assert len({"a", "b", "f"} & set(picked.ids)) == 1 and len(picked.ids) == 3
