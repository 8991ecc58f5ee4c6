"""`mona select` as a library call: read, featurize (through the cache), score, rank, write."""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from mona.data.formats import Sample, id_kind
from mona.data.ids import IdColumn, scan_samples
from mona.data.readers import Rejected, iter_samples, read_samples, validate_samples
from mona.data.render import RENDER_MODES
from mona.errors import ConfigError, InputError, Interrupted, MissingFileError
from mona.features.cached import ComputeFn, FeaturizeStats, featurize_cached
from mona.features.lm import LMRunner
from mona.features.pooling import POOLINGS
from mona.outputs import check_output_dir, check_outputs
from mona.paths import cache_root
from mona.scoring.similarity import SIMILARITIES, jaccard_upper_bound, prototype
from mona.selection.budget import check_budget, rank, resolve_budget, round_robin, top_order
from mona.selection.output import OutputSet, row_line, write_quarantine, write_scores, write_selection
from mona.selection.registry import PROTOTYPES, MatrixScorer, MethodOptions, get_method, with_defaults

# Pool rows per streamed chunk: large enough that per-chunk overhead (cache lookups, scoring calls) vanishes,
# small enough that a chunk's rows and vectors stay well under a GB.
STREAM_ROWS = 8192


class Progress(Protocol):
    """Receives progress of long steps (the CLI draws a bar)."""

    def start(self, label: str, total: int | None) -> None: ...  # total None: not known in advance
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
    stream_rows: int = STREAM_ROWS  # pool rows read, featurized, cached and scored together


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
    """What a selection produced and cost: the pool's ids and scores, the ranking, the selected rows."""

    ids: Sequence[str]
    scores: np.ndarray
    order: np.ndarray  # pool positions best first: every row with SCORES or per-subtask groups, else the selected
    n_selected: int
    selected: list[Sample]
    pool_stats: FeaturizeStats
    target_stats: FeaturizeStats
    seconds: float
    truncated: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    quarantine: Path | None = None
    top_m: tuple[float, bool] | None = None  # with --top-m: (largest score gap, selection certified)
    skipped_parts: int = 0  # non-text content parts (images, audio...) left out of pool and target rows


def validate_options(options: MethodOptions) -> None:
    """Reject option values no method accepts, before any work is done."""
    options = with_defaults(options)
    if options.top_m < 0:
        raise ConfigError(f"--top-m must be at least 1 (or 0: store whole vectors), got {options.top_m}")
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
    spec = get_method(options.method)
    if spec.text_scorer is not None and options.prototype != "single":
        raise ConfigError(f"--prototype {options.prototype} needs a feature-based method, not {options.method}")
    # the knobs of single methods, checked here too so that a bad one fails before the pool is read
    if options.method == "dsir":
        from mona.features.dsir import DsirConfig

        DsirConfig.from_extra(options.extra)
    elif options.method == "bm25":
        from mona.features.bm25 import COMBINE

        combine = options.extra.get("bm25_combine") or "mean"
        if combine not in COMBINE:
            raise ConfigError(f"unknown BM25 combination {combine!r}; choose one of {', '.join(COMBINE)}")
    elif options.method == "less":
        from mona.features.less import LessConfig

        LessConfig.from_extra(options.extra)


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
    options = with_defaults(options)
    if options.prototype == "single":
        return np.asarray(scorer(pool_m, target_m, options), dtype=np.float64), None
    if options.prototype == "max":
        groups = {str(i): [i] for i in range(len(targets))}
    else:
        groups = target_groups(targets, options.group_field)
    matrix = np.column_stack([np.asarray(scorer(pool_m, target_m[idx], options), dtype=np.float64)
                              for idx in groups.values()])
    return matrix.max(axis=1), (matrix if options.prototype == "per-subtask" else None)


class PoolScorer:
    """Scores pool rows against the targets under one method. The targets are featurized once, up front. A
    row-wise method (MethodSpec.rowwise) scores any chunk of the pool on its own, so a pool can be streamed;
    the others need the whole pool, given at construction (`pool`) and to one `score` call."""

    def __init__(self, targets: Sequence[Sample], options: MethodOptions, cache_dir: Path | None,
                 progress: Progress | None = None, compute: ComputeFn | None = None,
                 pool: Sequence[Sample] | None = None,
                 stats: tuple[FeaturizeStats, FeaturizeStats] | None = None) -> None:
        self.spec = spec = get_method(options.method)
        validate_options(options)
        options = with_defaults(options)
        self.targets = list(targets)
        self.cache_dir, self.progress, self.compute = cache_dir, progress, compute
        # (pool, target) stats; a caller may pass its own to know what was done if this one is interrupted
        self.pool_stats, self.target_stats = stats or (FeaturizeStats(), FeaturizeStats())
        self.featurizer = None
        self.runner: LMRunner | None = None
        if not spec.rowwise and pool is None:
            raise ValueError(f"{options.method} scores need the whole pool")
        if spec.text_scorer is None:
            assert spec.build is not None
            self.runner = LMRunner(options.lm)
            self.featurizer = spec.build(options, self.runner)
            if getattr(self.featurizer, "runner", None) is self.runner:
                self.runner.resolved_layer()  # a bad model or layer fails here, before any progress bar
            self.featurizer.prepare(pool if pool is not None else [], self.targets, cache_dir)
            self.featurizer.role = "target"
            if progress:
                progress.start("target", len(self.targets))
            try:
                self.target_matrix = featurize_cached(self.featurizer, self.targets, cache_dir,
                                                      progress.update if progress else None, self.target_stats,
                                                      compute)
            finally:
                if progress:
                    progress.finish()
            self.featurizer.role = "pool"
        self.options = options
        # top-m storage: also track each score's upper bound, to report how far truncation could move it
        self.bounded = (getattr(self.featurizer, "top_m", None) is not None and options.prototype == "single"
                        and options.similarity == "jaccard")
        self.proto = prototype(self.target_matrix) if self.bounded else None
        self.upper: list[np.ndarray] = []

    @property
    def truncated(self) -> int:
        """Rows truncated to max_length so far."""
        return self.runner.truncated if self.runner is not None else 0

    def score(self, pool: Sequence[Sample], done_before: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores, per-subtask score columns or None) of these pool rows; `done_before` offsets the progress
        of a chunk within a streamed pool (the caller starts and finishes the bar)."""
        if self.spec.text_scorer is not None:
            return np.asarray(self.spec.text_scorer(pool, self.targets, self.options, self.cache_dir),
                              dtype=np.float64), None
        progress = self.progress
        matrix = featurize_cached(self.featurizer, pool, self.cache_dir,
                                  (lambda d, t: progress.update(done_before + d, t)) if progress else None,
                                  self.pool_stats, self.compute)
        if self.bounded:
            self.upper.append(jaccard_upper_bound(matrix, self.proto))
        return prototype_scores(self.spec.matrix_scorer, matrix, self.target_matrix, self.targets, self.options)

    def truncation_report(self, scores: np.ndarray, order: np.ndarray, n: int) -> tuple[float, bool] | None:
        """With top-m storage: (largest gap between a score and its upper bound, whether the selection is
        certified, i.e. every selected score is above every unselected upper bound, so full vectors would select
        the same rows). None without truncation."""
        if not self.bounded or not self.upper:
            return None
        upper = np.concatenate(self.upper)
        rest = np.ones(len(upper), dtype=bool)
        rest[order[:n]] = False
        certified = bool(not rest.any() or scores[order[:n]].min() > upper[rest].max())
        return float((upper - scores).max()), certified


def compute_scores(pool: list[Sample], targets: list[Sample], options: MethodOptions,
                   cache_dir: Path | None, progress: Progress | None = None, compute: ComputeFn | None = None
                   ) -> ScoreSet:
    """Scores of every pool sample (held in memory) against the targets under one method (`compute`: see
    make_compute). The samples are checked as `mona select` checks a file's rows (unique ids, non-blank valid
    text; InputError naming "pool" or "target" and the row's line), and the options as it checks them."""
    validate_samples(pool, "pool")
    validate_samples(targets, "target")
    scorer = PoolScorer(targets, options, cache_dir, progress, compute, pool=pool)
    bar = progress is not None and scorer.featurizer is not None
    if bar:
        progress.start("pool", len(pool))
    try:
        scores, groups = scorer.score(pool)
    finally:
        if bar:
            progress.finish()
    return ScoreSet(scores, scorer.pool_stats, scorer.target_stats, scorer.truncated, groups)


def _chunks(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class PoolScores:
    """Scores of a pool read once: its ids, the line of each row in the file (to find the selected rows
    again) and the scores."""

    ids: Sequence[str]
    lines: np.ndarray
    scores: np.ndarray
    groups: np.ndarray | None
    skipped_parts: int = 0
    id_kinds: np.ndarray | None = None  # JSON type of each id (mona.data.formats.id_kind); None: all strings


def stream_scores(config: SelectConfig, scorer: PoolScorer, n_rows: int, rejects: list[Rejected] | None,
                  progress: Progress | None) -> PoolScores:
    """Read, featurize (through the cache: a killed run resumes from the shards written) and score the pool
    chunk by chunk: memory holds one chunk's rows and vectors, plus an id (compact), a line number and a score
    per row.
    The pool has been validated (`n_rows` usable rows; bad ones already in `rejects`): only rows refused as
    too long are added to `rejects` here."""
    ids = IdColumn()
    lines = array("q")  # 8 bytes a row, not a Python int's 36
    kinds = array("b")  # 1 byte a row: the JSON type of the id, so that SCORES gives it back
    skipped_parts = 0
    parts: list[np.ndarray] = []
    group_parts: list[np.ndarray] = []
    bar = progress is not None and scorer.featurizer is not None
    if bar:
        progress.start("pool", n_rows)
    try:
        # the validation pass checked the ids; rows it rejected (duplicate ids, with --on-error skip) stay out
        skip = {r.line for r in rejects or [] if r.path == str(config.pool)}
        samples = iter_samples(config.pool, text_field=config.text_field,
                               rejects=None if rejects is None else [], check_ids=False)
        if skip:
            samples = (s for s in samples if s.record.line not in skip)
        for chunk in _chunks(samples, config.stream_rows):
            if config.too_long == "refuse" and scorer.featurizer is not None:
                chunk = refuse_too_long(chunk, config.options, config.pool, rejects)
                if not chunk:
                    continue
            scores, groups = scorer.score(chunk, done_before=len(ids))
            ids.extend(s.id for s in chunk)
            lines.extend(s.record.line for s in chunk)
            skipped_parts += sum(s.skipped_parts for s in chunk)
            kinds.extend(id_kind(s.record.row) for s in chunk)
            parts.append(scores)
            if groups is not None:
                group_parts.append(groups)
    finally:
        if bar:
            progress.finish()
    if not ids:
        raise InputError("no rows left within --max-length", path=str(config.pool))
    return PoolScores(ids, np.frombuffer(lines, dtype=np.int64), np.concatenate(parts),
                      np.concatenate(group_parts) if group_parts else None, skipped_parts, _kinds(kinds))


def _kinds(kinds) -> np.ndarray | None:
    out = np.fromiter(kinds, dtype=np.int8) if not isinstance(kinds, array) else np.frombuffer(kinds, dtype=np.int8)
    return out if out.any() else None


def read_selected(config: SelectConfig, pool: PoolScores, positions: np.ndarray) -> list[Sample]:
    """The pool rows at `positions` (in that order), found again by their line in a second pass over the file."""
    wanted = {int(pool.lines[p]): i for i, p in enumerate(positions)}
    found: list[Sample | None] = [None] * len(positions)
    for sample in iter_samples(config.pool, text_field=config.text_field, rejects=[], check_ids=False):
        i = wanted.get(sample.record.line)
        if i is not None:
            found[i] = sample
    missing = [int(pool.lines[p]) for i, p in enumerate(positions) if found[i] is None]
    if missing:
        raise InputError(f"the pool changed while it was being read (row on line {missing[0]} is gone)",
                         path=str(config.pool))
    return [s for s in found if s is not None]


def check_config(config: SelectConfig) -> None:
    """Every option of a selection that can be judged without reading a file (budget, ratio, method and its
    knobs, error modes, backend), checked before any work. The budget against the pool's size waits for the
    pool's row count, but comes before any scoring."""
    if config.on_error not in ON_ERROR:
        raise ConfigError(f"unknown --on-error {config.on_error!r}; choose one of {', '.join(ON_ERROR)}")
    if config.too_long not in TOO_LONG:
        raise ConfigError(f"unknown --too-long {config.too_long!r}; choose one of {', '.join(TOO_LONG)}")
    if config.stream_rows < 1:
        raise ConfigError(f"--stream-rows must be at least 1, got {config.stream_rows}")
    check_budget(ratio=config.ratio, budget=config.budget)
    validate_options(config.options)
    if config.backend not in BACKENDS:
        raise ConfigError(f"unknown --backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    if config.backend == "ray":
        if config.num_workers < 1:
            raise ConfigError(f"--num-workers must be at least 1, got {config.num_workers}")
        if config.num_gpus < 0:
            raise ConfigError(f"--num-gpus must be at least 0, got {config.num_gpus}")


@dataclass
class _Run:
    """What a selection has done so far, for the line printed if it is interrupted or fails to write."""

    cache_dir: Path | None = None
    pool_stats: FeaturizeStats = field(default_factory=FeaturizeStats)
    target_stats: FeaturizeStats = field(default_factory=FeaturizeStats)
    featurized: bool = False  # the method featurizes through the cache (not a text scorer like bm25)


def select(config: SelectConfig, progress: Progress | None = None) -> SelectResult:
    """Run one selection end to end; OUT and SCORES are written only if everything succeeded. Row-wise methods
    stream the pool (memory does not grow with its rows' size); the others read it whole.

    Every option is checked before any file is read. Ctrl-C raises `Interrupted` (a KeyboardInterrupt) whose
    message says what the cache kept and how to resume; a file that cannot be written (an output or the cache)
    is a MissingFileError, and the run leaves none of its outputs behind."""
    check_config(config)
    run = _Run()
    try:
        return _select(config, progress, run)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(run, config.options.method)) from None
    except OSError as exc:  # outside the outputs (written below, with their own message): the cache
        raise os_error(exc, run.cache_dir) from None


def interrupted_message(run: _Run, method: str) -> str:
    """One line for Ctrl-C: nothing was written; what the feature cache holds; how to resume."""
    head = "interrupted (Ctrl-C); no output was written"
    if not run.featurized:
        return f"{head}; {method} keeps no feature cache, so a rerun starts over"
    if run.cache_dir is None:
        return f"{head}; nothing was cached (--no-cache), so a rerun starts over"
    computed = run.pool_stats.computed + run.target_stats.computed
    hits = run.pool_stats.cache_hits + run.target_stats.cache_hits
    if not computed:
        return f"{head}; no row was featurized yet: run the same command again"
    found = f" ({hits:,} more were cached already)" if hits else ""
    return (f"{head}; {computed:,} rows featurized by this run are in the feature cache {run.cache_dir}{found}: "
            "run the same command again to resume from them")


def os_error(exc: OSError, cache_dir: Path | None) -> MissingFileError:
    """A one-line error for a file operation that failed mid-run (a full disk, a read-only cache)."""
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    path = exc.filename
    if cache_dir is not None and path is not None:
        real, cache = Path(path).resolve(), Path(cache_dir).resolve()
        if real == cache or cache in real.parents:
            return MissingFileError(f"cannot write to the feature cache: {reason} (choose another --cache-dir, "
                                    "or --no-cache)", path=str(cache_dir))
    return MissingFileError(reason, path=None if path is None else str(path))


def _select(config: SelectConfig, progress: Progress | None, run: _Run) -> SelectResult:
    t0 = time.perf_counter()
    quarantine_path = config.quarantine or (config.out.with_name(config.out.name + ".rejected.jsonl")
                                            if config.out is not None and config.on_error == "skip" else None)
    check_outputs({"--pool": config.pool, "--target": config.target},
                  {"--out": config.out, "--scores": config.scores, "--quarantine": quarantine_path})
    if not config.no_cache:
        check_output_dir("--cache-dir", config.cache_dir or cache_root())
    spec = get_method(config.options.method)
    run.featurized = spec.text_scorer is None
    cache_dir = None if config.no_cache else (config.cache_dir or cache_root())
    run.cache_dir = cache_dir  # set first: Ctrl-C while the pool is still being read must not say --no-cache
    rejects: list[Rejected] | None = [] if config.on_error == "skip" else None
    refuse = config.too_long == "refuse" and spec.build is not None
    whole: list[Sample] | None = None
    if spec.rowwise:
        # a validation pass (parse, ids) before any model is loaded: bad input fails at once, the bar has a
        # total, and a budget larger than the pool is refused before any work
        n_rows = scan_samples(config.pool, text_field=config.text_field, rejects=rejects)
        resolve_budget(n_rows, ratio=config.ratio, budget=config.budget)
    else:
        whole = read_samples(config.pool, text_field=config.text_field, rejects=rejects)
        resolve_budget(len(whole), ratio=config.ratio, budget=config.budget)  # before any scoring
        if refuse:
            whole = refuse_too_long(whole, config.options, config.pool, rejects)
    compute = make_compute(config)
    targets = read_samples(config.target, text_field=config.text_field, rejects=rejects)
    if refuse:
        targets = refuse_too_long(targets, config.options, config.target, rejects)
        if not targets:
            raise InputError("no rows left within --max-length", path=str(config.target))
    scorer = PoolScorer(targets, config.options, cache_dir, progress, compute, pool=whole,
                        stats=(run.pool_stats, run.target_stats))
    if whole is None:
        pool = stream_scores(config, scorer, n_rows, rejects, progress)
    else:
        if not whole:
            raise InputError("no rows left within --max-length", path=str(config.pool))
        scores, groups = scorer.score(whole)
        pool = PoolScores([s.id for s in whole], np.asarray([s.record.line for s in whole], dtype=np.int64),
                          scores, groups, sum(s.skipped_parts for s in whole),
                          _kinds(id_kind(s.record.row) for s in whole))
    n = resolve_budget(len(pool.ids), ratio=config.ratio, budget=config.budget)
    if pool.groups is not None:
        order = round_robin(pool.ids, pool.groups)
    elif config.scores is not None:  # SCORES gives every row its rank
        order = rank(pool.ids, pool.scores)
    else:
        order = top_order(pool.ids, pool.scores, n)
    selected = [whole[int(i)] for i in order[:n]] if whole is not None else read_selected(config, pool, order[:n])
    quarantine = quarantine_path if rejects else None
    try:
        # all or nothing: if one of them cannot be written, none of the others is left behind
        with OutputSet() as outputs:
            if config.out is not None:
                write_selection(config.out, selected, outputs)
            if config.scores is not None:
                write_scores(config.scores, pool.ids, pool.scores, order, n, outputs, pool.id_kinds)
            if quarantine is not None:
                write_quarantine(quarantine, rejects or [], outputs)
    except OSError as exc:
        reason = exc.strerror or " ".join(str(exc).split())
        raise MissingFileError(f"cannot write: {reason}; no output of this run was left behind",
                               path=exc.filename) from None
    return SelectResult(pool.ids, pool.scores, order, n, selected, scorer.pool_stats, scorer.target_stats,
                        time.perf_counter() - t0, scorer.truncated, rejects or [], quarantine,
                        scorer.truncation_report(pool.scores, order, n),
                        pool.skipped_parts + sum(s.skipped_parts for s in targets))
