"""LESS (LoRA-gradient influence) and the llm2vec dependency path, on the tiny random LLaMA from conftest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import sentences, write_jsonl
from mona.cli import app
from mona.data.formats import Record, Sample
from mona.errors import ConfigError, DependencyError
from mona.features import less
from mona.features.lm import LMConfig, LMRunner
from mona.features.options import LessOptions, Llm2VecOptions
from mona.selection.registry import MethodOptions, get_method


def _sample(i: int, user: str, assistant: str | None = None) -> Sample:
    turns = (("user", user),) + ((("assistant", assistant),) if assistant else ())
    return Sample(str(i), turns, None, Record({}, i, i + 1))


@pytest.fixture(scope="module")
def samples():
    s = sentences(40, seed=5)
    pool = [_sample(i, s[i], s[i + 20] if i % 3 else None) for i in range(12)]
    targets = [_sample(100 + i, s[30 + i], s[35 + i]) for i in range(3)]
    return pool, targets


@pytest.fixture(scope="module")
def warm(model_dir, samples):
    """A LESS featurizer over the tiny model, warmed up (no cache dir: nothing written)."""
    pool, _ = samples
    f = less.LessFeaturizer(LMRunner(LMConfig(model=str(model_dir))),
                            LessOptions(warmup_samples=6, batch_size=2, proj_dim=64, project_rows=3, max_batch_size=4))
    f.prepare(pool, None)
    state = f.ensure_warm()
    assert f.warmup_source == "trained" and state.step == 3
    return f


def _direct_grad(f: less.LessFeaturizer, sample: Sample) -> torch.Tensor:
    """The LoRA gradient of one sample's loss, by plain autograd on that sample alone (no padding, no hooks)."""
    enc = f._encode([sample])
    ids, attn, mask = less.pad_encoded(enc, f._tokens()[1])
    params = less.lora_parameters(f._model)
    loss = less.row_losses(f._model, ids, attn, mask).sum()
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params.values(), strict=True)])


def test_per_sample_gradients_equal_autograd_on_each_sample_alone(warm, samples):
    pool, _ = samples
    batch = pool[:5]  # different lengths: the batch is padded; with and without an assistant turn
    f = warm
    with f.acting_as("target"):  # plain (SGD) gradients
        batched = f._grads(f._encode(batch), f._tokens()[1])
    assert batched.shape == (5, f._grads.dim)
    for i, sample in enumerate(batch):
        direct = _direct_grad(f, sample)
        assert direct.abs().max() > 0
        torch.testing.assert_close(batched[i], direct, atol=1e-5, rtol=1e-4)
    # pool rows: LESS's Adam gradient of the same per-sample gradient
    adam = f.gradients(batch[:2])  # the default role, pool
    m, v = f._flat_moments
    for i in range(2):
        torch.testing.assert_close(adam[i], less.adam_gradient(_direct_grad(f, batch[i])[None], m, v,
                                                                f._state.step)[0], atol=1e-4, rtol=1e-3)
    assert not torch.allclose(adam[0], batched[0])
    # featurize: blocks of projected vectors, in any order, each row the projection of its own gradient
    blocks = list(f.featurize(pool))
    assert len(blocks) > 1
    got = np.zeros((len(pool), 64), dtype=np.float32)
    for block in blocks:
        got[block.positions] = block.matrix
    np.testing.assert_allclose(got, f._projection(f.gradients(pool)).numpy(), atol=1e-4, rtol=1e-3)


def test_loss_covers_assistant_turns_only(model_dir):
    runner = LMRunner(LMConfig(model=str(model_dir)))
    chat = _sample(0, "add two numbers", "five")
    rendered = runner.render(chat)
    spans = less.loss_spans(chat, rendered)
    assert [rendered.text[a:b] for a, b in spans] == ["five"]
    plain = _sample(1, "add two numbers")  # no assistant turn: every content token
    assert less.loss_spans(plain, runner.render(plain)) == runner.render(plain).spans
    plain_runner = LMRunner(LMConfig(model=str(model_dir), render="plain"))
    r = plain_runner.render(chat)
    assert [r.text[a:b] for a, b in less.loss_spans(chat, r)] == ["five"]


def test_projection_is_seeded_and_preserves_inner_products():
    dim_in, dim_out = 20_000, 1024  # 3 chunks, the last one partial
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, dim_in, generator=gen)
    x[1] = 0.6 * x[0] + 0.8 * x[1]  # a pair with a sizeable inner product
    proj = less.RademacherProjection(dim_in, dim_out, seed=7)
    px = proj(x)
    assert torch.equal(px, less.RademacherProjection(dim_in, dim_out, seed=7)(x))
    torch.testing.assert_close(px[2:4], proj(x[2:4]), atol=1e-4, rtol=1e-4)  # same matrix whatever the batch
    regen = less.RademacherProjection(dim_in, dim_out, seed=7, max_cached_bytes=0)  # regenerated per call
    assert not regen.keep
    torch.testing.assert_close(px, regen(x), rtol=0, atol=0)
    assert not torch.allclose(px, less.RademacherProjection(dim_in, dim_out, seed=8)(x))
    xn = x / x.norm(dim=1, keepdim=True)
    exact = xn @ xn.T
    approx = proj(xn) @ proj(xn).T
    assert exact[0, 1] > 0.5
    assert (approx - exact).abs().max() < 0.15  # JL: error ~ 1/sqrt(dim_out)


def test_max_cosine_scorer_by_hand():
    pool = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    targets = np.array([[1.0, 0.0], [0.0, 2.0]])
    # row 0: cos to (1,0) = 0.6, to (0,2) = 0.8 -> max 0.8 (mean target would give 0.99); row 2 is all zero -> 0
    np.testing.assert_allclose(less.max_cosine(pool, targets), [0.8, 1.0, 0.0])
    spec = get_method("less")
    opts = MethodOptions(method="less", similarity="cosine")
    np.testing.assert_allclose(spec.matrix_scorer()(pool, targets, opts), [0.8, 1.0, 0.0])
    with pytest.raises(ConfigError):
        spec.matrix_scorer()(pool, targets, MethodOptions(method="less", similarity="jaccard"))


def test_llm2vec_without_package_says_what_to_install(model_dir, monkeypatch, tmp_path):
    from mona.features import llm2vec

    monkeypatch.setattr(llm2vec, "llm2vec_available", lambda: False)
    spec = get_method("llm2vec")
    runner = LMRunner(LMConfig(model=str(model_dir)))
    with pytest.raises(DependencyError) as info:
        spec.build(MethodOptions(method="llm2vec", params=Llm2VecOptions(model=str(tmp_path))), runner)
    assert "pip install llm2vec" in str(info.value) and "--llm2vec-model" in str(info.value)
    monkeypatch.setattr(llm2vec, "llm2vec_available", lambda: True)  # installed, but the model dir is not there
    with pytest.raises(DependencyError, match="not found"):
        spec.build(MethodOptions(method="llm2vec", params=Llm2VecOptions(model=str(tmp_path / "nope"))), runner)


def _select(pool, target, out, scores, model_dir, *extra: str):
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--out", str(out),
                                      "--scores", str(scores), "--budget", "4", "--method", "less", "--model",
                                      str(model_dir), "--less-dim", "128", "--quiet", *extra])
    return result


def test_select_less_end_to_end_and_cache_reuse(tmp_path, cache_env, model_dir, monkeypatch):
    s = sentences(40, seed=9)
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "instruction": s[i], "output": s[i + 20]}
                                                 for i in range(20)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"instruction": s[36 + i], "output": s[37 + i]}
                                                     for i in range(3)])
    out, scores = tmp_path / "out.jsonl", tmp_path / "scores.jsonl"
    first = _select(pool, target, out, scores, model_dir)
    assert first.exit_code == 0, first.output
    selected = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(selected) == 4 and {r["id"] for r in selected} <= {f"p{i}" for i in range(20)}
    assert sorted(r["rank"] for r in rows) == list(range(1, 21)) and sum(r["selected"] for r in rows) == 4
    assert [r["id"] for r in sorted(rows, key=lambda r: r["rank"])][:4] == [r["id"] for r in selected]
    checkpoints = list((cache_env / "less").glob("warmup-*.safetensors"))
    assert len(checkpoints) == 1
    assert len(list((cache_env / "features").glob("less-*"))) == 2  # pool (Adam) and target (SGD) apart

    def no_warmup(*_args, **_kwargs):
        raise AssertionError("the warm-up ran again")

    monkeypatch.setattr(less, "train_warmup", no_warmup)
    second = _select(pool, target, tmp_path / "out2.jsonl", tmp_path / "scores2.jsonl", model_dir)
    assert second.exit_code == 0, second.output
    assert (tmp_path / "out2.jsonl").read_text() == out.read_text()
    # features gone, checkpoint kept: the gradients are recomputed from the saved adapter and moments
    shutil.rmtree(cache_env / "features")
    third = _select(pool, target, tmp_path / "out3.jsonl", tmp_path / "scores3.jsonl", model_dir)
    assert third.exit_code == 0, third.output
    rows3 = [json.loads(line) for line in (tmp_path / "scores3.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["score"] for r in rows3], [r["score"] for r in rows], atol=1e-5)
    bad = _select(pool, target, tmp_path / "out4.jsonl", tmp_path / "scores4.jsonl", model_dir, "--less-rank", "0")
    assert bad.exit_code == 4 and not (tmp_path / "out4.jsonl").exists()


def test_the_warm_up_reports_its_steps_inside_the_featurization_bar(model_dir, samples, tmp_path):
    from mona.selection.pipeline import compute_scores

    class Recorder:
        def __init__(self) -> None:
            self.open: list[str] = []
            self.seen: list[tuple[str, ...]] = []

        def start(self, label: str, total: int | None) -> None:
            self.seen.append((*self.open, label))
            self.open.append(label)

        def update(self, done: int, tokens: int) -> None:
            self.seen.append(("update", self.open[-1], str(done)))

        def finish(self) -> None:
            self.open.pop()

    pool, targets = samples
    options = MethodOptions(method="less", lm=LMConfig(model=str(model_dir)),
                            params=LessOptions(warmup_samples=6, batch_size=2, proj_dim=64))
    recorder = Recorder()
    compute_scores(list(pool), list(targets), options, tmp_path / "cache", recorder)
    warmup = [s for s in recorder.seen if s[-1].startswith("less: LoRA warm-up")]
    assert warmup and warmup[0][0] == "featurize target"  # nested in the first bar the pipeline opened
    steps = [int(s[2]) for s in recorder.seen if s[0] == "update" and s[1].startswith("less: LoRA warm-up")]
    assert steps == [1, 2, 3]  # 6 rows, 2 per step, 1 epoch
    assert not recorder.open
