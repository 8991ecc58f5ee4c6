"""`mona bench relevance`: every method at the same budget on the labelled BIG-bench pool and the dev
suite; precision@k, recall@k and nDCG@k per target set and on average, and featurization cost per method."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mona.bench.metrics import ndcg_at_k, precision_at_k, recall_at_k
from mona.bench.suite import Suite, TargetSet
from mona.data.formats import Sample, to_sample
from mona.data.readers import Record
from mona.features.cached import FeaturizeStats, prefetch_shared
from mona.selection.budget import rank, round_robin
from mona.selection.pipeline import Progress, compute_scores
from mona.selection.registry import MethodOptions, get_method


@dataclass
class MethodRun:
    """One method's results over the suite."""

    name: str
    per_target: dict[str, dict[str, float]] = field(default_factory=dict)
    featurize_seconds: float = 0.0
    tokens: int = 0
    computed: int = 0
    cache_hits: int = 0

    def mean(self, metric: str, kinds: Sequence[str] | None = None, targets: Sequence[TargetSet] = ()) -> float:
        names = [t.name for t in targets if kinds is None or t.kind in kinds] if targets else list(self.per_target)
        values = [self.per_target[n][metric] for n in names if n in self.per_target]
        return float(np.mean(values)) if values else float("nan")


def _samples(rows: Sequence[dict]) -> list[Sample]:
    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


def evaluate(ids: Sequence[str], scores: np.ndarray, groups: np.ndarray | None, relevant: set[str], k: int
             ) -> dict[str, float]:
    """Rank by score (or round-robin over per-subtask score columns) and measure the top k."""
    order = rank(ids, scores) if groups is None else round_robin(ids, groups)
    ranked = [ids[int(i)] for i in order[:k]]
    return {"precision": precision_at_k(ranked, relevant, k), "recall": recall_at_k(ranked, relevant, k),
            "ndcg": ndcg_at_k(ranked, relevant, k)}


def run_method(label: str, options: MethodOptions, suite: Suite, k: int, cache_dir: Path | None,
               progress: Progress | None = None, log: Callable[[str], None] = print) -> MethodRun:
    """Score every target set with one method configuration."""
    pool = _samples(suite.pool)
    ids = [s.id for s in pool]
    run = MethodRun(label)
    for target in suite.targets:
        t0 = time.perf_counter()
        scores, pool_stats, target_stats, _, groups = compute_scores(pool, _samples(target.rows), options, cache_dir,
                                                                  progress)
        run.per_target[target.name] = evaluate(ids, scores, groups, target.relevant, k)
        for stats in (pool_stats, target_stats):
            if stats.computed:
                run.featurize_seconds += stats.seconds
                run.tokens += stats.tokens
                run.computed += stats.computed
            run.cache_hits += stats.cache_hits
        log(f"{label:<24} {target.name:<44} P@{k} {run.per_target[target.name]['precision']:.3f} "
            f"({time.perf_counter() - t0:.1f} s)")
    return run


def prefetch_lm_methods(options: Sequence[MethodOptions], suite: Suite, cache_dir: Path,
                        progress: Progress | None = None) -> tuple[list[str], FeaturizeStats]:
    """One shared forward pass filling the caches of every LM method among `options` (same LMConfig) for
    the pool and all target rows. Returns the methods covered and the pass's cost."""
    from mona.features.lm import LMFeaturizer, LMRunner

    lm_options = [o for o in options if get_method(o.method).build is not None]
    if not lm_options:
        return [], FeaturizeStats()
    runner = LMRunner(lm_options[0].lm)
    featurizers = []
    for o in lm_options:
        build = get_method(o.method).build
        assert build is not None
        f = build(o, runner)
        if isinstance(f, LMFeaturizer) and o.lm == lm_options[0].lm:
            featurizers.append(f)
    samples = _samples(suite.pool) + [s for t in suite.targets for s in _samples(t.rows)]
    if progress:
        progress.start("shared LM pass", len(samples))
    try:
        stats = prefetch_shared(featurizers, samples, cache_dir, progress.update if progress else None)
    finally:
        if progress:
            progress.finish()
    return [f.name for f in featurizers], stats


def machine() -> str:
    """One line describing this machine."""
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, " \
           f"Python {platform.python_version()}, torch {torch.__version__}"


def write_report(runs: Sequence[MethodRun], suite: Suite, k: int, command: str, out_dir: Path,
                 name: str = "relevance") -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` (per-target and average tables) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = ["in-pool", "natural-instructions", "lm-eval"]
    data = {"command": command, "machine": machine(), "k": k, "suite": suite.config,
            "targets": [{"name": t.name, "kind": t.kind, "examples": len(t.rows), "relevant": len(t.relevant)}
                        for t in suite.targets],
            "methods": [{"name": r.name, "per_target": r.per_target,
                         "mean": {m: r.mean(m) for m in ("precision", "recall", "ndcg")},
                         "featurize_seconds": round(r.featurize_seconds, 2), "tokens": r.tokens,
                         "tokens_per_second": round(r.tokens / r.featurize_seconds, 1)
                         if r.featurize_seconds and r.tokens else None,
                         "computed": r.computed, "cache_hits": r.cache_hits} for r in runs]}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    lines = [f"# Relevance benchmark: {name}", "", f"Command: `{command}`", "", f"Machine: {machine()}", "",
             f"Pool: {len(suite.pool)} BIG-bench rows over {len(suite.config.get('groups', []))} tasks "
             f"(seed {suite.config.get('seed')}); budget k = {k} for every method.", "",
             "## Averages", "",
             "| method | P@k all | P@k in-pool | P@k NI | P@k lm-eval | R@k all | nDCG@k all | featurize s | tok/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: -r.mean("precision")):
        tps = f"{r.tokens / r.featurize_seconds:.0f}" if r.featurize_seconds and r.tokens else "-"
        fs = f"{r.featurize_seconds:.0f}" if r.computed else "cached"
        by_kind = [r.mean("precision", [kd], suite.targets) for kd in kinds]
        lines.append(f"| {r.name} | {r.mean('precision'):.3f} | " + " | ".join(f"{v:.3f}" for v in by_kind)
                     + f" | {r.mean('recall'):.3f} | {r.mean('ndcg'):.3f} | {fs} | {tps} |")
    lines += ["", "## Precision@k per target", "", "| target | kind | relevant | " +
              " | ".join(r.name for r in runs) + " |", "|---|---|---|" + "---|" * len(runs)]
    for t in suite.targets:
        lines.append(f"| {t.name} | {t.kind} | {len(t.relevant)} | " +
                     " | ".join(f"{r.per_target[t.name]['precision']:.2f}" for r in runs) + " |")
    md_path = out_dir / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
