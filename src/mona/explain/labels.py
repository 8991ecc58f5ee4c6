"""Latent labels: each SAE latent's max-activating token contexts in a text set, and a short automatic label
(the tokens it fires on most strongly). Stored as gzipped JSON beside the SAE (`labels.json.gz`) or in the
cache, keyed by the SAE's fingerprint, so `mona explain` and `mona features show` can name latents."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mona.atomic import atomic_path
from mona.data.render import Rendered
from mona.errors import ConfigError
from mona.explain.options import LabelConfig
from mona.models import TruncatedLM, load_lm
from mona.outputs import check_outputs, local_path
from mona.paths import cache_root
from mona.progress import Progress, progress_step
from mona.sae.build import text_items
from mona.sae.topk import check_width, encode, load_sae, resolve_sae_path, sae_fingerprint, sae_metadata, sae_site

LABELS_FILE = "labels.json.gz"


def labels_path(sae_path: Path) -> Path:
    """Where the labels of an SAE live: beside it if present there (shipped SAEs), else in the cache."""
    beside = sae_path / LABELS_FILE
    if beside.exists():
        return beside
    return cache_root() / "labels" / f"{sae_fingerprint(sae_path)}.json.gz"


def compute_labels(lm: TruncatedLM, sae, items: Sequence[Rendered], layer: int, *, top_n: int,
                   window: int = 8, progress: Callable[[int, int], None] | None = None) -> dict:
    """Run `items` through the model, encode every content token and keep, per latent, the `top_n` strongest
    activations with `window` tokens of context on each side. Returns the labels document."""
    tokenizer = lm.tokenizer
    site = sae_site(sae).kind  # the residual stream, or the MLP / attention output the SAE was trained on
    lm.capture([site])
    tokens_of: dict[int, list[int]] = {}
    latent_parts, value_parts, where_parts = [], [], []
    fired = torch.zeros(int(sae.num_latents), dtype=torch.long)
    done = n_tokens = 0
    for batch in lm.run(items):
        rows, cols = torch.nonzero(batch.pool_mask, as_tuple=True)
        values, indices = encode(sae, batch.site(site, layer)[batch.pool_mask])
        keep = values > 0
        positions = torch.tensor(batch.positions)[rows]
        # token location packed as item * 2**20 + position (items have far fewer than 2**20 tokens)
        where = (positions.long() << 20) | cols.long()
        latent_parts.append(indices[keep].int().numpy())
        value_parts.append(values[keep].float().numpy())
        where_parts.append(where.unsqueeze(1).expand_as(indices)[keep].numpy())
        fired += torch.bincount(indices[keep].long(), minlength=int(sae.num_latents))
        for row, pos in enumerate(batch.positions):
            tokens_of[pos] = batch.input_ids[row].tolist()  # padding is a special token: decoding skips it
        done += len(batch.positions)
        n_tokens += len(rows)
        if progress:
            progress(done, n_tokens)
    latents = np.concatenate(latent_parts) if latent_parts else np.zeros(0, np.int32)
    values = np.concatenate(value_parts) if value_parts else np.zeros(0, np.float32)
    wheres = np.concatenate(where_parts) if where_parts else np.zeros(0, np.int64)
    order = np.lexsort((-values, latents))  # by latent, strongest first
    starts = np.searchsorted(latents[order], np.arange(int(sae.num_latents) + 1))
    out: dict[str, dict] = {}
    for latent in range(int(sae.num_latents)):
        top = order[starts[latent]:min(starts[latent + 1], starts[latent] + top_n)]
        examples = []
        firing = Counter()
        for j in top:
            item, pos = int(wheres[j] >> 20), int(wheres[j] & ((1 << 20) - 1))
            ids = tokens_of[item]
            token = tokenizer.decode([ids[pos]])
            firing[token.strip() or token] += 1
            examples.append({"left": tokenizer.decode(ids[max(1, pos - window):pos], skip_special_tokens=True),
                             "token": token,
                             "right": tokenizer.decode(ids[pos + 1:pos + 1 + window], skip_special_tokens=True),
                             "value": round(float(values[j]), 4)})
        out[str(latent)] = {"label": " | ".join(t for t, _ in firing.most_common(3)),
                            "frequency": round(int(fired[latent]) / max(1, n_tokens), 6), "examples": examples}
    return {"tokens": n_tokens, "texts": len(items), "top_n": top_n, "window": window, "latents": out}


def save_labels(doc: dict, path: Path) -> None:
    """Write the labels document (gzipped JSON) atomically."""
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)


def load_labels(sae_path: Path) -> dict | None:
    """The labels document of an SAE, or None if it has none yet."""
    path = labels_path(sae_path)
    if not path.exists():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def label_latents(config: LabelConfig, out: Path | None = None, progress: Progress | None = None
                  ) -> tuple[dict, Path]:
    """`mona features label`: label every latent of the SAE from its max-activating contexts in the texts and
    save the labels to `out` (default: labels_path); returns the labels document and where it was written."""
    sae_path = resolve_sae_path(config.sae, config.layer)
    path = out or labels_path(sae_path)
    # the SAE's own files are inputs; its directory is where labels normally go
    sae_files = [sae_path] if sae_path.is_file() else [p for p in sae_path.iterdir() if p.name != LABELS_FILE]
    check_outputs({"--sae": sae_files, "--texts": local_path(config.texts), "--model": local_path(config.model)},
                  {"--out": path})
    # the layer the SAE reads, from its own description (hookpoint name, or mona's `layer` key)
    sae_layer = sae_metadata(sae_path).get("layer")
    if sae_layer is None and config.layer is None:
        raise ConfigError("the SAE does not say which decoder layer it reads: pass --layer N", path=str(sae_path))
    sae = load_sae(sae_path)
    model, tokenizer = load_lm(config.model)
    lm = TruncatedLM(model, tokenizer, config.layer if config.layer is not None else sae_layer)
    check_width(sae, lm.d_model, sae_path=sae_path, layer=lm.layers[0], sae_layer=sae_layer)
    items, texts_id = text_items(config.texts, config.samples, tokenizer)
    with progress_step(progress, "labelling latents", len(items)) as update:
        doc = compute_labels(lm, sae, items, lm.layers[0], top_n=config.top_n, progress=update)
    doc["texts_id"] = texts_id
    save_labels(doc, path)
    return doc, path
