"""`mona bench speed` on the tiny model and SAE: the naive run reads the same hidden state as the truncated one,
all three rates are reported in fp32, bf16 and int8, each dtype's selections are compared with fp32's, the CLI
writes JSON and Markdown; dynamic int8 quantizes what it should."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import N_LAYERS, SAE_LAYER, sentences, write_jsonl
from mona.bench.speed import ISA_FLAGS, NaiveLM, measure_agreement, measure_speed, speed_dtypes, top_k_overlap
from mona.cli import app
from mona.data.formats import Record, Sample
from mona.errors import ConfigError
from mona.features.lm import LMConfig, LMRunner
from mona.features.mona import MonaFeaturizer
from mona.models import load_lm


def _samples(n: int = 12) -> list[Sample]:
    return [Sample(str(i), (("user", text), ("assistant", "five")), None, Record({}, i, i + 1))
            for i, text in enumerate(sentences(n, seed=3))]


def test_naive_run_pools_the_same_vectors_as_the_truncated_one(model_dir, sae_dir):
    runner = LMRunner(LMConfig(model=str(model_dir), batch_tokens=64))
    featurizer = MonaFeaturizer(runner, str(sae_dir))
    lm = runner.lm()
    naive = NaiveLM(load_lm(str(model_dir))[0], lm, SAE_LAYER)
    tokenized = lm.tokenize([runner.render(s) for s in _samples()])
    plan = lm.plan(tokenized)
    assert len(plan) > 1  # several batches, padded differently
    for positions in plan:
        truncated, full = lm.forward(tokenized, positions), naive.forward(tokenized, positions)
        assert torch.equal(truncated.pool_mask, full.pool_mask)
        torch.testing.assert_close(full.resid[SAE_LAYER], truncated.resid[SAE_LAYER], atol=1e-5, rtol=0)
        a, b = featurizer.pool(truncated).toarray(), featurizer.pool(full).toarray()
        assert a.any()
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def test_naive_run_refuses_the_last_layer(model_dir):
    runner = LMRunner(LMConfig(model=str(model_dir), layer=N_LAYERS - 1))
    with pytest.raises(ConfigError, match="last decoder layer"):
        NaiveLM(load_lm(str(model_dir))[0], runner.lm(), N_LAYERS - 1)


def test_measure_speed_reports_every_rate_in_every_dtype(model_dir, sae_dir):
    samples = _samples()
    result = measure_speed(samples, LMConfig(model=str(model_dir), batch_tokens=64), str(sae_dir), repeats=2,
                           dtypes=speed_dtypes(["int8"]))
    rates = result.rates()
    assert [r.dtype for r in result.runs] == ["fp32", "bf16", "int8"] == list(rates)
    assert result.rows == len(samples) and result.layer == SAE_LAYER and result.batches > 1
    assert 0 < result.pooled_tokens < result.tokens
    for run in result.runs:
        assert run.forward_seconds > 0 and run.mona_seconds > 0 and run.naive_seconds > 0
        assert rates[run.dtype]["mona_vs_fp32_naive"] == pytest.approx(
            result.run("fp32").naive_seconds / run.mona_seconds, abs=1e-3)
    assert rates["fp32"]["mona_vs_fp32_mona"] == 1.0
    assert result.auto.startswith(("fp32 (auto:", "bf16 (auto:"))
    assert set(result.cpu_flags) <= set(ISA_FLAGS) and result.as_dict()["host"]["cores"] >= 1


def test_speed_dtypes_always_hold_fp32_and_bf16():
    assert speed_dtypes() == ["fp32", "bf16"]
    assert speed_dtypes(["int8", "float32", "int8"]) == ["fp32", "bf16", "int8"]
    with pytest.raises(ConfigError, match="always reported"):
        speed_dtypes(["auto"])


def test_agreement_of_a_dtype_with_itself_is_exact_and_bf16_is_close(model_dir, sae_dir):
    pool = [{"text": t} for t in sentences(12, seed=5)]
    targets = {"a": [{"text": t} for t in sentences(2, seed=6)], "b": [{"text": t} for t in sentences(2, seed=7)]}
    same, bf16 = measure_agreement(pool, targets, ["fp32", "fp32", "bf16"], 4, model=str(model_dir),
                                   sae=str(sae_dir))
    assert same.overlap == {"a": 1.0, "b": 1.0} and same.max_score_diff == 0.0 and same.fit_seconds > 0
    assert bf16.dtype == "bf16" and set(bf16.overlap) == {"a", "b"} and 0 < bf16.max_score_diff < 0.2
    with pytest.raises(ConfigError, match="k must be"):
        measure_agreement(pool, targets, ["fp32"], 13, model=str(model_dir), sae=str(sae_dir))


def test_top_k_overlap_breaks_ties_by_id():
    ids = ["a", "b", "c", "d"]
    assert top_k_overlap(np.array([3.0, 2, 1, 0]), np.array([0.0, 1, 2, 3]), ids, 2) == 0.0
    assert top_k_overlap(np.array([1.0, 1, 1, 0]), np.array([1.0, 1, 0, 1]), ids, 2) == 1.0  # a, b both times


def test_cli_writes_json_and_markdown(model_dir, sae_dir, tmp_path, cache_env, monkeypatch):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": t} for t in sentences(10, seed=4)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in sentences(3, seed=8)])
    out, md = tmp_path / "b" / "speed.json", tmp_path / "b" / "speed.md"
    args = ["bench", "speed", "--pool", str(pool), "--target", str(target), "--k", "3", "--rows", "6", "--model",
            str(model_dir), "--sae", str(sae_dir), "--threads", "1", "--dtype", "int8", "--out", str(out),
            "--out-md", str(md)]
    monkeypatch.setattr("sys.argv", ["mona", *args])  # as the console script would see them
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "int8 vs fp32: top-3 overlap" in result.output and "load average" in result.output
    figures = json.loads(out.read_text())
    assert figures["rows"] == 6 and figures["threads"] == 1 and list(figures["rates"]) == ["fp32", "bf16", "int8"]
    assert [a["dtype"] for a in figures["agreement"]] == ["bf16", "int8"]
    assert 0 <= figures["agreement"][1]["min_overlap"] <= 1
    text = md.read_text()
    assert f"    mona {' '.join(args)}\n" in text  # the exact command
    assert "naive MoNA" in text and f"| {figures['rates']['bf16']['mona_tok_s']} |" in text
    assert "`--dtype auto` (the default) picks here: " + figures["auto"] in text
    assert "[speed.json](speed.json)" in text


def test_int8_quantizes_decoder_linears_except_down_proj(model_dir):
    model, _ = load_lm(str(model_dir), "int8")
    layer = model.model.layers[0]
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert all(isinstance(getattr(layer.self_attn, n), quantized) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    assert isinstance(layer.mlp.gate_proj, quantized) and isinstance(layer.mlp.up_proj, quantized)
    assert type(layer.mlp.down_proj) is torch.nn.Linear and type(model.lm_head) is torch.nn.Linear
