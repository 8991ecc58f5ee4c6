"""`mona select` as a library call: read, featurize (through the cache), score, rank, write."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from mona.data.formats import Sample
from mona.data.readers import Rejected, read_samples
from mona.data.render import RENDER_MODES
from mona.errors import ConfigError, InputError
from mona.features.cached import ComputeFn, FeaturizeStats, featurize_cached
from mona.features.lm import LMRunner
from mona.features.pooling import POOLINGS
from mona.paths import cache_root
from mona.scoring.similarity import SIMILARITIES
from mona.selection.budget import rank, resolve_budget, round_robin
from mona.selection.output import row_line, write_quarantine, write_scores, write_selection
from mona.selection.registry import PROTOTYPES, MatrixScorer, MethodOptions, get_method


class Progress(Protocol):
    """Receives progress of long steps (the CLI draws a bar)."""

    def start(self, label: str, total: int) -> None: ...
    def update(self, done: int, tokens: int) -> None: ...
    def finish(self) -> None: ...


@dataclass
class SelectConfig:
    """Inputs of one selection."""

    pool: Path
    target: Path
    out: Path | None = None
    scores: Path | None = None
    ratio: float | None = None
    budget: int | None = None
    options: MethodOptions = field(default_factory=MethodOptions)
    cache_dir: Path | None = None  # None: the user cache; use `no_cache` to disable
    no_cache: bool = False
    text_field: str | None = None
    on_error: str = "fail"  # fail: stop at the first bad row; skip: quarantine bad rows and go on
    quarantine: Path | None = None  # where skipped rows go (default: OUT + ".rejected.jsonl")
    too_long: str = "truncate"  # rows over max_length tokens: truncate (counted) or refuse (a bad row)
    backend: str = "local"  # local | ray: where cache misses are featurized
    num_workers: int = 2  # ray: actors, one model each
    num_gpus: float = 0.0  # ray: GPUs per actor


ON_ERROR = ("fail", "skip")
TOO_LONG = ("truncate", "refuse")
BACKENDS = ("local", "ray")


def make_compute(config: SelectConfig) -> ComputeFn | None:
    """The featurization backend's compute function (None: the featurizer's own, in this process)."""
    if config.backend == "local":
        return None
    if config.backend == "ray":
        from mona.selection.ray_backend import ray_compute

        return ray_compute(config.options, num_workers=config.num_workers, num_gpus=config.num_gpus)
    raise ConfigError(f"unknown --backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")


def refuse_too_long(samples: list[Sample], options: MethodOptions, path: Path,
                    rejects: list[Rejected] | None) -> list[Sample]:
    """Rows longer than the selection model's max_length are errors (or, with `rejects`, left out)."""
    runner = LMRunner(options.lm)
    limit = options.lm.max_length
    kept = []
    for sample in samples:
        n = runner.token_count(sample)
        if n <= limit:
            kept.append(sample)
            continue
        error = InputError(f"row has {n} tokens, over --max-length {limit} (--too-long refuse)", path=str(path),
                           line=sample.record.line)
        if rejects is None:
            raise error
        rejects.append(Rejected(str(path), sample.record.line, error.reason, row_line(sample)))
    return kept


@dataclass
class SelectResult:
    """What a selection produced and cost."""

    pool: list[Sample]
    scores: np.ndarray
    order: np.ndarray
    n_selected: int
    pool_stats: FeaturizeStats
    target_stats: FeaturizeStats
    seconds: float
    truncated: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    quarantine: Path | None = None

    @property
    def selected(self) -> list[Sample]:
        return [self.pool[int(i)] for i in self.order[: self.n_selected]]


def validate_options(options: MethodOptions) -> None:
    """Reject option values no method accepts, before any work is done."""
    if options.pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {options.pooling!r}; choose one of {', '.join(POOLINGS)}")
    if options.lm.render not in RENDER_MODES:
        raise ConfigError(f"unknown rendering {options.lm.render!r}; choose one of {', '.join(RENDER_MODES)}")
    if options.similarity is not None and options.similarity not in SIMILARITIES:
        raise ConfigError(f"unknown similarity {options.similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    if options.k is not None and options.k < 1:
        raise ConfigError(f"--k must be at least 1, got {options.k}")
    if options.prototype not in PROTOTYPES:
        raise ConfigError(f"unknown prototype mode {options.prototype!r}; choose one of {', '.join(PROTOTYPES)}")
    if options.lm.batch_tokens < 1:
        raise ConfigError(f"--batch-tokens must be at least 1, got {options.lm.batch_tokens}")
    if options.lm.max_length < 2:
        raise ConfigError(f"--max-length must be at least 2, got {options.lm.max_length}")


class ScoreSet(NamedTuple):
    """Scores of the pool under one method. With one prototype per target subtask, `group_scores` holds the
    score against each ([pool, groups]) and `scores` their maximum."""

    scores: np.ndarray
    pool_stats: FeaturizeStats
    target_stats: FeaturizeStats
    truncated: int
    group_scores: np.ndarray | None = None


def target_groups(targets: Sequence[Sample], field: str) -> dict[str, list[int]]:
    """Target positions by the value of `field` (rows without it form one group named '')."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(targets):
        groups.setdefault(str(sample.record.row.get(field, "") or ""), []).append(i)
    return groups


def prototype_scores(scorer: MatrixScorer, pool_m, target_m, targets: Sequence[Sample], options: MethodOptions
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores under `options.prototype`: single (the paper: one prototype), max (best single target row) or
    per-subtask (one prototype per subtask; also returns the per-subtask score columns for round-robin)."""
    if options.prototype == "single":
        return np.asarray(scorer(pool_m, target_m, options), dtype=np.float64), None
    if options.prototype == "max":
        groups = {str(i): [i] for i in range(len(targets))}
    else:
        groups = target_groups(targets, options.group_field)
    matrix = np.column_stack([np.asarray(scorer(pool_m, target_m[idx], options), dtype=np.float64)
                              for idx in groups.values()])
    return matrix.max(axis=1), (matrix if options.prototype == "per-subtask" else None)


def compute_scores(pool: list[Sample], targets: list[Sample], options: MethodOptions,
                   cache_dir: Path | None, progress: Progress | None = None, compute: ComputeFn | None = None
                   ) -> ScoreSet:
    """Scores of every pool sample against the targets under one method (`compute`: see make_compute)."""
    spec = get_method(options.method)
    validate_options(options)
    pool_stats, target_stats = FeaturizeStats(), FeaturizeStats()
    if spec.text_scorer is not None:
        if options.prototype != "single":
            raise ConfigError(f"--prototype {options.prototype} needs a feature-based method, not {options.method}")
        return ScoreSet(spec.text_scorer(pool, targets, options, cache_dir), pool_stats, target_stats, 0)
    assert spec.build is not None
    if options.similarity is None:
        options = replace(options, similarity=spec.similarity)
    runner = LMRunner(options.lm)
    featurizer = spec.build(options, runner)
    if getattr(featurizer, "runner", None) is runner:
        runner.resolved_layer()  # a bad model or layer fails here, before any progress bar

    def run(samples: list[Sample], label: str, stats: FeaturizeStats):
        if progress:
            progress.start(label, len(samples))
        try:
            return featurize_cached(featurizer, samples, cache_dir,
                                    progress.update if progress else None, stats, compute)
        finally:
            if progress:
                progress.finish()

    featurizer.prepare(pool, targets, cache_dir)
    featurizer.role = "target"
    target_matrix = run(targets, "target", target_stats)
    featurizer.role = "pool"
    pool_matrix = run(pool, "pool", pool_stats)
    scores, groups = prototype_scores(spec.matrix_scorer, pool_matrix, target_matrix, targets, options)
    return ScoreSet(scores, pool_stats, target_stats, runner.truncated, groups)


def select(config: SelectConfig, progress: Progress | None = None) -> SelectResult:
    """Run one selection end to end; OUT and SCORES are written only if everything succeeded."""
    t0 = time.perf_counter()
    if config.on_error not in ON_ERROR:
        raise ConfigError(f"unknown --on-error {config.on_error!r}; choose one of {', '.join(ON_ERROR)}")
    if config.too_long not in TOO_LONG:
        raise ConfigError(f"unknown --too-long {config.too_long!r}; choose one of {', '.join(TOO_LONG)}")
    rejects: list[Rejected] | None = [] if config.on_error == "skip" else None
    pool = read_samples(config.pool, text_field=config.text_field, rejects=rejects)
    targets = read_samples(config.target, text_field=config.text_field, rejects=rejects)
    if config.too_long == "refuse" and get_method(config.options.method).build is not None:
        pool = refuse_too_long(pool, config.options, config.pool, rejects)
        targets = refuse_too_long(targets, config.options, config.target, rejects)
        if not pool or not targets:
            raise InputError("no rows left within --max-length", path=str(config.pool if not pool else config.target))
    n = resolve_budget(len(pool), ratio=config.ratio, budget=config.budget)
    cache_dir = None if config.no_cache else (config.cache_dir or cache_root())
    scores, pool_stats, target_stats, truncated, groups = compute_scores(pool, targets, config.options,
                                                                         cache_dir, progress, make_compute(config))
    ids = [s.id for s in pool]
    order = rank(ids, scores) if groups is None else round_robin(ids, groups)
    if config.out is not None:
        write_selection(config.out, pool, order, n)
    if config.scores is not None:
        write_scores(config.scores, pool, scores, order, n)
    quarantine = None
    if rejects:
        quarantine = config.quarantine or (config.out.with_name(config.out.name + ".rejected.jsonl")
                                           if config.out is not None else None)
        if quarantine is not None:
            write_quarantine(quarantine, rejects)
    return SelectResult(pool, scores, order, n, pool_stats, target_stats, time.perf_counter() - t0, truncated,
                        rejects or [], quarantine)
