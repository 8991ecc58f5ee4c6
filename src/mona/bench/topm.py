"""`mona bench top-m`: how compact storage (each pool vector's m largest latents plus its left-out mass, see
features.pooling.keep_top_m) changes MoNA's selections on the relevance dev suite, to choose the default m.

For each m and target set: overlap of the top-k with the full vectors' top-k, precision@k, the largest gap
between a score and its upper bound, and whether the selection is certified (every selected row's score is
above every unselected row's upper bound, so the full vectors would select the same set)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mona.atomic import write_text
from mona.bench.options import TopMConfig
from mona.bench.relevance import _samples, evaluate, machine
from mona.bench.suite import Suite, build_suite
from mona.features.cached import featurize_cached
from mona.features.lm import LMConfig, LMRunner
from mona.features.pooling import keep_top_m
from mona.scoring.similarity import generalized_jaccard, jaccard_upper_bound, prototype
from mona.selection.budget import rank
from mona.selection.registry import MethodOptions, get_method


@dataclass
class TopMRow:
    """One m over the whole suite."""

    m: int | None  # None: full vectors
    mean_stored: float  # stored entries per pool row (the residual column included)
    mass_kept: float  # mean share of each row's L1 mass kept
    overlap: float  # mean |top-k ∩ full top-k| / k
    unchanged: int  # target sets whose top-k set equals the full vectors'
    certified: int  # target sets whose top-k is provably the full vectors' (score bounds do not cross)
    max_gap: float  # largest upper bound - score over pool rows and target sets
    precision: float  # mean precision@k


def measure_top_m(suite: Suite, k: int, ms: Sequence[int], cache_dir: Path | None, *, sae: str | None = None,
                  lm: LMConfig | None = None, log: Callable[[str], None] = print) -> list[TopMRow]:
    """Score the suite with full pooled vectors and with each m (truncation applied to the cached full vectors,
    which is exactly what `mona select --top-m` stores)."""
    # mona's default representation, stored whole (the truncation is applied here)
    featurizer = get_method("mona").build(MethodOptions(sae=sae, top_m=0), LMRunner(lm or LMConfig()))
    pool = _samples(suite.pool)
    ids = [s.id for s in pool]
    full = sp.csr_matrix(featurize_cached(featurizer, pool, cache_dir, role="pool"))
    protos = [prototype(featurize_cached(featurizer, _samples(t.rows), cache_dir, role="target"))
              for t in suite.targets]
    full_top = [set(rank(ids, generalized_jaccard(full, p))[:k].tolist()) for p in protos]
    full_l1 = np.asarray(full.sum(axis=1)).ravel()
    rows = []
    for m in [None, *ms]:
        stored = keep_top_m(full, m)
        proto_ext = [np.append(p, 0.0) for p in protos]  # the prototype is 0 on the left-out-mass column
        kept = np.asarray(stored[:, :-1].sum(axis=1)).ravel()
        overlap, unchanged, certified, gaps, precision = [], 0, 0, [], []
        for target, p, top in zip(suite.targets, proto_ext, full_top, strict=True):
            scores = generalized_jaccard(stored, p)
            upper = jaccard_upper_bound(stored, p)
            order = rank(ids, scores)
            chosen = set(order[:k].tolist())
            overlap.append(len(chosen & top) / k)
            unchanged += chosen == top
            rest = order[k:]
            certified += bool(len(rest) == 0 or scores[order[:k]].min() > upper[rest].max())
            gaps.append(float((upper - scores).max()))
            precision.append(evaluate(ids, scores, None, target.relevant, k)["precision"])
        row = TopMRow(m, float(stored.getnnz(axis=1).mean()),
                      float(np.mean(np.divide(kept, full_l1, out=np.ones_like(kept), where=full_l1 > 0))),
                      float(np.mean(overlap)), unchanged, certified, max(gaps), float(np.mean(precision)))
        log(f"m={m or 'full'}: stored {row.mean_stored:.0f}/row, mass kept {row.mass_kept:.3f}, overlap "
            f"{row.overlap:.4f}, unchanged {unchanged}/{len(protos)}, certified {certified}, max gap "
            f"{row.max_gap:.2e}, P@{k} {row.precision:.3f}")
        rows.append(row)
    return rows


def write_top_m_report(rows: Sequence[TopMRow], suite: Suite, k: int, command: str, out_dir: Path) -> Path:
    """docs/benchmarks/top-m.{json,md}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(suite.targets)
    write_text(out_dir / "top-m.json", json.dumps({"command": command, "machine": machine(), "k": k,
                                                    "targets": n, "rows": [r.__dict__ for r in rows]}, indent=1))
    lines = ["# Compact storage: top-m latents per pooled vector", "", f"Command: `{command}`", "",
             f"Machine: {machine()}", "",
             f"Pool: {len(suite.pool)} BIG-bench rows, {n} target sets, budget k = {k}, the shipped SAE. Each pool "
             "vector keeps its m largest latents plus one entry with the left-out L1 mass, so Jaccard sees the "
             "exact |z|_1; a score can only be under-estimated, by at most the gap to its upper bound. "
             "*Certified*: every selected row's score is above every unselected row's upper bound, so the full "
             "vectors select the same set.", "",
             "| m | stored entries/row | L1 mass kept | top-k overlap | sets unchanged | certified | max score gap "
             "| P@k |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.m or 'full'} | {r.mean_stored:.0f} | {r.mass_kept:.3f} | {r.overlap:.4f} | "
                     f"{r.unchanged}/{n} | {r.certified}/{n} | {r.max_gap:.1e} | {r.precision:.3f} |")
    path = out_dir / "top-m.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def run_top_m(config: TopMConfig, command: str, cache_dir: Path, out_dir: Path,
              log: Callable[[str], None] = print) -> Path:
    """`mona bench top-m`: measure every m of the config on the easy suite and write top-m.{json,md} to
    `out_dir`; returns the Markdown report's path."""
    values = config.m_values
    suite = build_suite(pool_size=config.pool_size, per_task=config.per_task, seed=config.seed)
    rows = measure_top_m(suite, config.k, values, cache_dir, log=log)
    return write_top_m_report(rows, suite, config.k, command, out_dir)

