"""`mona sae train` as a library call: pick texts, collect activations at a layer (cached, resumable), train
a TopK SAE, save it in the sparsify layout with a model card."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mona.atomic import write_text
from mona.data.readers import read_samples
from mona.data.render import Rendered, render
from mona.models import TruncatedLM, load_lm, model_fingerprint
from mona.paths import cache_root
from mona.sae.collect import collect_activations, load_activations
from mona.sae.options import DEFAULT_MIX, SaeBuildConfig, SaeTrainConfig
from mona.sae.textmix import default_text_mix
from mona.sae.topk import default_layer
from mona.sae.train import save_sae, train_sae


def text_items(texts: str, n_samples: int, tokenizer, seed: int = 0) -> tuple[list[Rendered], str]:
    """Rendered training texts (a third chat-templated, the rest plain) and an id naming them."""
    if texts == DEFAULT_MIX:
        samples, modes = default_text_mix(n_samples, seed=seed)
        texts_id = f"{DEFAULT_MIX}:n={n_samples}:seed={seed}"
    else:
        samples = read_samples(texts)[:n_samples]
        rng = np.random.default_rng(seed)
        modes = ["chat" if rng.random() < 1 / 3 else "plain" for _ in samples]
        texts_id = f"{Path(texts).resolve()}:{hashlib.sha256(Path(texts).read_bytes()).hexdigest()[:12]}"
    return [render(s, tokenizer, m) for s, m in zip(samples, modes, strict=True)], texts_id


def collect_cached(lm: TruncatedLM, items: list[Rendered], key: list, *, log: Callable[[str], None] = print
                   ) -> tuple[Path, int]:
    """Collect the activations of every layer `lm` reads into the cache dir named by `key` (resumable):
    (directory, number of shards)."""
    digest = hashlib.sha256(json.dumps([*key, lm.layers, lm.max_length]).encode()).hexdigest()[:16]
    acts_dir = cache_root() / "acts" / digest
    t0 = time.time()

    def progress(done: int, tokens: int) -> None:
        if done % 512 == 0 or done == len(items):
            log(f"activations: {done}/{len(items)} samples, {tokens} tokens, {time.time() - t0:.0f} s")

    return acts_dir, collect_activations(lm, items, acts_dir, progress=progress)


def train_and_save(acts: np.ndarray, out: Path, *, config: SaeTrainConfig, meta: dict, n_samples: int,
                   max_length: int, log: Callable[[str], None] = print) -> dict:
    """Train an SAE on activations and write it with a model card; `meta` names model, layer, texts and
    command. Returns the full metadata."""
    sae, report = train_sae(acts, config, log=log)
    meta = {**meta, "num_latents": report.num_latents, "train_seconds": round(report.seconds),
            "train_tokens": report.train_tokens, "heldout_tokens": report.heldout_tokens,
            "fvu": round(report.fvu, 4), "l0": round(report.l0, 2),
            "dead_fraction": round(report.dead_fraction, 4), "train_config": asdict(config)}
    save_sae(sae, out, meta=meta)
    write_text(out / "README.md", model_card(meta, n_samples=n_samples, max_length=max_length))
    return meta


def build_sae(out: Path, build: SaeBuildConfig | None = None, config: SaeTrainConfig | None = None, *,
              command: str = "", log: Callable[[str], None] = print) -> dict:
    """Train an SAE on `build.texts` (a file, or the default BIG-bench mix) and write it to `out`."""
    build, config = build or SaeBuildConfig(), config or SaeTrainConfig()
    texts, n_samples, model, layer, max_length = build.texts, build.samples, build.model, build.layer, build.max_length
    model_obj, tokenizer = load_lm(model)
    lm = TruncatedLM(model_obj, tokenizer, default_layer(model) if layer is None else layer, max_length=max_length,
                     batch_tokens=4096)
    layer_idx = lm.layers[0]
    items, texts_id = text_items(texts, n_samples, tokenizer, config.seed)
    acts_dir, n_shards = collect_cached(lm, items, [model_fingerprint(model), texts_id], log=log)
    acts = load_activations(acts_dir, layer_idx, n_shards)
    log(f"training on {len(acts)} tokens of layer {layer_idx} ({acts_dir})")
    meta = {"model": model or "smollm2-135m-instruct", "layer": layer_idx, "texts": texts_id, "command": command}
    return train_and_save(acts, out, config=config, meta=meta, n_samples=len(items), max_length=max_length,
                          log=log)


def model_card(meta: dict, *, n_samples: int, max_length: int) -> str:
    """A short model card for a trained SAE."""
    cfg = meta["train_config"]
    d_latents = f"{cfg['expansion_factor']}x"
    return f"""# TopK SAE for {meta['model']}, layer {meta['layer']}

Content tokens only: no padding, special tokens, first token or template text.
A TopK sparse autoencoder (z = TopK(ReLU(W_enc (x - b_dec) + b_enc)), k = {cfg['k']}, width {d_latents} the
model's hidden size) on the residual stream after decoder layer {meta['layer']} (0-based), in the
[sparsify](https://github.com/EleutherAI/sparsify) layout (`cfg.json` + `sae.safetensors`, float16).

| | |
|---|---|
| training texts | `{meta['texts']}`: {n_samples} samples, at most {max_length} tokens each |
| rendering | a third with the chat template, the rest plain |
| training tokens | {meta['train_tokens']:,} content tokens |
| held-out tokens | {meta['heldout_tokens']:,} (5 % of the collected tokens, drawn at random) |
| latents | {meta.get('num_latents', '')} |
| fraction of variance unexplained (held-out) | {meta['fvu']} |
| L0 (held-out) | {meta['l0']} |
| dead latents (never fire on held-out tokens) | {meta['dead_fraction']:.2%} |
| epochs / batch tokens / lr | {cfg['epochs']} / {cfg['batch_tokens']} / {cfg['lr']} |
| training time | {meta.get('train_seconds', '')} s on this machine |

BIG-bench texts are Apache-2.0. Reproduce with:

    {meta['command']}
"""
