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

from mona.atomic import write_text
from mona.bench.relevance import (
    MethodRun,
    evaluate,
    halves,
    length_ratio,
    machine,
    row_words,
    summary_columns,
)
from mona.bench.suite import Suite
from mona.data.formats import Sample, to_sample
from mona.data.readers import Record
from mona.data.render import render
from mona.features.cache import config_key
from mona.features.options import ROW_LATENTS, LMConfig
from mona.features.pooling import keep_row_top, pool_dense, pool_sparse_codes
from mona.models import DtypeChoice, TruncatedLM, load_lm, model_fingerprint, resolve_dtype
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

    layers: tuple[int, ...] = (12, 18, 24, 28)
    sae_layers: tuple[int, ...] = (18, 28)  # layers an SAE is trained for (alike, on the sweep's text mix)
    base_layer: int = field(default_factory=lambda: default_layer(None))  # the shipped SAE's
    widths: tuple[int, ...] = ()
    ks: tuple[int, ...] = ()
    base_width: int = 16
    base_k: int = 32
    inference_ks: tuple[int, ...] = (8, 16, 32)
    renders: tuple[str, ...] = ("chat", "plain")
    weightings: tuple[str, ...] = ("idf", "density", "drop-common", "specificity")
    row_latents: int = field(default_factory=lambda: ROW_LATENTS)  # the combinations' latents per row
    sae_samples: int = 2000
    sae_epochs: int = 3
    max_length: int = 512
    seed: int = 0
    axes: tuple[str, ...] = ()  # run only the variants of these axes (their table titles); empty: every axis


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
    weighting: str | None = None  # latent weights: idf | drop-common | specificity (latent_weights) | density
    normalise: str | None = None  # row scaling before scoring: l1 (each row sums to 1)
    row_top: int | None = None  # keep each pooled row's n largest latents (the same number for short and long rows)
    answer_weight: float | None = None  # turn-aware pooling (turn_aware): the answer turns' share of a row


def _samples(rows: Sequence[dict]) -> list[Sample]:
    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


def variants(cfg: SweepConfig) -> list[Variant]:
    """The sweep's variants, grouped by axis; each changes one thing from one of two base points: the first
    round's defaults (max pooling, 16 codes per token, every latent) and the paper's configuration (mean pooling,
    all codes); the combinations change one thing from their own base."""
    mona = Variant("base", f"the first round's defaults (chat, layer {cfg.base_layer}, shipped SAE, max pooling, "
                   "k 16, jaccard, one prototype, every latent)", layer=cfg.base_layer, pooling="max", k=16)
    paper = Variant("base", "the paper's configuration (mean pooling, all k codes)", layer=cfg.base_layer)
    trained = f"x{cfg.base_width}-k{cfg.base_k}"
    out = [mona, paper]
    for name, b in (("mona", mona), ("paper", paper)):
        out += [replace(b, axis=f"layer, {name} (SAE trained per layer)", label=f"layer {lyr}", layer=lyr,
                        sae=trained) for lyr in cfg.sae_layers]
    out += [replace(paper, axis="layer (hidden states, cosine)", label=f"layer {lyr}", layer=lyr, sae=None,
                    similarity="cosine") for lyr in cfg.layers]
    out += [replace(paper, axis="SAE width (trained)", label=f"{w}x", sae=f"x{w}-k{cfg.base_k}") for w in cfg.widths]
    out += [replace(paper, axis="SAE k (trained)", label=f"k {k}", sae=f"x{cfg.base_width}-k{k}") for k in cfg.ks]
    for pooling in ("mean", "max"):
        out += [replace(mona, axis=f"k at inference, {pooling} pooling", label=f"k {k}", pooling=pooling, k=k)
                for k in cfg.inference_ks]
    out += [replace(mona, axis="pooling (k 16)", label=p, pooling=p) for p in ("mean", "max", "sum")]
    for name, b in (("mona", mona), ("paper", paper)):
        out += [replace(b, axis=f"latent weighting, {name}", label=w or "none", weighting=w)
                for w in (None, *cfg.weightings)]
        out += [replace(b, axis=f"length: row normalisation, {name}", label="l1", normalise="l1")]
        out += [replace(b, axis=f"turn-aware pooling, {name}", label=f"answer weight {w}", answer_weight=w)
                for w in (0.5, 0.25, 0.0)]
        out += [replace(b, axis=f"length: latents kept per row, {name}", label=f"{n}", row_top=n)
                for n in (32, 64, 128)]
        out += [replace(b, axis=f"similarity, {name}", label="cosine", similarity="cosine")]
        out += [replace(b, axis=f"centring, {name}", label="centred, cosine", centre=True, similarity="cosine")]
        out += [replace(b, axis=f"prototype, {name}", label=p, prototype=p) for p in ("max", "per-subtask")]
        out += [replace(b, axis=f"rendering, {name}", label=r, render=r) for r in cfg.renders]
        out += [replace(b, axis=f"rank fusion, {name}", label=f"+ {m}", fuse=m) for m in ("bm25", "dense")]
    capped = replace(mona, axis="combinations", label=f"mona, {cfg.row_latents} latents per row",
                     row_top=cfg.row_latents)
    out += [capped]
    out += [replace(capped, axis=f"layer, mona with {cfg.row_latents} latents per row (SAE trained per layer)",
                    label=f"layer {lyr}", layer=lyr, sae=trained) for lyr in cfg.sae_layers]
    out += [replace(capped, label=f"{capped.label}, answer weight {w}", answer_weight=w) for w in (0.5, 0.25, 0.0)]
    out += [replace(capped, label=f"{capped.label}, {p} prototype", prototype=p) for p in ("max", "per-subtask")]
    out += [replace(capped, label=f"{capped.label}, cosine", similarity="cosine")]
    out += [replace(capped, axis="combinations, latent weighting", label=f"{capped.label}, {w or 'no'} weighting",
                    weighting=w) for w in (None, "density", "drop-common")]
    out += [replace(capped, label=f"{capped.label} + dense (rank fusion)", fuse="dense")]
    out += [replace(capped, label=f"{capped.label}, {r}", render=r) for r in cfg.renders if r != "chat"]
    # round 2, around the strongest single changes on half A: one prototype per target row (max over them)
    for name, b in (("paper", paper), ("mona", mona), ("mean, k 8", replace(paper, k=8))):
        per_row = replace(b, axis="combinations, per-row prototypes", label=f"{name}, max prototype",
                          prototype="max")
        out += [per_row]
        out += [replace(per_row, label=f"{per_row.label}, {n} latents per row", row_top=n) for n in (96, 128)]
        out += [replace(per_row, label=f"{per_row.label}, cosine", similarity="cosine"),
                replace(per_row, label=f"{per_row.label}, centred, cosine", similarity="cosine", centre=True),
                replace(per_row, label=f"{per_row.label}, 128 latents per row, cosine", similarity="cosine",
                        row_top=128)]
    out += [replace(paper, axis="centring (hidden states)", label="hidden, cosine", sae=None, similarity="cosine"),
            replace(paper, axis="centring (hidden states)", label="hidden centred, cosine", sae=None,
                    similarity="cosine", centre=True)]
    return out


def lm_key(model: str | None, lm: TruncatedLM) -> list[str]:
    """The model's part of the sweep's activation cache keys: its fingerprint, and its dtype unless fp32 (fp32
    activations were cached before the dtype was chosen by the machine, under the fingerprint alone)."""
    dtype = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
    return [model_fingerprint(model)] + ([] if dtype == "float32" else [dtype])


class SuiteActivations:
    """Per-token activations of the suite's rows (pool first, then each target set) per rendering and layer."""

    def __init__(self, suite: Suite, cfg: SweepConfig, lm: TruncatedLM, tokenizer, model: str | None,
                 log: Callable[[str], None]) -> None:
        self.samples = _samples(suite.pool) + [s for t in suite.targets for s in _samples(t.rows)]
        self.suite, self.cfg, self.lm, self.tokenizer, self.model, self.log = suite, cfg, lm, tokenizer, model, log
        self._dirs: dict[str, tuple[Path, int]] = {}
        self._loaded: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._turns: dict[str, np.ndarray] = {}

    def turns(self, render_mode: str) -> np.ndarray:
        """The turn (content span) of every stored token, in the order of `get`'s tokens."""
        if render_mode not in self._turns:
            items = [render(s, self.tokenizer, render_mode) for s in self.samples]
            self._turns[render_mode] = np.concatenate(token_turns(self.lm, items))
        return self._turns[render_mode]

    def get(self, render_mode: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(float16 tokens [N, d], offsets [rows + 1]) in suite order."""
        if render_mode not in self._dirs:
            self.log(f"suite activations ({render_mode}): {len(self.samples)} rows, layers {self.lm.layers}")
            items = [render(s, self.tokenizer, render_mode) for s in self.samples]
            key = ["bench-suite", *lm_key(self.model, self.lm), render_mode, self.suite.config]
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

    def mix(self, layer: int) -> np.ndarray:
        """The text mix's activations at a layer (collected on first use, cached)."""
        if self._acts is None:
            items, texts_id = text_items(DEFAULT_MIX, self.cfg.sae_samples, self.tokenizer, self.cfg.seed)
            self._acts = collect_cached(self.lm, items, [*lm_key(self.model, self.lm), texts_id], log=self.log)
            self._texts_id, self._n_items = texts_id, len(items)
        return load_activations(self._acts[0], layer, self._acts[1])

    def path(self, layer: int, point: str) -> Path:
        c = self.cfg
        key = lm_key(self.model, self.lm)
        # the embedded model in fp32 keeps the name its SAEs were first cached under; others name their model
        tail = "" if self.model is None and len(key) == 1 else f"-{config_key({'lm': key})[:12]}"
        return (cache_root() / "sweep-saes"
                / f"{DEFAULT_MIX}-n{c.sae_samples}-e{c.sae_epochs}-L{layer}-{point}{tail}")

    def get(self, layer: int, point: str) -> Path:
        """The SAE for a layer and a "x<width>-k<k>" point, trained now if not cached."""
        out = self.path(layer, point)
        if not (out / "cfg.json").exists():
            width, k = (int(v[1:]) for v in point.split("-"))
            acts = self.mix(layer)
            self.log(f"training SAE layer {layer} {width}x k {k}")
            train_and_save(acts, out, config=SaeTrainConfig(expansion_factor=width, k=k,
                                                            epochs=self.cfg.sae_epochs, seed=self.cfg.seed),
                           meta={"model": self.model or "smollm2-135m-instruct", "layer": layer,
                                 "texts": self._texts_id, "command": "mona bench relevance --sweep"},
                           n_samples=self._n_items, max_length=self.lm.max_length, log=self.log)
        self.meta[f"L{layer}-{point}"] = sae_metadata(out)
        return out


def token_turns(lm: TruncatedLM, items: Sequence) -> list[np.ndarray]:
    """For each rendered item, the content-span index (0: the first turn, the instruction; 1 and up: the answer
    turns) of each token `lm` pools, in token order, tokenized exactly as `lm.tokenize` does."""
    enc = lm.tokenizer([it.text for it in items], add_special_tokens=False, return_offsets_mapping=True,
                       truncation=False)
    out = []
    for item, tok, ids, offsets in zip(items, lm.tokenize(items), enc["input_ids"], enc["offset_mapping"],
                                       strict=True):
        offsets = list(offsets)
        if not ids or ids[0] != lm.first_token:  # as tokenize: the fixed first token is prepended
            offsets = [(0, 0), *offsets]
        offsets = offsets[:len(tok.ids)]
        turns = [next(i for i, (start, end) in enumerate(item.spans) if a < end and b > start)
                 for (a, b), pooled in zip(offsets, tok.pool, strict=True) if pooled]
        out.append(np.asarray(turns, dtype=np.int64))
    return out


def encode_all(sae, acts: np.ndarray, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token's codes at the SAE's own k: (values [N, k], indices [N, k]), sorted by value (largest first),
    so any smaller k is the leading columns."""
    values, indices = [], []
    for start in range(0, len(acts), chunk):
        v, i = encode(sae, torch.from_numpy(acts[start:start + chunk].astype(np.float32)))
        v, order = v.float().sort(dim=1, descending=True)
        values.append(v)
        indices.append(i.gather(1, order))
    return torch.cat(values), torch.cat(indices)


def sae_vectors(sae, acts: np.ndarray, offsets: np.ndarray, pooling: str, k: int | None,
                token_mask: np.ndarray | None = None,
                codes: tuple[torch.Tensor, torch.Tensor] | None = None) -> sp.csr_matrix:
    """Pooled SAE codes per row from per-token activations (only the tokens of `token_mask`, if given); `codes`:
    encode_all's output for these activations, to skip encoding."""
    values_t, indices_t = codes if codes is not None else encode_all(sae, acts)
    if k is not None and k < values_t.shape[1]:
        values_t, indices_t = values_t[:, :k], indices_t[:, :k]
    rows = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    if token_mask is not None:
        keep = torch.from_numpy(token_mask)
        rows, values_t, indices_t = rows[keep], values_t[keep], indices_t[keep]
    return pool_sparse_codes(rows, values_t, indices_t, len(offsets) - 1, int(sae.num_latents), pooling)


def turn_aware(instruction: sp.csr_matrix, answer: sp.csr_matrix, answer_weight: float) -> sp.csr_matrix:
    """Instruction and answer tokens pooled apart, combined as (1 - w) * instruction + w * answer for rows that
    have both; a row with one part keeps it whole. The answer's share of a row is then fixed, however long."""
    has_i = np.diff(instruction.indptr) > 0
    has_a = np.diff(answer.indptr) > 0
    both = has_i & has_a
    ci = np.where(both, 1.0 - answer_weight, 1.0)
    ca = np.where(both, answer_weight, 1.0)
    return sp.csr_matrix(sp.diags(ci) @ instruction + sp.diags(ca) @ answer)


def hidden_vectors(acts: np.ndarray, offsets: np.ndarray, pooling: str) -> np.ndarray:
    """Pooled raw hidden states per row."""
    rows = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    return pool_dense(rows, torch.from_numpy(acts.astype(np.float32)), len(offsets) - 1, pooling)


def latent_weights(pool: sp.csr_matrix, targets: sp.csr_matrix, how: str) -> np.ndarray:
    """Per-latent weights from the pool's statistics. idf: log((1 + N) / (1 + df)) + 1, df = pool rows the latent
    fires on; drop-common: 0 for latents firing on over half the pool rows, else 1; specificity: the latent's
    share of the target prototype's mass over its share of the pool's mean mass, capped at 1 from below by 0
    and smoothed (as DSIR's importance weights, on SAE latents instead of n-grams)."""
    n = pool.shape[0]
    df = np.bincount(sp.csr_matrix(pool).indices, minlength=pool.shape[1]).astype(np.float64)
    if how == "idf":
        return np.log((1 + n) / (1 + df)) + 1
    if how == "drop-common":
        return (df <= n / 2).astype(np.float64)
    if how == "specificity":
        t = np.asarray(targets.mean(axis=0)).ravel()
        q = np.asarray(pool.mean(axis=0)).ravel()
        t, q = t / max(t.sum(), 1e-12), q / max(q.sum(), 1e-12)
        return np.log1p(t / (q + 1.0 / pool.shape[1]))
    raise ValueError(f"unknown weighting {how!r}")


def density_weights(sae, acts: np.ndarray) -> np.ndarray:
    """log(1 / f) per latent, f = the fraction of the text mix's tokens on which the latent is among a token's
    codes (its firing density, smoothed by one token): a property of the SAE, not of the pool, so a pool can
    still be scored row by row."""
    values, indices = encode_all(sae, acts)
    counts = np.bincount(indices[values > 0].numpy(), minlength=int(sae.num_latents))
    return np.log((len(acts) + 1) / (counts + 1))


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
              log: Callable[[str], None] = print, dtype: str = LMConfig().dtype
              ) -> tuple[list[tuple[Variant, MethodRun]], dict[str, dict], DtypeChoice]:
    """Score every variant on the suite (or those of `cfg.axes`); returns (variant, run) pairs, the trained
    SAEs' metadata and the dtype the model ran in (`dtype` resolved for the CPU, as `mona select`'s)."""
    choice = resolve_dtype(dtype, "cpu")
    model_obj, tokenizer = load_lm(model, choice.dtype)
    layers = sorted(set(cfg.layers) | {cfg.base_layer})
    lm = TruncatedLM(model_obj, tokenizer, layers, max_length=cfg.max_length)
    acts = SuiteActivations(suite, cfg, lm, tokenizer, model, log)
    saes = SweepSaes(cfg, lm, tokenizer, model, log)
    n_pool = len(suite.pool)
    ids = [s.id for s in _samples(suite.pool)]
    words = row_words(_samples(suite.pool))
    starts = np.cumsum([n_pool] + [len(t.rows) for t in suite.targets])
    target_samples = [_samples(t.rows) for t in suite.targets]
    fused: dict[str, list[np.ndarray]] = {}
    vectors: dict[tuple, Matrix] = {}
    densities: dict[tuple, np.ndarray] = {}
    encoded: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    results = []
    for v in variants(cfg):
        if cfg.axes and v.axis not in cfg.axes:
            continue
        key = (v.render, v.layer, v.sae, v.pooling, v.k, v.answer_weight)
        if key not in vectors:
            x, offsets = acts.get(v.render, v.layer)
            if v.sae is None:
                vectors[key] = hidden_vectors(x, offsets, v.pooling)
            else:
                path = resolve_sae_path(None) if v.sae == "shipped" else saes.get(v.layer, v.sae)
                sae = load_sae(path)
                ckey = (v.render, v.layer, v.sae)
                if ckey not in encoded:
                    encoded.clear()  # ~100 MB per (rendering, layer, SAE): keep one
                    encoded[ckey] = encode_all(sae, x)
                codes = encoded[ckey]
                if v.answer_weight is None:
                    vectors[key] = sae_vectors(sae, x, offsets, v.pooling, v.k, codes=codes)
                else:
                    turns = acts.turns(v.render)
                    if len(turns) != len(x):
                        raise RuntimeError("token turns do not line up with the stored activations")
                    parts = [sae_vectors(sae, x, offsets, v.pooling, v.k, token_mask=m, codes=codes)
                             for m in (turns == 0, turns > 0)]
                    vectors[key] = turn_aware(*parts, v.answer_weight)
        matrix = vectors[key]
        if v.row_top is not None and sp.issparse(matrix):
            matrix = keep_row_top(matrix, v.row_top)
        if v.normalise == "l1":
            sums = np.asarray(abs(matrix).sum(axis=1)).ravel()
            scale = 1.0 / np.maximum(sums, 1e-12)
            matrix = sp.diags(scale) @ matrix if sp.issparse(matrix) else matrix * scale[:, None]
            matrix = sp.csr_matrix(matrix) if sp.issparse(matrix) else matrix
        if v.centre:
            dense = matrix.toarray() if sp.issparse(matrix) else matrix
            matrix = dense - dense[:n_pool].mean(axis=0)
        options = MethodOptions(prototype=v.prototype, similarity=v.similarity, group_field="subtask")
        run = MethodRun(f"{v.axis}: {v.label}")
        for ti, target in enumerate(suite.targets):
            pool_m, target_m = matrix[:n_pool], matrix[starts[ti]:starts[ti + 1]]
            if v.weighting == "density":
                dkey = (v.layer, v.sae)
                if dkey not in densities:  # the SAE's own k, as the shipped labels' frequencies
                    path = resolve_sae_path(None) if v.sae == "shipped" else saes.get(v.layer, str(v.sae))
                    densities[dkey] = density_weights(load_sae(path), saes.mix(v.layer))
                w = densities[dkey]
                pool_m, target_m = sp.csr_matrix(pool_m @ sp.diags(w)), sp.csr_matrix(target_m @ sp.diags(w))
            elif v.weighting is not None:
                w = latent_weights(pool_m, target_m, v.weighting)
                pool_m, target_m = sp.csr_matrix(pool_m @ sp.diags(w)), sp.csr_matrix(target_m @ sp.diags(w))
            scores, groups = prototype_scores(lambda p, t, o: score(p, prototype(t), o.similarity),
                                              pool_m, target_m, target_samples[ti], options)
            if v.fuse:
                if v.fuse not in fused:
                    pool = _samples(suite.pool)
                    fused[v.fuse] = [compute_scores(pool, ts, MethodOptions(method=v.fuse), cache_dir).scores
                                     for ts in target_samples]
                scores = rrf(scores, fused[v.fuse][ti])
            generic = (pool_m, prototype(target_m)) if sp.issparse(pool_m) and not v.centre else None
            run.per_target[target.name] = evaluate(ids, scores, groups, target.relevant, k, words, generic)
        log(f"{run.name:<60} P@{k} {run.mean('precision'):.3f}")
        results.append((v, run))
    return results, saes.meta, choice


def _mean_of(run: MethodRun, metric: str) -> float:
    values = [m[metric] for m in run.per_target.values() if metric in m]
    return float(np.mean(values)) if values else float("nan")


def write_sweep_report(results: Sequence[tuple[Variant, MethodRun]], sae_meta: dict[str, dict], suite: Suite,
                       k: int, cfg: SweepConfig, command: str, out_dir: Path, name: str,
                       dtype: DtypeChoice | None = None) -> tuple[Path, Path]:
    """`<name>.json` and `<name>.md`: one table per axis (mean P@k overall, per half and per target kind;
    nDCG@k; the picks' length against the relevant rows'; the share of shared mass on latents firing on most
    pool rows), and the dtype the model ran in and why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    heads, cols = summary_columns(suite)
    data = {"command": command, "machine": machine(), "dtype": str(dtype) if dtype else None, "k": k,
            "suite": suite.config, "sweep": asdict(cfg),
            "saes": {n: {f: m.get(f) for f in ("fvu", "l0", "dead_fraction", "train_tokens", "num_latents")}
                     for n, m in sae_meta.items()},
            "variants": [{**asdict(v), "per_target": r.per_target,
                          "mean": {m: r.mean(m) for m in ("precision", "recall", "ndcg")},
                          "mean_by_half": {h: r.mean("precision", targets=suite.targets, half=h)
                                           for h in halves(suite)},
                          "pick_length_ratio": length_ratio(r, suite.targets),
                          "generic_share": _mean_of(r, "generic_share")} for v, r in results]}
    json_path = out_dir / f"{name}.json"
    write_text(json_path, json.dumps(data, indent=1) + "\n")
    lines = [f"# Relevance sweep: {name}", "", f"Command: `{command}`", "", f"Machine: {machine()}", "",
             *([f"Selection model dtype: {dtype}.", ""] if dtype else []),
             f"Suite: {suite.config.get('suite', 'easy')}; pool: {len(suite.pool)} BIG-bench rows over "
             f"{len(suite.config.get('groups', []))} tasks (seed {suite.config.get('seed')}); {len(suite.targets)} "
             f"target sets; budget k = {k}. Each axis changes one thing from a base point. Sweep SAEs: trained "
             f"alike on {cfg.sae_samples} rows of the BIG-bench text mix for {cfg.sae_epochs} epochs. "
             "'length' is the mean over targets of the picks' mean length in words over the relevant rows'; "
             "'generic' the share of the picks' shared mass min(z, p) on latents that fire on over half the "
             "pool rows.", ""]
    axes: dict[str, list[tuple[Variant, MethodRun]]] = {}
    for v, r in results:
        axes.setdefault(v.axis, []).append((v, r))
    for axis, rows in axes.items():
        lines += [f"## {axis}", "", "| variant | " + " | ".join(heads) + " | nDCG@k | length | generic | SAE FVU |",
                  "|---|" + "---|" * (len(heads) + 4)]
        for v, r in rows:
            meta = sae_meta.get(f"L{v.layer}-{v.sae}", {}) if v.sae not in (None, "shipped") else {}
            fvu = f"{meta['fvu']:.3f}" if meta.get("fvu") is not None else ""
            generic = _mean_of(r, "generic_share")
            lines.append(f"| {v.label} | " + " | ".join(f"{r.mean('precision', kinds, suite.targets, half):.3f}"
                                                       for half, kinds in cols)
                         + f" | {r.mean('ndcg'):.3f} | {length_ratio(r, suite.targets):.2f} | "
                         + (f"{generic:.2f}" if generic == generic else "") + f" | {fvu} |")
        lines.append("")
    lines += ["## Precision@k per target", "", "| variant | " + " | ".join(t.name for t in suite.targets) + " |",
              "|---|" + "---|" * len(suite.targets)]
    for v, r in results:
        lines.append(f"| {v.axis}: {v.label} | " +
                     " | ".join(f"{r.per_target[t.name]['precision']:.2f}" for t in suite.targets) + " |")
    md_path = out_dir / f"{name}.md"
    write_text(md_path, "\n".join(lines) + "\n")
    return json_path, md_path
