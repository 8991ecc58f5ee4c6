"""RDS+: the vectors against the reference's recipe written out on a plain transformers forward (final hidden
states after the norm, position-weighted mean), the max-cosine scorer, round-robin over subtasks, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import HIDDEN, N_LAYERS, make_tokenizer, sentences
from mona.data.formats import Record, to_sample
from mona.errors import ConfigError
from mona.features.lm import LMRunner
from mona.features.options import LMConfig
from mona.features.rds import RdsFeaturizer, position_weighted_mean, rds_scorer
from mona.models import TruncatedLM
from mona.selection.pipeline import compute_scores
from mona.selection.registry import METHODS, MethodOptions, with_defaults


def _samples(rows: list[dict]):
    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


def test_position_weighted_mean_by_hand():
    rows = torch.tensor([0, 0, 0, 1])
    positions = torch.tensor([1, 2, 4, 3])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [5.0, -1.0]])
    out = position_weighted_mean(rows, positions, x, 3)
    # weights 2, 3, 5 for row 0; row 1 has one token; row 2 none
    np.testing.assert_allclose(out[0], [(2 * 1 + 5 * 2) / 10, (3 * 1 + 5 * 2) / 10], rtol=1e-6)
    np.testing.assert_allclose(out[1], [5.0, -1.0])
    np.testing.assert_array_equal(out[2], [0.0, 0.0])


def _reference(model_dir, texts: list[str]) -> np.ndarray:
    """The RDS+ recipe on a full forward, one row at a time (as the reference's batch size 1): hidden_states[-1]
    (after the final norm), weights position + 1 over the tokens mona pools."""
    from transformers import AutoModelForCausalLM

    from mona.data.render import render

    tok = make_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    tokenized = TruncatedLM(AutoModelForCausalLM.from_pretrained(str(model_dir)), tok).tokenize(
        [render(s, tok, "chat") for s in _samples([{"text": t} for t in texts])])
    out = []
    for t in tokenized:
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([t.ids]), output_hidden_states=True).hidden_states[-1][0]
        pos = torch.nonzero(torch.tensor(t.pool), as_tuple=True)[0]
        w = (pos + 1).double()
        out.append(((hidden[pos].double() * w[:, None]).sum(0) / w.sum()).numpy())
    return np.stack(out)


def test_vectors_are_the_final_normed_states_position_weighted(model_dir):
    texts = sentences(7, seed=3)
    feat = RdsFeaturizer(LMRunner(LMConfig(model=str(model_dir), batch_tokens=64)))
    assert feat.layer == N_LAYERS - 1 and feat.normed
    blocks = list(feat.featurize(_samples([{"text": t} for t in texts])))
    ours = np.zeros((len(texts), blocks[0].matrix.shape[1]))
    for b in blocks:
        ours[b.positions] = b.matrix
    assert len(blocks) > 1  # several length-bucketed batches, some with a shared prefix
    np.testing.assert_allclose(ours, _reference(model_dir, texts), rtol=1e-4, atol=1e-5)


def test_a_shared_prefix_run_apart_keeps_the_positions(model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    from mona.data.render import Rendered

    prefix = "the cat sat on the mat and "
    items = [Rendered(prefix + t, ((len(prefix), len(prefix) + len(t)),)) for t in sentences(4, seed=2)]
    feat = RdsFeaturizer(LMRunner(LMConfig(model=str(model_dir))))
    list(feat.featurize(_samples([{"text": "hello"}])))  # loads the model and its final norm
    vectors, offsets = {}, []
    for share in (True, False):
        lm = TruncatedLM(AutoModelForCausalLM.from_pretrained(str(model_dir)), tokenizer, N_LAYERS - 1,
                         share_prefix=share)
        out = np.zeros((len(items), HIDDEN))
        for batch in lm.run(items):
            out[batch.positions] = feat.pool(batch)
            offsets.append(batch.offset)
        vectors[share] = out
    assert offsets[0] > 0 and offsets[-1] == 0
    np.testing.assert_allclose(vectors[True], vectors[False], rtol=1e-4, atol=1e-5)


def test_layer_option_reads_that_layer_without_the_norm(model_dir):
    last = RdsFeaturizer(LMRunner(LMConfig(model=str(model_dir))))
    first = RdsFeaturizer(LMRunner(LMConfig(model=str(model_dir), layer=0)))
    assert not first.normed and first.layer == 0
    assert first.key_config() != last.key_config()
    sample = _samples([{"text": "add two numbers"}])
    a = next(iter(first.featurize(sample))).matrix
    b = next(iter(last.featurize(sample))).matrix
    assert not np.allclose(a, b)
    with pytest.raises(ConfigError, match="out of range"):
        _ = RdsFeaturizer(LMRunner(LMConfig(model=str(model_dir), layer=N_LAYERS))).layer


def test_scorer_is_max_cosine_over_the_targets():
    pool = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    targets = np.array([[2.0, 0.0], [0.0, 1.0]])
    options = with_defaults(MethodOptions(method="rds"))
    np.testing.assert_allclose(rds_scorer(pool, targets, options), [1.0, np.sqrt(0.5), 0.0])
    with pytest.raises(ConfigError, match="cosine"):
        rds_scorer(pool, targets, with_defaults(MethodOptions(method="rds", similarity="jaccard")))


def test_selection_round_robins_over_subtasks_and_is_cached(model_dir, tmp_path):
    assert METHODS["rds"].similarity == "cosine"
    pool = _samples([{"id": f"p{i}", "text": t} for i, t in enumerate(sentences(12, seed=5))])
    targets = _samples([{"text": "add two numbers", "subtask": "math"},
                        {"text": "what is three plus four", "subtask": "math"},
                        {"text": "bake a cake with flour", "subtask": "cook"}])
    options = MethodOptions(method="rds", lm=LMConfig(model=str(model_dir)))
    first = compute_scores(pool, targets, options, tmp_path / "cache")
    scores, pool_stats, groups = first.scores, first.pool_stats, first.group_scores
    assert groups is not None and groups.shape == (12, 2)
    assert pool_stats.computed == 12
    # each column is the max cosine to that subtask's targets; the score their maximum
    feat = RdsFeaturizer(LMRunner(LMConfig(model=str(model_dir))))
    p = np.zeros((12, HIDDEN))
    for b in feat.featurize(pool):
        p[b.positions] = b.matrix
    t = np.zeros((3, HIDDEN))
    for b in feat.featurize(targets):
        t[b.positions] = b.matrix
    unit = p / np.linalg.norm(p, axis=1, keepdims=True)
    tunit = t / np.linalg.norm(t, axis=1, keepdims=True)
    np.testing.assert_allclose(groups[:, 0], (unit @ tunit[:2].T).max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(groups[:, 1], unit @ tunit[2], rtol=1e-5)
    np.testing.assert_allclose(scores, groups.max(axis=1))
    again = compute_scores(pool, targets, options, tmp_path / "cache")
    assert again.pool_stats.cache_hits == 12 and again.target_stats.cache_hits == 3
    assert again.pool_stats.computed == 0
    np.testing.assert_array_equal(scores, again.scores)


def test_cli_select_rds(model_dir, tmp_path):
    from typer.testing import CliRunner

    from mona.cli import app

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(sentences(9))))
    target = tmp_path / "target.jsonl"
    target.write_text(json.dumps({"text": "add the two numbers"}) + "\n")
    out, scores = tmp_path / "out.jsonl", tmp_path / "scores.jsonl"
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "3",
                                      "--out", str(out), "--scores", str(scores), "--method", "rds", "--model",
                                      str(model_dir), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3
    ranks = sorted(json.loads(line)["rank"] for line in scores.read_text().splitlines())
    assert ranks == list(range(1, 10))
