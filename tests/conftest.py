"""Shared fixtures: a tiny word-level tokenizer, a tiny random LLaMA saved with it, and a tiny TopK SAE trained on
that model's activations. Everything is built here, offline, in a few seconds."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `--dtype auto` stays fp32 on every machine, in this process and every one it starts (CLI runs, Ray workers):
# the tests' references and tolerances are fp32's (bf16 scores move with batching, docs/reliability.md). The
# tests of the resolution itself unset it.
os.environ["MONA_NO_CPU_BF16"] = "1"

import pytest
import torch

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "[UNK]"]
ROLES = ["system", "user", "assistant"]
MATH = [
    "add", "subtract", "multiply", "divide", "the", "sum", "of", "two", "three", "four", "five", "numbers",
    "equals", "what", "is", "plus", "minus", "times"
]
COOK = [
    "bake", "a", "cake", "with", "flour", "sugar", "eggs", "butter", "oven", "minutes", "mix", "bowl", "recipe",
    "stir", "salt", "pepper", "soup"
]
MISC = [
    "hello", "world", "cat", "sat", "on", "mat", "please", "answer", "question", "story", "about", "dog", "ran",
    "park", "tell", "me"
]
PUNCT = [".", ",", "?", "!", ":"]
WORDS = sorted(set(ROLES + MATH + COOK + MISC + PUNCT))
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"

# the accelerators torch may see: a test parametrised over them runs where its device exists and says why it
# skipped elsewhere
ACCELERATORS = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA GPU (torch sees none here)")),
    pytest.param("mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(),
                                                 reason="needs an Apple-silicon MPS GPU (torch sees none here)")),
]
N_LAYERS = 3
HIDDEN = 32
SAE_LAYER = N_LAYERS - 2  # the default (penultimate) layer


def make_tokenizer():
    """A fast word-level tokenizer over WORDS whose special tokens are added tokens (one id each)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="[UNK]")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=64,
                         num_hidden_layers=N_LAYERS, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=0, eos_token_id=1, pad_token_id=2,
                         initializer_range=0.2)
    model = LlamaForCausalLM(config)
    model.eval()
    model.requires_grad_(False)
    return model


def sentences(n: int, seed: int = 0) -> list[str]:
    """Random short sentences mixing the three topics (each sentence mostly from one topic)."""
    rng = random.Random(seed)
    topics = [MATH, COOK, MISC]
    out = []
    for i in range(n):
        topic = topics[i % 3]
        words = [rng.choice(topic) for _ in range(rng.randint(4, 10))]
        out.append(" ".join(words) + rng.choice([" .", " ?", ""]))
    return out


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A directory holding the tiny LLaMA and its tokenizer (loadable with `--model DIR`)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tok = make_tokenizer()
    model = make_model(len(tok))
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture
def tiny_model(model_dir):
    """A fresh copy of the tiny model (TruncatedLM modifies the model it wraps)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory, model_dir) -> Path:
    """A TopK SAE (sparsify layout) trained on the tiny model's penultimate-layer activations."""
    from transformers import AutoModelForCausalLM

    from mona.data.formats import Record, Sample
    from mona.data.render import render
    from mona.models import TruncatedLM
    from mona.sae.train import SaeTrainConfig, save_sae, train_sae

    tok = make_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    lm = TruncatedLM(model, tok, SAE_LAYER, max_length=64)
    items = []
    for i, text in enumerate(sentences(90, seed=1)):
        sample = Sample(str(i), (("user", text),), None, Record({"text": text}, i, i + 1))
        items.append(render(sample, tok, "chat" if i % 2 else "plain"))
    acts = torch.cat([b.resid[SAE_LAYER][b.pool_mask] for b in lm.run(items)]).numpy()
    assert acts.shape[0] > 300
    cfg = SaeTrainConfig(expansion_factor=4, k=8, epochs=3, batch_tokens=64, lr=2e-3, dead_tokens=10_000)
    sae, _report = train_sae(acts, cfg, log=lambda _m: None)
    path = tmp_path_factory.mktemp("sae") / "tiny-sae"
    save_sae(sae, path, meta={"model": str(model_dir), "layer": SAE_LAYER})
    return path


@pytest.fixture
def cache_env(tmp_path, monkeypatch) -> Path:
    """MONA_CACHE pointed at a fresh temporary directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MONA_CACHE", str(cache))
    return cache


def write_jsonl(path: Path, rows: list[dict], *, newline: str = "\n") -> Path:
    path.write_text("".join(json.dumps(r) + newline for r in rows), encoding="utf-8")
    return path
