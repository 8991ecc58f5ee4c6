"""LLM2Vec on transformers + peft (mona.models.bidirectional, mona.features.llm2vec_train, the default featurizer):
bidirectional attention, the MNTP and SimCSE losses, checkpoints, adapters on disk and in the feature cache, on
the tiny random LLaMA from conftest; one integration test on the embedded model with the shipped adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import make_model, make_tokenizer, sentences
from mona.cli import app
from mona.data.formats import Record, Sample
from mona.errors import ConfigError
from mona.features.cached import featurize_cached
from mona.features.llm2vec import LLM2VecFeaturizer, adapter_fingerprint, load_encoder, shipped_adapter_path
from mona.features.llm2vec_options import Llm2VecEvalConfig, Llm2VecTrainConfig
from mona.features.llm2vec_train import (
    add_lora,
    mntp_loss,
    same_task_metrics,
    save_adapter,
    simcse_loss,
    train_llm2vec,
    train_phase,
)
from mona.features.lm import LMRunner
from mona.features.options import Llm2VecOptions, LMConfig
from mona.models.bidirectional import (
    embed_texts,
    enable_bidirectional,
    final_hidden,
    is_bidirectional,
    set_attention_dropout,
    tokenize_texts,
)
from mona.selection.config import MethodOptions
from mona.selection.registry import get_method

TINY = dict(mntp_steps=6, simcse_steps=4, batch_size=4, simcse_batch_size=4, max_length=16, mask_token="?",
            checkpoint_every=2)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads per process stall these small models 20-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _samples(texts):
    return [Sample(str(i), (("user", t),), None, Record({"text": t}, i, i + 1)) for i, t in enumerate(texts)]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bidirectional_attention_sees_later_tokens_but_not_padding(attn):
    tok = make_tokenizer()
    model = make_model(len(tok))
    model.config._attn_implementation = attn
    a = tokenize_texts(tok, ["the cat sat on the mat", "the cat sat on the dog"], 16)
    causal = final_hidden(model, a)
    assert torch.allclose(causal[0, :6], causal[1, :6], atol=1e-6)  # only the last token differs: causal
    assert enable_bidirectional(model) == len(model.model.layers) and is_bidirectional(model)
    both = final_hidden(model, a)
    assert (both[0, 1] - both[1, 1]).abs().max() > 1e-3  # an early position now sees the last token
    # padding is invisible: a row alone equals the same row beside a longer one (right-padded)
    padded = tokenize_texts(tok, ["the cat sat", "the cat sat on the mat with the dog"], 16)
    alone = tokenize_texts(tok, ["the cat sat"], 16)
    n = int(alone.attention_mask.sum())
    assert padded.attention_mask[0].sum() == n < padded.attention_mask.shape[1]
    torch.testing.assert_close(final_hidden(model, padded)[0, :n], final_hidden(model, alone)[0, :n],
                               atol=1e-5, rtol=1e-5)


def test_tokenize_texts_prepends_the_first_token_and_pools_content_only():
    tok = make_tokenizer()
    batch = tokenize_texts(tok, ["add two numbers", "bake"], 8)
    assert batch.input_ids[:, 0].tolist() == [tok.bos_token_id] * 2
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.pool_mask.tolist() == [[False, True, True, True], [False, True, False, False]]


def _trained(loss_fn, peft_model, steps, lr):
    cfg = Llm2VecTrainConfig(warmup_fraction=0.0, checkpoint_every=1000)
    return train_phase("mntp", peft_model, loss_fn, steps=steps, lr=lr, config=cfg, log=lambda _m: None)


def test_mntp_loss_decreases():
    tok = make_tokenizer()
    model = make_model(len(tok))
    enable_bidirectional(model)
    peft_model = add_lora(model, Llm2VecTrainConfig(), seed=0)
    inner = peft_model.get_base_model()
    batch = tokenize_texts(tok, sentences(16, seed=3), 16)
    mask_id = tok.convert_tokens_to_ids("?")

    def loss_at(seed: int) -> torch.Tensor:
        return mntp_loss(inner, batch, mask_id=mask_id, vocab_size=len(tok), fraction=0.3,
                         generator=torch.Generator().manual_seed(seed))

    with torch.no_grad():
        peft_model.eval()
        before = float(np.mean([loss_at(1000 + s).item() for s in range(5)]))
    _trained(lambda step, g: (mntp_loss(inner, batch, mask_id=mask_id, vocab_size=len(tok), fraction=0.3,
                                        generator=g), 1), peft_model, 40, 1e-2)
    with torch.no_grad():
        after = float(np.mean([loss_at(1000 + s).item() for s in range(5)]))  # the same masks as before
    assert after < before - 0.5, (before, after)


def test_simcse_loss_decreases():
    tok = make_tokenizer()
    model = make_model(len(tok))
    enable_bidirectional(model)
    set_attention_dropout(model, 0.5)
    peft_model = add_lora(model, Llm2VecTrainConfig(lora_dropout=0.3), seed=0)
    inner = peft_model.get_base_model()
    batch = tokenize_texts(tok, sentences(16, seed=4), 16)

    def loss_with_seed(seed: int) -> float:
        torch.manual_seed(seed)  # the same dropout masks before and after
        with torch.no_grad():
            return simcse_loss(inner, batch, temperature=0.05).item()

    peft_model.train()
    before = np.mean([loss_with_seed(s) for s in range(5)])
    _trained(lambda step, g: (simcse_loss(inner, batch, temperature=0.05), 1), peft_model, 30, 1e-2)
    peft_model.train()
    after = np.mean([loss_with_seed(s) for s in range(5)])
    assert after < 0.5 * before, (before, after)


def test_save_and_load_of_an_adapter_gives_the_same_embeddings(model_dir, tmp_path):
    tok = make_tokenizer()
    model, _ = load_encoder(str(model_dir), None)  # bidirectional, no adapter
    peft_model = add_lora(model, Llm2VecTrainConfig(), seed=0)
    inner = peft_model.get_base_model()
    batch = tokenize_texts(tok, sentences(8, seed=5), 16)
    mask_id = tok.convert_tokens_to_ids("?")
    _trained(lambda step, g: (mntp_loss(inner, batch, mask_id=mask_id, vocab_size=len(tok), fraction=0.3,
                                        generator=g), 1), peft_model, 10, 1e-2)
    texts = sentences(12, seed=6)
    trained = embed_texts(inner, tok, texts, max_length=16)
    save_adapter(peft_model, tmp_path / "a" / "mntp", str(model_dir))
    loaded, _ = load_encoder(str(model_dir), tmp_path / "a", ("mntp",))
    again = embed_texts(loaded, tok, texts, max_length=16)
    plain, _ = load_encoder(str(model_dir), None)
    untrained = embed_texts(plain, tok, texts, max_length=16)
    # float16 storage: equal up to its rounding, far closer than to the model without the adapter
    assert (again - trained).abs().max() < 1e-2 * (untrained - trained).abs().max()
    config = json.loads((tmp_path / "a" / "mntp" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(model_dir) and config["r"] == 8
    assert all(t.dtype == torch.float16 for t in load_file(tmp_path / "a" / "mntp" / "adapter_model.safetensors")
               .values())


@pytest.fixture(scope="module")
def tiny_adapter(model_dir, tmp_path_factory):
    """A tiny LLM2Vec adapter (both phases) trained on the tiny model."""
    out = tmp_path_factory.mktemp("l2v") / "adapter"
    before = torch.get_num_threads()  # set up before the function-scoped one_thread
    torch.set_num_threads(1)
    try:
        meta = train_llm2vec(out, Llm2VecTrainConfig(model=str(model_dir), **TINY), texts=sentences(40, seed=7),
                             heldout=["t"], log=lambda _m: None)
    finally:
        torch.set_num_threads(before)
    return out, meta


def test_training_writes_both_adapters_a_card_and_no_checkpoint(tiny_adapter):
    out, meta = tiny_adapter
    assert {p.name for p in out.iterdir()} == {"mntp", "simcse", "train.json", "MODEL_CARD.md"}
    assert meta["fingerprint"] == adapter_fingerprint(out)
    assert len(meta["loss"]) == 2 and meta["config"]["mntp_steps"] == TINY["mntp_steps"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "mntp/" in card and "simcse/" in card and f"{TINY['mntp_steps']} steps" in card
    simcse = load_file(out / "simcse" / "adapter_model.safetensors")
    assert any(float(t.abs().max()) > 0 for k, t in simcse.items() if "lora_B" in k)  # it was trained


def test_killed_training_resumes_to_the_same_adapters(model_dir, tiny_adapter, tmp_path, monkeypatch):
    out, _ = tiny_adapter
    again = tmp_path / "again"
    seen = []

    def stop_once(message: str) -> None:
        seen.append(message)
        if "simcse step" in message and not any("resuming" in m for m in seen):
            raise KeyboardInterrupt  # as Ctrl-C after a SimCSE checkpoint

    config = Llm2VecTrainConfig(model=str(model_dir), **TINY)
    import mona.features.llm2vec_train as train

    monkeypatch.setattr(train, "LOG_EVERY", 2)  # log (and so stop) after step 2, once its checkpoint is written
    with pytest.raises(KeyboardInterrupt):
        train_llm2vec(again, config, texts=sentences(40, seed=7), heldout=["t"], log=stop_once)
    assert (again / "checkpoint" / "state.pt").exists() and (again / "mntp").exists()
    train_llm2vec(again, config, texts=sentences(40, seed=7), heldout=["t"], log=seen.append)
    assert "simcse: resuming at step 2/4" in seen
    for part in ("mntp", "simcse"):
        a = load_file(out / part / "adapter_model.safetensors")
        b = load_file(again / part / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    with pytest.raises(ConfigError, match="another training run"):
        (again / "checkpoint").mkdir()
        (again / "checkpoint" / "run.json").write_text("{}")
        train_llm2vec(again, config, texts=sentences(40, seed=7), log=seen.append)


def test_default_featurizer_embeds_with_the_adapter_and_caches_by_its_fingerprint(model_dir, tiny_adapter,
                                                                                   tmp_path):
    out, meta = tiny_adapter
    spec = get_method("llm2vec")
    runner = LMRunner(LMConfig(model=str(model_dir), max_length=32))
    featurizer = spec.build(MethodOptions(method="llm2vec", lm=runner.config,
                                          params=Llm2VecOptions(adapter=str(out))), runner)
    assert isinstance(featurizer, LLM2VecFeaturizer)
    key = featurizer.key_config()
    assert key["adapter"] == meta["fingerprint"] and key["attention"] == "bidirectional"
    samples = _samples(sentences(10, seed=8))
    cache = tmp_path / "cache"
    first = featurize_cached(featurizer, samples, cache, role="pool")
    assert first.shape == (10, 32) and np.isfinite(first).all()
    # the vectors are the adapter's: the tiny model without it embeds differently
    plain, tok = load_encoder(str(model_dir), None)
    bare = embed_texts(plain, tok, [s.plain_text() for s in samples], max_length=32).numpy()
    assert np.abs(first - bare).max() > 1e-3
    # a second featurizer of the same adapter reads the cache and never loads the model
    cached = spec.build(MethodOptions(method="llm2vec", lm=runner.config, params=Llm2VecOptions(adapter=str(out))),
                        runner)
    cached.encoder = lambda: pytest.fail("the model was loaded although every vector is cached")
    np.testing.assert_array_equal(featurize_cached(cached, samples, cache, role="pool"), first)
    # another adapter (other weights) has another key: its vectors are computed afresh
    other = tmp_path / "other"
    for part in ("mntp", "simcse"):
        (other / part).mkdir(parents=True)
        for f in (out / part).iterdir():
            (other / part / f.name).write_bytes(f.read_bytes())
    weights = load_file(other / "simcse" / "adapter_model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v * 2 for k, v in weights.items()}, str(other / "simcse" / "adapter_model.safetensors"))
    changed = spec.build(MethodOptions(method="llm2vec", lm=runner.config,
                                       params=Llm2VecOptions(adapter=str(other))), runner)
    assert changed.key_config()["adapter"] != key["adapter"]
    assert np.abs(featurize_cached(changed, samples, cache, role="pool") - first).max() > 1e-4


def test_an_adapter_for_another_model_is_refused(model_dir):
    runner = LMRunner(LMConfig(model=str(model_dir)))
    with pytest.raises(ConfigError, match="trained for smollm2-135m-instruct"):
        get_method("llm2vec").build(MethodOptions(method="llm2vec"), runner)


def test_same_task_metrics():
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    centres = torch.eye(3) * 10
    separated = torch.stack([centres[i // 4] + 0.1 * torch.randn(3, generator=torch.Generator().manual_seed(i))
                             for i in range(12)])
    good = same_task_metrics(separated, labels)
    assert good["auc"] == 1.0 and good["precision_at_k"] == 1.0 and good["per_task"] == {"a": 1, "b": 1, "c": 1}
    noise = same_task_metrics(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)),
                              [str(i % 10) for i in range(300)])
    assert abs(noise["auc"] - 0.5) < 0.05 and noise["precision_at_k"] < 0.2
    # ties count half: identical vectors everywhere give an AUC of exactly 0.5
    assert same_task_metrics(torch.ones(6, 2), ["a", "a", "a", "b", "b", "b"])["auc"] == 0.5


def test_eval_command_compares_the_variants_on_held_out_rows(tiny_adapter, tmp_path, monkeypatch):
    out, _ = tiny_adapter
    import mona.features.llm2vec_train as train

    rows = sentences(24, seed=9)
    monkeypatch.setattr(train, "prepare_bigbench", lambda: None)
    monkeypatch.setattr(train, "heldout_rows", lambda tasks, n, seed: (rows, [str(i % 3) for i in range(24)]))
    result = CliRunner().invoke(app, ["llm2vec", "eval", "--adapter", str(out), "--out-dir", str(tmp_path),
                                      "--max-length", "16", "--card"])
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "llm2vec.json").read_text())
    assert list(figures["variants"]) == list(Llm2VecEvalConfig().variant_names)
    assert all(0 <= v["auc"] <= 1 and 0 <= v["precision_at_k"] <= 1 for v in figures["variants"].values())
    md = (tmp_path / "llm2vec.md").read_text()
    assert "| causal: the plain model" in md and "| llm2vec: bidirectional + MNTP + SimCSE" in md
    assert "## Held-out evaluation" in (out / "MODEL_CARD.md").read_text()


def test_methods_says_llm2vec_runs_offline_by_default():
    result = CliRunner().invoke(app, ["methods"])
    text = " ".join(result.output.split())  # the console wraps long lines
    line = text[text.index("llm2vec (cosine)"): text.index("mates ")]
    assert "shipped" in line and "offline" in line and "--llm2vec-model" in line


@pytest.mark.integration
def test_shipped_adapter_on_the_embedded_model():
    """The shipped adapter merges into the real SmolLM2 and tells BIG-bench tasks apart (~15 s)."""
    from pathlib import Path

    adapter = shipped_adapter_path()
    if not (adapter / "simcse" / "adapter_model.safetensors").exists():
        pytest.fail(f"no shipped LLM2Vec adapter at {adapter}")
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "bigbench_4tasks.jsonl").open()]
    by_task: dict[str, list[str]] = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row["instruction"] + "\n\n" + row["output"])
    tasks = sorted(by_task)[:3]
    texts = [t for task in tasks for t in by_task[task][:4]]
    labels = [task for task in tasks for _ in range(4)]
    featurizer = LLM2VecFeaturizer(max_length=128)
    vectors = np.zeros((12, 576), dtype=np.float32)
    for block in featurizer.featurize(_samples(texts)):  # blocks come longest first
        vectors[block.positions] = block.matrix
    assert np.linalg.norm(vectors, axis=1).min() > 0  # every row was embedded
    model, _ = featurizer.encoder()
    assert is_bidirectional(model)
    assert same_task_metrics(torch.from_numpy(vectors), labels)["auc"] > 0.8
