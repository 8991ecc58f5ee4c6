"""MATES: the oracle influence is one real AdamW step from LESS's warm-up state (checked against torch's AdamW),
the influence model's fit and held-out Spearman, and `mona select --method mates` with its cache and Gumbel
top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mona
from conftest import sentences
from mona.data.formats import Record, to_sample
from mona.errors import ConfigError
from mona.features.less import BETA1, BETA2, EPS, lora_parameters, pad_encoded
from mona.features.lm import LMRunner
from mona.features.mates import InfluenceProbe, fit_influence_model, mates_scores
from mona.features.options import LessOptions, LMConfig, MatesOptions
from mona.models.answer_loss import row_losses
from mona.selection.pipeline import compute_scores
from mona.selection.registry import MethodOptions, with_defaults


def _samples(texts: list[str], answer: str = "the sum is four"):
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": answer}]} for t in texts]
    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


def test_oracle_influence_is_one_adamw_step_from_the_warm_state(model_dir, tmp_path):
    pool = _samples(sentences(10, seed=4))
    refs = _samples(["what is two plus two", "add three numbers"])
    probe = InfluenceProbe(LMRunner(LMConfig(model=str(model_dir))), LessOptions(warmup_samples=4), seed=0)
    probe.prepare(pool, tmp_path)
    got = probe.oracle_influence(pool[:3], refs)
    state = probe.ensure_warm()
    model = probe._model
    params = lora_parameters(model)
    for n, p in params.items():  # the probe left the warm state as it found it
        torch.testing.assert_close(p.detach(), state.lora[n])
    warm = {n: p.detach().clone() for n, p in params.items()}
    pad = probe._tokens()[1]

    def ref_loss() -> float:
        with torch.no_grad():
            return float(row_losses(model, *pad_encoded(probe._encode(refs), pad)).mean())

    before = ref_loss()
    for i, row in enumerate(pool[:3]):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(warm[n])
        optimizer = torch.optim.AdamW(list(params.values()), lr=probe.config.lr, betas=(BETA1, BETA2), eps=EPS,
                                      weight_decay=0.0)
        for n, p in params.items():
            optimizer.state[p] = {"step": torch.tensor(float(state.step)), "exp_avg": state.exp_avg[n].clone(),
                                  "exp_avg_sq": state.exp_avg_sq[n].clone()}
        loss = row_losses(model, *pad_encoded(probe._encode([row]), pad)).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        np.testing.assert_allclose(got[i], before - ref_loss(), rtol=1e-3, atol=1e-7)
    assert np.abs(got).max() > 0


def test_a_second_reference_set_reuses_the_probes_updates(model_dir, tmp_path, monkeypatch):
    from mona.features import mates

    pool = _samples(sentences(10, seed=4))
    refs = [_samples(["what is two plus two"]), _samples(["add three numbers", "name a colour"], "blue")]
    probe = InfluenceProbe(LMRunner(LMConfig(model=str(model_dir))), LessOptions(warmup_samples=4), seed=0)
    probe.prepare(pool, tmp_path)
    mates._UPDATES.clear()
    first = [probe.oracle_influence(pool[:5], r) for r in refs]
    mates._UPDATES.clear()
    fresh = probe.oracle_influence(pool[:5], refs[1])
    np.testing.assert_allclose(first[1], fresh, rtol=1e-6, atol=1e-9)
    assert not np.allclose(first[0], first[1])

    def no_gradients(_samples):
        raise AssertionError("the probes' updates were computed again")

    monkeypatch.setattr(probe, "gradients", no_gradients)
    np.testing.assert_allclose(probe.oracle_influence(pool[:5], refs[0]), first[0], rtol=1e-6, atol=1e-9)
    with pytest.raises(AssertionError, match="computed again"):  # other probes: other updates
        probe.oracle_influence(pool[2:7], refs[0])


def test_influence_model_ranks_a_learnable_influence():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    signal = x @ np.array([2.0, -1.0, 0.5, 0.0, 0.0, 0.0])
    model, rho, alpha, held = fit_influence_model(x, signal + 0.1 * rng.normal(size=200), MatesOptions(), seed=0)
    assert held == 20 and rho > 0.9 and alpha in MatesOptions().alphas
    assert np.corrcoef(model.predict(x), signal)[0, 1] > 0.95
    _, noise_rho, _, _ = fit_influence_model(x, rng.normal(size=200), MatesOptions(), seed=0)
    assert noise_rho < rho


def test_options_are_checked():
    with pytest.raises(ConfigError, match="probes"):
        MethodOptions(method="mates", params=MatesOptions(probes=3)).check()
    with pytest.raises(ConfigError, match="temperature"):
        MethodOptions(method="mates", params=MatesOptions(temperature=0)).check()


def test_select_reports_spearman_is_cached_and_gumbel_is_seeded(model_dir, tmp_path, monkeypatch):
    texts = sentences(14, seed=6)
    # answers in the tiny tokenizer's vocabulary: a probe row whose answer is all unknown tokens has no loss
    pool = [{"id": f"p{i}", "messages": [{"role": "user", "content": t},
                                         {"role": "assistant", "content": "stir the salt"}]}
            for i, t in enumerate(texts)]
    target = [{"messages": [{"role": "user", "content": "add two numbers"},
                            {"role": "assistant", "content": "the sum is four"}]}]
    kwargs = {"method": "mates", "model": str(model_dir), "cache_dir": tmp_path / "cache", "probes": 10}
    first = mona.select(pool, target, budget=4, **kwargs)
    assert "held-out Spearman" in first.summary() and len(first.scores) == 14
    assert "every oracle influence is 0" not in first.summary() and np.ptp(first.scores) > 0
    calls = []
    original = InfluenceProbe.oracle_influence
    monkeypatch.setattr(InfluenceProbe, "oracle_influence", lambda self, *a: calls.append(1) or original(self, *a))
    again = mona.select(pool, target, budget=4, **kwargs)
    assert not calls and again.ids == first.ids  # the probed influences came from the cache
    noisy = mona.select(pool, target, budget=4, gumbel=True, seed=3, **kwargs)
    same = mona.select(pool, target, budget=4, gumbel=True, seed=3, **kwargs)
    np.testing.assert_array_equal(noisy.scores, same.scores)
    options = with_defaults(MethodOptions(method="mates", lm=LMConfig(model=str(model_dir)), seed=3,
                                          params=MatesOptions(probes=10, gumbel=True)))
    samples = [to_sample(Record(r, i, i + 1)) for i, r in enumerate(pool)]
    plain = mates_scores(samples, [to_sample(Record(target[0], 0, 1))],
                         with_defaults(MethodOptions(method="mates", lm=LMConfig(model=str(model_dir)), seed=3,
                                                     params=MatesOptions(probes=10))), tmp_path / "cache")
    gumbel = mates_scores(samples, [to_sample(Record(target[0], 0, 1))], options, tmp_path / "cache")
    np.testing.assert_allclose(gumbel.scores, plain.scores / 0.5 + np.random.default_rng(3).gumbel(size=14))



class Recorder:
    """A Progress that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, label: str, total: int | None) -> None:
        self.calls.append(("start", label, total))

    def update(self, done: int, tokens: int) -> None:
        self.calls.append(("update", done))

    def finish(self) -> None:
        self.calls.append(("finish",))


def test_progress_sees_the_hidden_states_the_warm_up_and_every_probe(model_dir, tmp_path):
    # the warm-up's bar ("less: LoRA warm-up ...") comes from LESS, which MATES takes its fixed state from
    rows = [{"id": f"p{i}", "messages": [{"role": "user", "content": t},
                                         {"role": "assistant", "content": "stir the salt"}]}
            for i, t in enumerate(sentences(12, seed=2))]
    pool = [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]
    target = [to_sample(Record({"messages": [{"role": "user", "content": "add two numbers"},
                                             {"role": "assistant", "content": "the sum is four"}]}, 0, 1))]
    options = with_defaults(MethodOptions(method="mates", lm=LMConfig(model=str(model_dir)),
                                          params=MatesOptions(probes=10)))
    recorder = Recorder()
    mates_scores(pool, target, options, tmp_path / "cache", recorder)
    starts = [c[1:] for c in recorder.calls if c[0] == "start"]
    assert [label.split(":")[1].split()[0] for label, _ in starts] == ["hidden", "LoRA", "probing"]
    assert starts[0][1] == 12 and starts[2][1] == 10
    probing = recorder.calls[recorder.calls.index(("start", *starts[2])):]
    assert [c[1] for c in probing if c[0] == "update"] == list(range(1, 11))
    assert sum(c[0] == "start" for c in recorder.calls) == sum(c[0] == "finish" for c in recorder.calls)
    # a rerun reads the probed influences from the cache: no probing phase
    again = Recorder()
    mates_scores(pool, target, options, tmp_path / "cache", again)
    assert not any(c[0] == "start" and "probing" in c[1] for c in again.calls)
    # `mona select`'s pipeline hands its progress to the text scorer
    through = Recorder()
    compute_scores(pool, target, options, tmp_path / "cache", through)
    assert ("start", "mates: hidden states of the pool", 12) in through.calls


def test_targets_whose_answers_lie_beyond_max_length_are_said_not_ranked(model_dir, tmp_path):
    rows = [{"id": f"p{i}", "messages": [{"role": "user", "content": t},
                                         {"role": "assistant", "content": "stir the salt"}]}
            for i, t in enumerate(sentences(14, seed=6))]
    pool = [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]
    long_prompt = " ".join(sentences(2, seed=1))
    target = [to_sample(Record({"messages": [{"role": "user", "content": long_prompt},
                                             {"role": "assistant", "content": "the sum is four"}]}, 0, 1))]
    options = with_defaults(MethodOptions(method="mates", lm=LMConfig(model=str(model_dir), max_length=8),
                                          params=MatesOptions(probes=10)))
    out = mates_scores(pool, target, options, tmp_path / "cache")
    assert np.ptp(out.scores) == 0 and np.isnan(out.metrics["influence_spearman"])
    assert any("every oracle influence is 0: no reference row has an answer token within --max-length 8" in n
               for n in out.notes)
    probe = InfluenceProbe(LMRunner(LMConfig(model=str(model_dir))), LessOptions(), seed=0)
    assert probe.answer_tokens(target) == 4  # "the sum is four": within the default 512 tokens


def test_bf16_gradients_keep_the_influences_and_are_cached_apart(model_dir, tmp_path):
    """Under bf16 the probes' gradients change a little and the influences with them; the reference losses stay
    fp32 (in bf16 they moved every influence by about as much as its size)."""
    from scipy.stats import spearmanr

    pool = _samples(sentences(12, seed=6))
    refs = _samples(["what is two plus two", "add three numbers"])
    got, keys = {}, {}
    for dtype in ("fp32", "bf16"):
        probe = InfluenceProbe(LMRunner(LMConfig(model=str(model_dir), dtype=dtype)), LessOptions(warmup_samples=4),
                               seed=0)
        probe.prepare(pool, tmp_path)
        got[dtype], keys[dtype] = probe.oracle_influence(pool[:10], refs), probe.influence_key(pool[:10], refs)
    assert keys["fp32"]["dtype"] == "fp32" and keys["bf16"]["dtype"] == "bf16"
    assert not np.array_equal(got["fp32"], got["bf16"])  # bf16 really ran
    assert np.abs(got["fp32"] - got["bf16"]).max() < 0.05 * np.abs(got["fp32"]).max()
    assert spearmanr(got["fp32"], got["bf16"]).statistic > 0.9
