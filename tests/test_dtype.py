"""`--dtype auto`: bf16 only where the CPU has bf16 instructions and a probe matmul confirms it (cached per
machine), fp32 elsewhere; explicit dtypes pass through; the feature cache is keyed by the resolved dtype; the
summary of a selection says which dtype ran and why; autocast for training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import sentences, write_jsonl
from mona.errors import ConfigError
from mona.features.lm import LMConfig, LMRunner
from mona.models import dtype as dtypes
from mona.models.dtype import DtypeChoice, autocast, canonical_dtype, parse_dtype, resolve_dtype
from mona.paths import cache_root


@pytest.fixture
def machine(monkeypatch, cache_env):
    """A fake CPU: set `flags`, and count the probe's timings (fp32 1.0 s, bf16 `bf16_seconds`)."""
    state = {"flags": frozenset(), "bf16_seconds": 0.25, "timed": []}

    def time_matmul(dtype, *args, **kwargs):
        state["timed"].append(dtype)
        return 1.0 if dtype == torch.float32 else state["bf16_seconds"]

    monkeypatch.setattr(dtypes, "cpu_flags", lambda: state["flags"])
    monkeypatch.setattr(dtypes, "time_matmul", time_matmul)
    monkeypatch.delenv(dtypes.NO_CPU_BF16)  # the suite's own fp32 setting (tests/conftest.py)
    return state


def test_the_environment_keeps_auto_at_fp32(machine, monkeypatch):
    machine["flags"] = frozenset({"avx512_bf16"})
    assert resolve_dtype("auto", "cpu").dtype == "bf16"
    monkeypatch.setenv(dtypes.NO_CPU_BF16, "1")
    choice = resolve_dtype("auto", "cpu")
    assert choice == DtypeChoice("fp32", "auto: MONA_NO_CPU_BF16 is set")
    assert resolve_dtype("bf16", "cpu").dtype == "bf16"  # an explicit dtype is still honoured


def test_auto_is_fp32_on_a_cpu_without_bf16_instructions(machine):
    machine["flags"] = frozenset({"avx2", "fma", "avx512f"})
    choice = resolve_dtype("auto", "cpu")
    assert choice.dtype == "fp32" and "no AMX or AVX512-BF16" in choice.reason
    assert machine["timed"] == []  # no probe without the flags


@pytest.mark.parametrize("flag", ["amx_bf16", "avx512_bf16", "bf16"])
def test_auto_is_bf16_where_the_flags_and_the_probe_agree(machine, flag):
    machine["flags"] = frozenset({"avx2", flag})
    choice = resolve_dtype("auto", "cpu")
    assert choice == DtypeChoice("bf16", f"auto: CPU flags {flag}; a bf16 matmul ran 4.0x the fp32 rate")
    assert machine["timed"] == [torch.float32, torch.bfloat16]


def test_auto_stays_fp32_when_the_probe_finds_bf16_slow(machine):
    machine["flags"], machine["bf16_seconds"] = frozenset({"avx512_bf16"}), 0.9  # only 1.1x
    choice = resolve_dtype("auto", "cpu")
    assert choice.dtype == "fp32" and "1.1x" in choice.reason and f"{dtypes.MIN_SPEEDUP}x" in choice.reason


def test_the_probe_runs_once_per_machine_and_is_cached(machine):
    machine["flags"] = frozenset({"amx_bf16", "avx512_bf16"})
    assert resolve_dtype("auto", "cpu").dtype == "bf16"
    assert resolve_dtype("auto", "cpu").dtype == "bf16"
    assert len(machine["timed"]) == 2  # one fp32 and one bf16 timing, then the cache
    (path,) = (cache_root() / "dtype").glob("cpu-probe-*.json")
    record = json.loads(path.read_text())
    assert record["speedup"] == 4.0 and record["bf16_flags"] == ["amx_bf16", "avx512_bf16"]
    path.write_text("{broken")  # an unreadable cache entry is measured again, not trusted
    assert resolve_dtype("auto", "cpu").dtype == "bf16" and len(machine["timed"]) == 4


def test_auto_on_mps_is_fp32_without_probing_the_cpu(machine):
    machine["flags"] = frozenset({"amx_bf16"})  # the CPU's bf16 says nothing about the Mac's GPU
    choice = resolve_dtype("auto", "mps")
    assert choice.dtype == "fp32" and "MPS" in choice.reason and machine["timed"] == []
    assert resolve_dtype("bf16", "mps").dtype == "bf16"


def test_explicit_dtypes_pass_through_in_canonical_spelling(machine):
    assert resolve_dtype("float32", "cpu") == DtypeChoice("fp32", "asked for")
    assert resolve_dtype("BF16", "cpu").dtype == "bf16" and resolve_dtype("int8", "cpu").dtype == "int8"
    assert parse_dtype("bfloat16") is torch.bfloat16 and canonical_dtype("float16") == "fp16"
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_dtype("fp8", "cpu")
    with pytest.raises(ConfigError, match="not a torch dtype"):
        parse_dtype("int8")
    assert machine["timed"] == []


def test_real_probe_and_flags_on_this_machine():
    assert isinstance(dtypes.cpu_flags(), frozenset)
    # this machine's /proc/cpuinfo line where it has one (x86 always lists some flags)
    assert not Path("/proc/cpuinfo").exists() or dtypes.cpu_flags()
    assert dtypes.time_matmul(torch.float32, (8, 16, 8), repeats=2) > 0


def test_cache_key_holds_the_resolved_dtype(machine, model_dir):
    machine["flags"] = frozenset({"avx512_bf16"})
    auto, fp32 = LMRunner(LMConfig(model=str(model_dir))), LMRunner(LMConfig(model=str(model_dir), dtype="fp32"))
    bf16 = LMRunner(LMConfig(model=str(model_dir), dtype="bfloat16"))
    assert auto.base_key()["dtype"] == bf16.base_key()["dtype"] == "bf16" != fp32.base_key()["dtype"]
    machine["flags"] = frozenset()
    assert LMRunner(LMConfig(model=str(model_dir))).base_key() == fp32.base_key()


def test_auto_loads_the_model_in_the_resolved_dtype(machine, model_dir):
    machine["flags"] = frozenset({"amx_bf16"})
    lm = LMRunner(LMConfig(model=str(model_dir))).lm()
    assert next(lm.model.parameters()).dtype == torch.bfloat16


def test_select_summary_names_the_dtype(machine, model_dir, sae_dir, tmp_path):
    from typer.testing import CliRunner

    from mona.cli import app

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": t} for t in sentences(6, seed=1)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in sentences(2, seed=2)])
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "2",
                                      "--out", str(tmp_path / "out.jsonl"), "--model", str(model_dir), "--sae",
                                      str(sae_dir)])
    assert result.exit_code == 0, result.output
    assert "dtype fp32 (auto: the CPU has no AMX or AVX512-BF16" in " ".join(result.output.split())


def test_autocast_runs_matmuls_in_bf16_and_nothing_for_fp32():
    x, w = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("bf16", "cpu"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (x @ w).dtype == torch.float32
    with pytest.raises(ConfigError, match="int8"):
        autocast("int8", "cpu")


def test_finetune_autocast_bf16_tracks_fp32_and_the_fingerprint_holds_the_resolved_dtype(model_dir, tmp_path):
    from mona.finetune.options import FinetuneConfig
    from mona.finetune.sft import finetune, run_fingerprint

    data = write_jsonl(tmp_path / "train.jsonl", [{"messages": [{"role": "user", "content": t},
                                                               {"role": "assistant", "content": "five"}]}
                                                 for t in sentences(8, seed=3)])
    runs = {d: finetune(data, tmp_path / d, FinetuneConfig(model=str(model_dir), epochs=2, lr=1e-2, lora_r=4,
                                                           batch_tokens=96, dtype=d)) for d in ("fp32", "bf16")}
    assert runs["fp32"]["dtype"] == "fp32 (asked for)" and runs["bf16"]["dtype"] == "bf16 (asked for)"
    fp32, bf16 = runs["fp32"]["epoch_losses"], runs["bf16"]["epoch_losses"]
    assert len(fp32) == len(bf16) == 2 and fp32 != bf16  # bf16 really ran, and stays close to fp32
    assert all(abs(a - b) < 0.05 * a for a, b in zip(fp32, bf16, strict=True))
    auto = FinetuneConfig(model=str(model_dir))
    assert run_fingerprint(auto, data, "fp32")["dtype"] == "fp32" != run_fingerprint(auto, data, "bf16")["dtype"]
    with pytest.raises(ConfigError, match="not a torch dtype"):
        finetune(data, tmp_path / "int8", FinetuneConfig(model=str(model_dir), dtype="int8"))


def test_less_gradients_under_bf16_autocast_stay_close_to_fp32(model_dir):
    from mona.features.less import PerSampleGrads, add_lora, encode, loss_spans
    from mona.features.options import LessOptions
    from mona.models import load_lm

    model, tok = load_lm(str(model_dir))
    model = add_lora(model, LessOptions(lora_rank=4), seed=0)
    runner = LMRunner(LMConfig(model=str(model_dir)))
    from mona.data.formats import Record, Sample

    samples = [Sample(str(i), (("user", t), ("assistant", "five")), None, Record({}, i, i + 1))
               for i, t in enumerate(sentences(3, seed=9))]
    encoded = [encode(tok, runner.render(s), loss_spans(s, runner.render(s)), 64, tok.eos_token_id) for s in samples]
    grads = {d: PerSampleGrads(model, d)(encoded, tok.pad_token_id or 0) for d in ("fp32", "bf16")}
    assert grads["bf16"].dtype == torch.float32 and not torch.equal(grads["fp32"], grads["bf16"])
    cosine = torch.nn.functional.cosine_similarity(grads["fp32"], grads["bf16"], dim=1)
    assert (cosine > 0.95).all()


def test_relevance_report_names_the_dtype(tmp_path):
    from mona.bench.relevance import MethodRun, write_report
    from mona.bench.suite import Suite, TargetSet

    suite = Suite([{"id": "p0", "text": "a"}], [TargetSet("k/a", "k", [{"text": "x"}], {"p0"}, half="A")],
                  {"suite": "hard", "per_task": 1})
    run = MethodRun("mona", {"k/a": {"precision": 1.0, "recall": 1.0, "ndcg": 1.0}})
    choice = str(DtypeChoice("fp32", "auto: the CPU has no AMX or AVX512-BF16, so bf16 would be emulated"))
    json_path, md_path = write_report([run], suite, 1, "mona bench relevance", tmp_path, dtype=choice)
    assert f"Selection model dtype (LM methods): {choice}." in md_path.read_text()
    assert json.loads(json_path.read_text())["dtype"] == choice


def test_relevance_dtype_reaches_the_lm_methods(tmp_path, monkeypatch):
    import mona.bench.suite
    from mona.bench.options import RelevanceConfig
    from mona.bench.relevance import run_relevance
    from mona.bench.suite import Suite, TargetSet

    suite = Suite([{"id": f"p{i}", "text": f"row {i}"} for i in range(3)],
                  [TargetSet("k/a", "k", [{"text": "row 1"}], {"p1"}, half="A")], {"suite": "hard", "per_task": 1})
    monkeypatch.setattr(mona.bench.suite, "load_suite", lambda *a, **kw: suite)
    for dtype in ("fp32", "bf16"):
        config = RelevanceConfig(methods="random", dtype=dtype, name=f"r-{dtype}")
        json_path, _ = run_relevance(config, "mona bench relevance", tmp_path, tmp_path / "cache",
                                     log=lambda _m: None)
        report = json.loads(json_path.read_text())
        assert report["dtype"].startswith(dtype) and len(report["methods"][0]["picks"]["k/a"]) == 1
