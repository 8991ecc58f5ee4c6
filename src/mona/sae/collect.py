"""Collect residual-stream activations of a text set at one or more layers (one forward pass) into cached
float16 shards, for SAE training and for benchmark sweeps. Only poolable tokens are kept (no padding, special
tokens, first token or template text), so an SAE learns the distribution it will encode.

Shard i holds `shard-0000i.L<layer>.npy` ([tokens, d_model] per layer) and `shard-0000i.index.npy`
([samples, 2]: the item's position and its number of tokens, in the order the tokens are stored). The index
is written last and atomically, so a shard counts only when complete and a killed run resumes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mona.atomic import atomic_path
from mona.data.render import Rendered
from mona.models.truncated import TruncatedLM


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def _shard(out_dir: Path, i: int, part: str) -> Path:
    return out_dir / f"shard-{i:05d}.{part}.npy"


def collect_activations(lm: TruncatedLM, items: Sequence[Rendered], out_dir: Path, *,
                        layers: Sequence[int] | None = None, shard_samples: int = 512,
                        progress: Callable[[int, int], None] | None = None) -> int:
    """Collect the layers' activations (default: every layer `lm` reads) of `items` into `out_dir`, skipping
    complete shards. `progress(samples_done, tokens_done)` is called after each batch. Returns the
    number of shards."""
    layers = list(layers or lm.layers)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens_done = 0
    n_shards = (len(items) + shard_samples - 1) // shard_samples
    for i in range(n_shards):
        start = i * shard_samples
        index_path = _shard(out_dir, i, "index")
        if index_path.exists() and all(_shard(out_dir, i, f"L{lyr}").exists() for lyr in layers):
            tokens_done += int(np.load(index_path)[:, 1].sum())
            if progress:
                progress(min(start + shard_samples, len(items)), tokens_done)
            continue
        chunks: dict[int, list[np.ndarray]] = {lyr: [] for lyr in layers}
        index: list[tuple[int, int]] = []
        done = start
        for batch in lm.run(items[start:start + shard_samples]):
            counts = batch.pool_mask.sum(dim=1).tolist()
            index.extend((start + p, int(n)) for p, n in zip(batch.positions, counts, strict=True))
            for lyr in layers:
                chunks[lyr].append(batch.resid[lyr][batch.pool_mask].half().numpy())
            done += len(batch.positions)
            tokens_done += int(sum(counts))
            if progress:
                progress(done, tokens_done)
        for lyr in layers:
            _save(_shard(out_dir, i, f"L{lyr}"),
                  np.concatenate(chunks[lyr]) if chunks[lyr] else np.zeros((0, lm.d_model), np.float16))
        _save(index_path, np.asarray(index, dtype=np.int64).reshape(-1, 2))
    return n_shards


def load_activations(out_dir: Path, layer: int, n_shards: int) -> np.ndarray:
    """All collected tokens of one layer, shard by shard (float16 [tokens, d_model])."""
    return np.concatenate([np.load(_shard(out_dir, i, f"L{layer}")) for i in range(n_shards)])


def load_by_sample(out_dir: Path, layer: int, n_shards: int) -> tuple[np.ndarray, np.ndarray]:
    """One layer's tokens reordered so each item's tokens are contiguous and items follow input order:
    (float16 [tokens, d_model], offsets [items + 1])."""
    index = np.concatenate([np.load(_shard(out_dir, i, "index")) for i in range(n_shards)])
    acts = load_activations(out_dir, layer, n_shards)
    starts = np.concatenate([[0], np.cumsum(index[:, 1])[:-1]])
    order = np.argsort(index[:, 0], kind="stable")
    lengths = index[order, 1]
    take = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[order], lengths, strict=True)]) \
        if len(order) else np.zeros(0, np.int64)
    return acts[take], np.concatenate([[0], np.cumsum(lengths)])
