"""Train a TopK SAE on cached activations with sparsify's `SparseCoder` (its TopK encoder, FVU and AuxK
losses). sparsify's own trainer re-runs the LM for every batch and assumes a GPU; on a CPU it is far cheaper
to collect activations once and make several passes over them, so the loop is ours."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mona.atomic import atomic_dir
from mona.sae.options import SaeTrainConfig
from mona.sae.topk import _sparsify, as_sae, encode


@dataclass
class SaeReport:
    """Held-out figures of a trained SAE."""

    train_tokens: int
    heldout_tokens: int
    fvu: float
    l0: float
    dead_fraction: float
    num_latents: int
    k: int
    seconds: float


def _scale(acts: np.ndarray) -> float:
    """Factor bringing the mean activation norm to sqrt(d): keeps Adam's step sizes meaningful."""
    sample = torch.from_numpy(acts[:: max(1, len(acts) // 50_000)].astype(np.float32))
    return float(math.sqrt(acts.shape[1]) / sample.norm(dim=1).mean())


@torch.no_grad()
def evaluate_sae(sae, acts: np.ndarray, batch: int = 8192) -> tuple[float, float, float]:
    """(FVU, mean L0, fraction of latents that never fire) of an SAE on raw activations."""
    x_all = torch.from_numpy(acts.astype(np.float32))
    mean = x_all.mean(0)
    total_var = float((x_all - mean).pow(2).sum())
    err = 0.0
    fired = torch.zeros(sae.num_latents, dtype=torch.bool)
    l0 = 0.0
    coder = as_sae(sae)  # a trained SparseCoder or a loaded SAE of any family
    for start in range(0, len(x_all), batch):
        x = x_all[start:start + batch]
        values, indices = encode(coder, x)
        recon = coder.decode(values.to(coder.device), indices.to(coder.device)).cpu()
        err += float((x - recon).pow(2).sum())
        nz = values > 0
        l0 += float(nz.sum())
        fired[indices[nz]] = True
    return err / total_var, l0 / len(x_all), 1.0 - float(fired.float().mean())


def train_sae(acts: np.ndarray, cfg: SaeTrainConfig, *, log: Callable[[str], None] = print):
    """Train on activations [N, d] (float16/32); return (SparseCoder on raw activations, SaeReport)."""
    SparseCoder, SparseCoderConfig = _sparsify()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(acts))
    n_held = max(1, int(len(acts) * cfg.heldout_fraction))
    held, train = acts[np.sort(order[:n_held])], acts[np.sort(order[n_held:])]
    d = acts.shape[1]
    scale = _scale(train)
    sae = SparseCoder(d, SparseCoderConfig(expansion_factor=cfg.expansion_factor, k=cfg.k))
    with torch.no_grad():
        sae.b_dec.copy_(torch.from_numpy(train[:200_000].astype(np.float32)).mean(0) * scale)
    lr = cfg.lr or 2e-4 / math.sqrt(sae.num_latents / 2**14)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    steps_per_epoch = len(train) // cfg.batch_tokens
    total = steps_per_epoch * cfg.epochs
    last_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    seen = 0
    t0 = time.time()
    step = 0
    for epoch in range(cfg.epochs):
        perm = rng.permutation(len(train))
        for i in range(steps_per_epoch):
            idx = np.sort(perm[i * cfg.batch_tokens:(i + 1) * cfg.batch_tokens])
            x = torch.from_numpy(train[idx].astype(np.float32)) * scale
            dead = (seen - last_fired) > cfg.dead_tokens
            out = sae(x, dead_mask=dead if seen > cfg.dead_tokens else None)
            loss = out.fvu + cfg.auxk_alpha * out.auxk_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            # Linear decay over the last 20 % of steps, as sparsify's schedule ends.
            frac = step / max(1, total)
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (1 - frac) / 0.2)
            opt.step()
            sae.set_decoder_norm_to_unit_norm()
            seen += len(idx)
            last_fired[out.latent_indices[out.latent_acts > 0].unique()] = seen
            step += 1
            if step % 50 == 0 or step == total:
                log(f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total} fvu {out.fvu.item():.4f} "
                    f"dead {float(dead.float().mean()):.3f} {time.time() - t0:.0f}s")
    # Fold the input scale into the weights so the SAE reads raw activations: z is unchanged.
    with torch.no_grad():
        sae.encoder.weight.mul_(scale)
        sae.b_dec.div_(scale)
        sae.W_dec.div_(scale)
    sae.eval().requires_grad_(False)
    fvu, l0, dead_frac = evaluate_sae(sae, held)
    report = SaeReport(train_tokens=len(train), heldout_tokens=len(held), fvu=fvu, l0=l0,
                       dead_fraction=dead_frac, num_latents=int(sae.num_latents), k=cfg.k,
                       seconds=time.time() - t0)
    log(f"held-out FVU {fvu:.4f}  L0 {l0:.1f}  dead {dead_frac:.3%}")
    return sae, report


def save_sae(sae, out_dir: Path, *, meta: dict, dtype: torch.dtype = torch.float16) -> None:
    """Write the sparsify layout (cfg.json + sae.safetensors) atomically, with mona's metadata in cfg.json."""
    with atomic_dir(out_dir) as tmp:
        sae.to(dtype).save_to_disk(tmp)
        sae.float()
        cfg = json.loads((tmp / "cfg.json").read_text())
        cfg.update(meta)
        (tmp / "cfg.json").write_text(json.dumps(cfg, indent=1))


def report_dict(report: SaeReport, cfg: SaeTrainConfig) -> dict:
    """Report and config as one JSON-able dict (for the model card)."""
    return {"report": asdict(report), "train_config": asdict(cfg)}
