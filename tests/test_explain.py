"""Latent labels (max-activating contexts) and explanations of MoNA scores on the tiny model and SAE."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from conftest import SAE_LAYER, sentences, write_jsonl
from mona.data.formats import Record, Sample
from mona.data.render import render
from mona.explain.explain import contributions
from mona.explain.labels import compute_labels, labels_path, save_labels
from mona.models import TruncatedLM
from mona.sae.topk import encode, load_sae
from mona.scoring.similarity import generalized_jaccard
from test_cli import _invoke


@pytest.fixture
def labelled(tiny_model, tokenizer, sae_dir, tmp_path):
    items = [render(Sample(str(i), None, t, Record({}, i, i + 1)), tokenizer, "plain")
             for i, t in enumerate(sentences(40, seed=7))]
    lm = TruncatedLM(tiny_model, tokenizer, SAE_LAYER)
    sae = load_sae(sae_dir)
    doc = compute_labels(lm, sae, items, SAE_LAYER, top_n=3, window=2)
    return doc, lm, sae, items


def test_labels_hold_each_latents_strongest_activations(labelled):
    doc, lm, sae, items = labelled
    # brute force: every content token's codes
    best = np.zeros(int(sae.num_latents))
    count = np.zeros(int(sae.num_latents))
    n_tokens = 0
    for batch in lm.run(items):
        values, indices = encode(sae, batch.resid[SAE_LAYER][batch.pool_mask])
        dense = torch.zeros(values.shape[0], int(sae.num_latents)).scatter_(1, indices, values).numpy()
        best = np.maximum(best, dense.max(axis=0))
        count += (dense > 0).sum(axis=0)
        n_tokens += values.shape[0]
    assert doc["tokens"] == n_tokens and len(doc["latents"]) == sae.num_latents
    for latent, entry in doc["latents"].items():
        j = int(latent)
        if count[j] == 0:
            assert entry["examples"] == [] and entry["label"] == ""
            continue
        values = [e["value"] for e in entry["examples"]]
        assert values == sorted(values, reverse=True) and len(values) == min(3, count[j])
        assert values[0] == pytest.approx(best[j], abs=1e-3)
        assert entry["label"] and entry["examples"][0]["token"].strip() in entry["label"]
        assert entry["frequency"] == pytest.approx(count[j] / n_tokens, abs=1e-6)


def test_contributions_sum_to_the_jaccard_score():
    rng = np.random.default_rng(0)
    z, p = rng.random(50) * (rng.random(50) > 0.5), rng.random(50)
    score, mins = contributions(z, p)
    assert score == pytest.approx(generalized_jaccard(z[None, :], p)[0])
    assert mins.sum() / (z.sum() + p.sum() - mins.sum()) == pytest.approx(score)


def test_explain_and_show_from_the_cli(labelled, tmp_path, model_dir, sae_dir, monkeypatch):
    doc, *_ = labelled
    cache = tmp_path / "cache"
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(sentences(30))])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in sentences(3, seed=9)])
    out, scores = tmp_path / "sel.jsonl", tmp_path / "scores.jsonl"
    common = ["--model", str(model_dir), "--sae", str(sae_dir)]
    result = _invoke(["select", "--pool", str(pool), "--target", str(target), "--out", str(out), "--scores",
                      str(scores), "--budget", "5", *common], cache)
    assert result.exit_code == 0, result.stderr
    # no labels yet: show says how to make them
    result = _invoke(["features", "show", "3", "--sae", str(sae_dir)], cache)
    assert result.exit_code == 4 and "mona features label" in result.stderr

    monkeypatch.setenv("MONA_CACHE", str(cache))
    save_labels(doc, labels_path(sae_dir))  # where `mona features label` puts them for a user's SAE
    fired = next(k for k, v in doc["latents"].items() if v["examples"])
    result = _invoke(["features", "show", fired, "--sae", str(sae_dir)], cache)
    assert result.exit_code == 0, result.stderr
    assert doc["latents"][fired]["label"] in result.stdout and "[[" in result.stdout

    expl = tmp_path / "expl.jsonl"
    result = _invoke(["explain", "--pool", str(pool), "--target", str(target), "--selection", str(out),
                      "--top", "3", "--out", str(expl), *common], cache)
    assert result.exit_code == 0, result.stderr
    items = [json.loads(line) for line in expl.read_text().splitlines()]
    by_id = {json.loads(line)["id"]: json.loads(line) for line in scores.read_text().splitlines()}
    assert [i["id"] for i in items] == [json.loads(line)["id"] for line in out.read_text().splitlines()[:3]]
    for item in items:
        assert item["score"] == pytest.approx(by_id[item["id"]]["score"], abs=1e-5)  # the score select gave
        shares = [lat["share"] for lat in item["latents"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
        assert all(lat["label"] == doc["latents"][str(lat["latent"])]["label"] for lat in item["latents"])
        assert item["tokens"] and any(t["weight"] > 0 for t in item["tokens"])
        assert "".join(t["text"] for t in item["tokens"]).split()  # the sample's own words
    assert len(re.findall(r"^\s+\d+\. p\d+  score ", result.stdout, flags=re.M)) == 3
    assert "of the score" in result.stdout and "text: " in result.stdout
