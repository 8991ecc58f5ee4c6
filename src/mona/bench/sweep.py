"""`mona bench relevance --sweep`: MoNA's design choices on the relevance suite, one axis at a time.

Every variant is scored from the same per-token activations: one forward pass per rendering collects the pool
and target rows at every swept layer (cached, resumable), and one pass collects an SAE training mix at the
same layers, on which an SAE is trained per (layer, width, k) point (cached). Pooling, similarity, prototype,
centring, SAE k and width then cost seconds each instead of a forward pass. Rank fusion with BM25 or dense
embeddings reuses those methods' scores from the ordinary benchmark path."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from mona.bench.relevance import MethodRun, evaluate, machine
from mona.bench.suite import Suite
from mona.data.formats import Sample, to_sample
from mona.data.readers import Record
from mona.data.render import render
from mona.features.pooling import pool_dense, pool_sparse_codes
from mona.models import TruncatedLM, load_lm, model_fingerprint
from mona.paths import cache_root
from mona.sae.build import DEFAULT_MIX, collect_cached, text_items, train_and_save
from mona.sae.collect import load_activations, load_by_sample
from mona.sae.topk import default_layer, encode, load_sae, resolve_sae_path, sae_metadata
from mona.sae.train import SaeTrainConfig
from mona.scoring.similarity import prototype, score
from mona.selection.pipeline import compute_scores, prototype_scores
from mona.selection.registry import MethodOptions

Matrix = sp.csr_matrix | np.ndarray


@dataclass(frozen=True)
class SweepConfig:
    """The axes swept, each around the base point (the shipped defaults)."""

    layers: tuple[int, ...] = (6, 12, 18, 24, 28)
    base_layer: int = field(default_factory=lambda: default_layer(None))  # the shipped SAE's
    widths: tuple[int, ...] = (8, 16, 32)
    ks: tuple[int, ...] = (16, 32, 64)
    base_width: int = 16
    base_k: int = 32
    inference_ks: tuple[int, ...] = (8, 16)
    renders: tuple[str, ...] = ("chat", "plain")
    sae_samples: int = 4000
    sae_epochs: int = 3
    max_length: int = 512
    seed: int = 0


@dataclass(frozen=True)
class Variant:
    """One point of the sweep: how vectors are made and scored."""

    axis: str
    label: str
    render: str = "chat"
    layer: int = 28
    sae: str | None = "shipped"  # "shipped", a trained (width, k) point "x16-k32", or None: raw hidden states
    pooling: str = "mean"
    k: int | None = None  # keep the k largest codes per token at inference
    similarity: str = "jaccard"
    prototype: str = "single"
    centre: bool = False  # subtract the pool's mean vector (then cosine)
    fuse: str | None = None  # rank-fuse with this method's ranking (reciprocal rank fusion)


def _samples(rows: Sequence[dict]) -> list[Sample]:
    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


def variants(cfg: SweepConfig) -> list[Variant]:
    """The sweep's variants, grouped by axis; each changes one thing from the base point."""
    base = Variant("base", f"mona as shipped (chat, layer {cfg.base_layer}, shipped SAE, mean, jaccard, single "
                   "prototype)", layer=cfg.base_layer)
    trained = f"x{cfg.base_width}-k{cfg.base_k}"
    out = [base]
    out += [replace(base, axis="layer (SAE trained per layer)", label=f"layer {lyr}", layer=lyr, sae=trained)
            for lyr in cfg.layers]
    out += [replace(base, axis="layer, mona's defaults (SAE trained per layer, max pooling, k 16)",
                    label=f"layer {lyr}", layer=lyr, sae=trained, pooling="max", k=16) for lyr in cfg.layers]
    out += [replace(base, axis="layer (hidden states, cosine)", label=f"layer {lyr}", layer=lyr, sae=None,
                    similarity="cosine") for lyr in cfg.layers]
    out += [replace(base, axis="SAE width (trained)", label=f"{w}x", sae=f"x{w}-k{cfg.base_k}") for w in cfg.widths]
    out += [replace(base, axis="SAE k (trained)", label=f"k {k}", sae=f"x{cfg.base_width}-k{k}") for k in cfg.ks]
    out += [replace(base, axis="SAE training tokens", label="sweep mix", sae=trained),
            replace(base, axis="SAE training tokens", label="shipped SAE")]
    out += [replace(base, axis="k at inference (shipped SAE)", label=f"k {k}", k=k) for k in cfg.inference_ks]
    out += [replace(base, axis="pooling", label=p, pooling=p) for p in ("mean", "max", "sum")]
    out += [replace(base, axis="similarity", label=s, similarity=s) for s in ("jaccard", "cosine")]
    out += [replace(base, axis="centring", label="mona centred, cosine", centre=True, similarity="cosine"),
            replace(base, axis="centring", label="hidden, cosine", sae=None, similarity="cosine"),
            replace(base, axis="centring", label="hidden centred, cosine", sae=None, similarity="cosine",
                    centre=True)]
    out += [replace(base, axis="prototype", label=p, prototype=p) for p in ("single", "max", "per-subtask")]
    out += [replace(base, axis="rendering", label=r, render=r) for r in cfg.renders]
    out += [replace(base, axis="rank fusion", label=f"mona + {m}", fuse=m) for m in ("bm25", "dense")]
    # the best single changes above, together (max pooling was the largest single gain)
    best = replace(base, axis="combinations", label="max pooling", pooling="max")
    out += [best, replace(best, label="max pooling, cosine", similarity="cosine"),
            replace(best, label="max pooling, k 16 at inference", k=16),
            replace(best, label="max pooling, per-subtask prototypes", prototype="per-subtask"),
            replace(best, label="max pooling, plain text", render="plain"),
            replace(best, label="max pooling + dense (rank fusion)", fuse="dense"),
            replace(best, label="sum pooling, per-subtask prototypes", pooling="sum", prototype="per-subtask")]
    return out


class SuiteActivations:
    """Per-token activations of the suite's rows (pool first, then each target set) per rendering and layer."""

    def __init__(self, suite: Suite, cfg: SweepConfig, lm: TruncatedLM, tokenizer, model: str | None,
                 log: Callable[[str], None]) -> None:
        self.samples = _samples(suite.pool) + [s for t in suite.targets for s in _samples(t.rows)]
        self.suite, self.cfg, self.lm, self.tokenizer, self.model, self.log = suite, cfg, lm, tokenizer, model, log
        self._dirs: dict[str, tuple[Path, int]] = {}
        self._loaded: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, render_mode: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(float16 tokens [N, d], offsets [rows + 1]) in suite order."""
        if render_mode not in self._dirs:
            self.log(f"suite activations ({render_mode}): {len(self.samples)} rows, layers {self.lm.layers}")
            items = [render(s, self.tokenizer, render_mode) for s in self.samples]
            key = ["bench-suite", model_fingerprint(self.model), render_mode, self.suite.config]
            self._dirs[render_mode] = collect_cached(self.lm, items, key, log=self.log)
        if (render_mode, layer) not in self._loaded:
            self._loaded.clear()  # a few hundred MB per layer: keep one
            acts_dir, n_shards = self._dirs[render_mode]
            self._loaded[(render_mode, layer)] = load_by_sample(acts_dir, layer, n_shards)
        return self._loaded[(render_mode, layer)]


class SweepSaes:
    """SAEs trained on the sweep's text mix, one per (layer, width, k), cached under the cache root."""

    def __init__(self, cfg: SweepConfig, lm: TruncatedLM, tokenizer, model: str | None,
                 log: Callable[[str], None]) -> None:
        self.cfg, self.lm, self.tokenizer, self.model, self.log = cfg, lm, tokenizer, model, log
        self._acts: tuple[Path, int] | None = None
        self.meta: dict[str, dict] = {}

    def path(self, layer: int, point: str) -> Path:
        c = self.cfg
        return cache_root() / "sweep-saes" / f"{DEFAULT_MIX}-n{c.sae_samples}-e{c.sae_epochs}-L{layer}-{point}"

    def get(self, layer: int, point: str) -> Path:
        """The SAE for a layer and a "x<width>-k<k>" point, trained now if not cached."""
        out = self.path(layer, point)
        if not (out / "cfg.json").exists():
            if self._acts is None:
                items, texts_id = text_items(DEFAULT_MIX, self.cfg.sae_samples, self.tokenizer, self.cfg.seed)
                self._acts = collect_cached(self.lm, items, [model_fingerprint(self.model), texts_id], log=self.log)
                self._texts_id, self._n_items = texts_id, len(items)
            width, k = (int(v[1:]) for v in point.split("-"))
            self.log(f"training SAE layer {layer} {width}x k {k}")
            acts = load_activations(self._acts[0], layer, self._acts[1])
            train_and_save(acts, out, config=SaeTrainConfig(expansion_factor=width, k=k,
                                                            epochs=self.cfg.sae_epochs, seed=self.cfg.seed),
                           meta={"model": self.model or "smollm2-135m-instruct", "layer": layer,
                                 "texts": self._texts_id, "command": "mona bench relevance --sweep"},
                           n_samples=self._n_items, max_length=self.lm.max_length, log=self.log)
        self.meta[f"L{layer}-{point}"] = sae_metadata(out)
        return out


def sae_vectors(sae, acts: np.ndarray, offsets: np.ndarray, pooling: str, k: int | None,
                chunk: int = 8192) -> sp.csr_matrix:
    """Pooled SAE codes per row from per-token activations."""
    values, indices = [], []
    for start in range(0, len(acts), chunk):
        v, i = encode(sae, torch.from_numpy(acts[start:start + chunk].astype(np.float32)), k)
        values.append(v.float())
        indices.append(i)
    rows = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    return pool_sparse_codes(rows, torch.cat(values), torch.cat(indices), len(offsets) - 1,
                             int(sae.num_latents), pooling)


def hidden_vectors(acts: np.ndarray, offsets: np.ndarray, pooling: str) -> np.ndarray:
    """Pooled raw hidden states per row."""
    rows = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    return pool_dense(rows, torch.from_numpy(acts.astype(np.float32)), len(offsets) - 1, pooling)


def rrf(*score_lists: np.ndarray, c: float = 60.0) -> np.ndarray:
    """Reciprocal rank fusion: sum of 1 / (c + rank) over the rankings (rank 1 = best; c = 60 as in Cormack
    et al. 2009)."""
    total = np.zeros(len(score_lists[0]))
    for scores in score_lists:
        ranks = np.empty(len(scores))
        ranks[np.argsort(-np.asarray(scores), kind="stable")] = np.arange(1, len(scores) + 1)
        total += 1.0 / (c + ranks)
    return total


def run_sweep(suite: Suite, k: int, cfg: SweepConfig, *, model: str | None = None, cache_dir: Path | None = None,
              log: Callable[[str], None] = print) -> tuple[list[tuple[Variant, MethodRun]], dict[str, dict]]:
    """Score every variant on the suite; returns (variant, run) pairs and the trained SAEs' metadata."""
    model_obj, tokenizer = load_lm(model)
    layers = sorted(set(cfg.layers) | {cfg.base_layer})
    lm = TruncatedLM(model_obj, tokenizer, layers, max_length=cfg.max_length)
    acts = SuiteActivations(suite, cfg, lm, tokenizer, model, log)
    saes = SweepSaes(cfg, lm, tokenizer, model, log)
    n_pool = len(suite.pool)
    ids = [s.id for s in _samples(suite.pool)]
    starts = np.cumsum([n_pool] + [len(t.rows) for t in suite.targets])
    target_samples = [_samples(t.rows) for t in suite.targets]
    fused: dict[str, list[np.ndarray]] = {}
    vectors: dict[tuple, Matrix] = {}
    results = []
    for v in variants(cfg):
        key = (v.render, v.layer, v.sae, v.pooling, v.k)
        if key not in vectors:
            x, offsets = acts.get(v.render, v.layer)
            if v.sae is None:
                vectors[key] = hidden_vectors(x, offsets, v.pooling)
            else:
                path = resolve_sae_path(None) if v.sae == "shipped" else saes.get(v.layer, v.sae)
                vectors[key] = sae_vectors(load_sae(path), x, offsets, v.pooling, v.k)
        matrix = vectors[key]
        if v.centre:
            dense = matrix.toarray() if sp.issparse(matrix) else matrix
            matrix = dense - dense[:n_pool].mean(axis=0)
        options = MethodOptions(prototype=v.prototype, similarity=v.similarity, group_field="subtask")
        run = MethodRun(f"{v.axis}: {v.label}")
        for ti, target in enumerate(suite.targets):
            scores, groups = prototype_scores(lambda p, t, o: score(p, prototype(t), o.similarity),
                                              matrix[:n_pool], matrix[starts[ti]:starts[ti + 1]],
                                              target_samples[ti], options)
            if v.fuse:
                if v.fuse not in fused:
                    pool = _samples(suite.pool)
                    fused[v.fuse] = [compute_scores(pool, ts, MethodOptions(method=v.fuse), cache_dir).scores
                                     for ts in target_samples]
                scores = rrf(scores, fused[v.fuse][ti])
            run.per_target[target.name] = evaluate(ids, scores, groups, target.relevant, k)
        log(f"{run.name:<60} P@{k} {run.mean('precision'):.3f}")
        results.append((v, run))
    return results, saes.meta


def write_sweep_report(results: Sequence[tuple[Variant, MethodRun]], sae_meta: dict[str, dict], suite: Suite,
                       k: int, cfg: SweepConfig, command: str, out_dir: Path, name: str) -> tuple[Path, Path]:
    """`<name>.json` and `<name>.md`: one table per axis (mean P@k overall and per target kind, nDCG@k)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = ["in-pool", "natural-instructions", "lm-eval"]
    data = {"command": command, "machine": machine(), "k": k, "suite": suite.config, "sweep": asdict(cfg),
            "saes": {n: {f: m.get(f) for f in ("fvu", "l0", "dead_fraction", "train_tokens", "num_latents")}
                     for n, m in sae_meta.items()},
            "variants": [{**asdict(v), "per_target": r.per_target,
                          "mean": {m: r.mean(m) for m in ("precision", "recall", "ndcg")}} for v, r in results]}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    lines = [f"# Relevance sweep: {name}", "", f"Command: `{command}`", "", f"Machine: {machine()}", "",
             f"Pool: {len(suite.pool)} BIG-bench rows over {len(suite.config.get('groups', []))} tasks "
             f"(seed {suite.config.get('seed')}); {len(suite.targets)} target sets; budget k = {k}. Each axis "
             "changes one thing from the base point. Sweep SAEs: trained on "
             f"{cfg.sae_samples} rows of the BIG-bench text mix for {cfg.sae_epochs} epochs.", ""]
    axes: dict[str, list[tuple[Variant, MethodRun]]] = {}
    for v, r in results:
        axes.setdefault(v.axis, []).append((v, r))
    for axis, rows in axes.items():
        lines += [f"## {axis}", "", "| variant | P@k all | in-pool | NI | lm-eval | nDCG@k | SAE FVU | dead |",
                  "|---|---|---|---|---|---|---|---|"]
        for v, r in rows:
            meta = sae_meta.get(f"L{v.layer}-{v.sae}", {}) if v.sae not in (None, "shipped") else {}
            fvu = f"{meta['fvu']:.3f}" if meta.get("fvu") is not None else ""
            dead = f"{meta['dead_fraction']:.1%}" if meta.get("dead_fraction") is not None else ""
            lines.append(f"| {v.label} | {r.mean('precision'):.3f} | " +
                         " | ".join(f"{r.mean('precision', [kd], suite.targets):.3f}" for kd in kinds) +
                         f" | {r.mean('ndcg'):.3f} | {fvu} | {dead} |")
        lines.append("")
    lines += ["## Precision@k per target", "", "| variant | " + " | ".join(t.name for t in suite.targets) + " |",
              "|---|" + "---|" * len(suite.targets)]
    for v, r in results:
        lines.append(f"| {v.axis}: {v.label} | " +
                     " | ".join(f"{r.per_target[t.name]['precision']:.2f}" for t in suite.targets) + " |")
    md_path = out_dir / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
