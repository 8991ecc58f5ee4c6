"""Collect residual-stream activations of a text set at one layer into cached float16 shards, for SAE
training. Only poolable tokens are kept (no padding, special tokens, first token or template text), so the
SAE learns the distribution it will encode. Shards are written atomically: a killed run resumes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mona.data.render import Rendered
from mona.models.truncated import TruncatedLM


def collect_activations(lm: TruncatedLM, items: Sequence[Rendered], out_dir: Path, *, layer: int,
                        shard_samples: int = 512,
                        progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write one `.npy` (float16, [tokens, d_model]) per shard of `shard_samples` inputs; skip shards that
    already exist. `progress(samples_done, tokens_done)` is called after each batch."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    tokens_done = 0
    for start in range(0, len(items), shard_samples):
        path = out_dir / f"shard-{start // shard_samples:05d}.npy"
        paths.append(path)
        if path.exists():
            tokens_done += int(np.load(path, mmap_mode="r").shape[0])
            if progress:
                progress(min(start + shard_samples, len(items)), tokens_done)
            continue
        chunks = []
        done = start
        for batch in lm.run(items[start:start + shard_samples]):
            acts = batch.resid[layer][batch.pool_mask]
            chunks.append(acts.half().numpy())
            done += len(batch.positions)
            tokens_done += acts.shape[0]
            if progress:
                progress(done, tokens_done)
        tmp = path.with_suffix(".partial.npy")
        np.save(tmp, np.concatenate(chunks) if chunks else np.zeros((0, lm.d_model), np.float16))
        os.replace(tmp, path)
    (out_dir / "manifest.json").write_text(json.dumps({"shards": [p.name for p in paths]}))
    return paths


def load_activations(paths: Sequence[Path]) -> np.ndarray:
    """Concatenate activation shards into one float16 array."""
    return np.concatenate([np.load(p) for p in paths])
