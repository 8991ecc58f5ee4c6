"""`mona bench speed` on the tiny model and SAE: the naive run reads the same hidden state as the truncated one,
all three rates are reported, the CLI writes JSON and Markdown; dynamic int8 quantizes what it should."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import N_LAYERS, SAE_LAYER, sentences, write_jsonl
from mona.bench.speed import NaiveLM, measure_speed
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


def test_measure_speed_reports_all_three_rates(model_dir, sae_dir):
    samples = _samples()
    result = measure_speed(samples, LMConfig(model=str(model_dir), batch_tokens=64), str(sae_dir), repeats=2)
    figures = result.as_dict()
    assert result.rows == len(samples) and result.layer == SAE_LAYER and result.batches > 1
    assert 0 < result.pooled_tokens < result.tokens
    for name in ("forward", "mona", "naive"):
        assert figures[f"{name}_seconds"] > 0 and figures[f"{name}_tok_s"] > 0
    assert figures["mona_vs_naive"] == pytest.approx(result.naive_seconds / result.mona_seconds, abs=1e-3)
    assert figures["host"]["cores"] >= 1


def test_cli_writes_json_and_markdown(model_dir, sae_dir, tmp_path, cache_env, monkeypatch):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": t} for t in sentences(10, seed=4)])
    out, md = tmp_path / "b" / "speed.json", tmp_path / "b" / "speed.md"
    args = ["bench", "speed", "--pool", str(pool), "--rows", "6", "--model", str(model_dir), "--sae", str(sae_dir),
            "--threads", "1", "--out", str(out), "--out-md", str(md)]
    monkeypatch.setattr("sys.argv", ["mona", *args])  # as the console script would see them
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "naive MoNA" in result.output and "load average" in result.output
    figures = json.loads(out.read_text())
    assert figures["rows"] == 6 and figures["threads"] == 1 and figures["naive_tok_s"] > 0
    text = md.read_text()
    assert f"    mona {' '.join(args)}\n" in text  # the exact command
    assert "naive MoNA" in text and f"| {figures['mona_tok_s']} |" in text and "[speed.json](speed.json)" in text


def test_int8_quantizes_decoder_linears_except_down_proj(model_dir, sae_dir):
    model, _ = load_lm(str(model_dir), "int8")
    layer = model.model.layers[0]
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert all(isinstance(getattr(layer.self_attn, n), quantized) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    assert isinstance(layer.mlp.gate_proj, quantized) and isinstance(layer.mlp.up_proj, quantized)
    assert type(layer.mlp.down_proj) is torch.nn.Linear and type(model.lm_head) is torch.nn.Linear
    # the bench times an int8 featurization against the fp32 naive run
    result = measure_speed(_samples(6), LMConfig(model=str(model_dir), dtype="int8"), str(sae_dir))
    assert result.dtype == "int8" and result.mona_seconds > 0 and result.naive_seconds > 0
