"""`mona select` as a library call: read, featurize (through the cache), score, rank, write."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from mona.data.formats import Rejected, Sample, content_key, id_kind, raw_row
from mona.data.ids import IdColumn, scan_samples
from mona.data.readers import iter_samples, read_samples, row_records, samples_of, validate_samples
from mona.errors import ConfigError, InputError, Interrupted, MissingFileError
from mona.features.base import Matrix, MethodScores
from mona.features.cached import ComputeFn, FeaturizeStats, featurize_cached
from mona.features.lm import LMRunner
from mona.outputs import OutputSet, check_output_dir, check_outputs, write_quarantine, write_scores, write_selection
from mona.paths import cache_root
from mona.scoring.similarity import jaccard_upper_bound, prototype
from mona.selection.budget import distinct_first, rank, resolve_budget, round_robin, top_order
from mona.selection.config import BACKENDS, MethodOptions, SelectConfig
from mona.selection.diversity import candidate_count, diversify
from mona.selection.registry import get_method, with_defaults
from mona.selection.result import Selection

if TYPE_CHECKING:
    from mona.progress import Progress


def make_compute(config: SelectConfig) -> ComputeFn | None:
    """The featurization backend's compute function (None: the featurizer's own, in this process)."""
    if config.backend == "local":
        return None
    if config.backend == "ray":
        from mona.selection.ray_backend import ray_compute

        return ray_compute(config.options, num_workers=config.num_workers, num_gpus=config.num_gpus)
    raise ConfigError(f"unknown --backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")


def refuse_too_long(samples: list[Sample], options: MethodOptions, path: Path | str,
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
        rejects.append(Rejected(str(path), sample.record.line, error.reason, raw_row(sample.record)))
    return kept


class ScoreSet(NamedTuple):
    """Scores of the pool under one method. With one prototype per target subtask, `group_scores` holds the
    score against each ([pool, groups]) and `scores` their maximum."""

    scores: np.ndarray
    pool_stats: FeaturizeStats
    target_stats: FeaturizeStats
    truncated: int
    group_scores: np.ndarray | None = None
    notes: tuple[str, ...] = ()  # what the method adds to the summary (features.base.MethodScores)
    metrics: dict[str, float] | None = None  # the same as numbers


def target_groups(targets: Sequence[Sample], field: str) -> dict[str, list[int]]:
    """Target positions by the value of `field` (rows without it form one group named '')."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(targets):
        groups.setdefault(str(sample.record.row.get(field, "") or ""), []).append(i)
    return groups


def prototype_scores(scorer, pool_m: Matrix, target_m: Matrix, targets: Sequence[Sample], options: MethodOptions
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores under `options.prototype`: single (the paper: one prototype; also None), max (best single target
    row) or per-subtask (one prototype per subtask; also returns the per-subtask score columns for round-robin).
    `scorer(pool matrix, target matrix, options)` scores against one set of targets."""
    options = with_defaults(options)
    if options.prototype in (None, "single"):
        return np.asarray(scorer(pool_m, target_m, options), dtype=np.float64), None
    if options.prototype == "max":
        groups = {str(i): [i] for i in range(len(targets))}
    else:
        groups = target_groups(targets, options.group_field)
    matrix = np.column_stack([np.asarray(scorer(pool_m, target_m[idx], options), dtype=np.float64)
                              for idx in groups.values()])
    return matrix.max(axis=1), (matrix if options.prototype == "per-subtask" else None)


class PreparedMethod:
    """One method set up to run: its options checked and completed with the method's defaults, and (unless it
    scores text directly) its featurizer, prepared on the whole pool when the method needs it."""

    def __init__(self, options: MethodOptions, cache_dir: Path | None, progress: Progress | None = None,
                 compute: ComputeFn | None = None, pool: Sequence[Sample] | None = None) -> None:
        self.spec = spec = get_method(options.method)
        options.check()
        self.options = with_defaults(options)
        self.cache_dir, self.progress, self.compute = cache_dir, progress, compute
        self.featurizer = None
        self.runner: LMRunner | None = None
        if not spec.rowwise and pool is None:
            raise ValueError(f"{options.method} scores need the whole pool")
        if spec.featurizes:
            self.runner = LMRunner(options.lm)
            self.featurizer = spec.build(options, self.runner)
            if getattr(self.featurizer, "runner", None) is self.runner:
                self.runner.resolved_layer()  # a bad model or layer fails here, before any progress bar
            self.featurizer.prepare(pool if pool is not None else [], cache_dir, progress)

    @property
    def truncated(self) -> int:
        """Rows truncated to max_length so far."""
        return self.runner.truncated if self.runner is not None else 0

    @property
    def dtype(self) -> str | None:
        """The selection model's dtype and why, e.g. "fp32 (auto: ...)", for methods that run it."""
        choice = getattr(self.featurizer, "dtype_choice", None)
        return str(choice()) if choice is not None else None

    def featurize(self, samples: Sequence[Sample], role: str, stats: FeaturizeStats, *, bar: bool = False,
                  done_before: int = 0) -> Matrix:
        """Vectors of `samples` for one side ("pool" or "target"; some methods treat them differently), through
        the cache. `bar`: draw a progress bar of its own; else progress goes to an open one, offset by
        `done_before` (a chunk of a streamed pool)."""
        assert self.featurizer is not None
        progress = self.progress
        if bar and progress:
            progress.start(f"featurize {role}", len(samples))
        try:
            return featurize_cached(self.featurizer, samples, self.cache_dir,
                                    (lambda d, t: progress.update(done_before + d, t)) if progress else None,
                                    stats, self.compute, role=role)
        finally:
            if bar and progress:
                progress.finish()


class PoolScorer:
    """Scores pool rows against one set of targets under one method. The targets are featurized once, up front.
    A row-wise method (MethodSpec.rowwise) scores any chunk of the pool on its own, so a pool can be streamed;
    the others need the whole pool, given at construction (`pool`) and to one `score` call. A `method` already
    set up (mona.Selector) is reused instead of building one."""

    def __init__(self, targets: Sequence[Sample], options: MethodOptions, cache_dir: Path | None,
                 progress: Progress | None = None, compute: ComputeFn | None = None,
                 pool: Sequence[Sample] | None = None, stats: tuple[FeaturizeStats, FeaturizeStats] | None = None,
                 method: PreparedMethod | None = None) -> None:
        self.method = method or PreparedMethod(options, cache_dir, progress, compute, pool)
        self.spec, self.options, self.featurizer = self.method.spec, self.method.options, self.method.featurizer
        self.targets = list(targets)
        # (pool, target) stats; a caller may pass its own to know what was done if this one is interrupted
        self.pool_stats, self.target_stats = stats or (FeaturizeStats(), FeaturizeStats())
        if self.featurizer is not None:
            self.target_matrix = self.method.featurize(self.targets, "target", self.target_stats, bar=True)
        # top-m storage: also track each score's upper bound, to report how far truncation could move it
        self.bounded = (getattr(self.featurizer, "top_m", None) is not None and self.options.prototype == "single"
                        and self.options.similarity == "jaccard")
        self.proto = prototype(self.target_matrix) if self.bounded else None
        self.upper: list[np.ndarray] = []
        self.notes: list[str] = []  # a text scorer's lines for the summary (features.base.MethodScores)
        self.metrics: dict[str, float] = {}

    @property
    def truncated(self) -> int:
        """Rows truncated to max_length so far."""
        return self.method.truncated

    def score(self, pool: Sequence[Sample], done_before: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores, per-subtask score columns or None) of these pool rows; `done_before` offsets the progress
        of a chunk within a streamed pool (the caller starts and finishes the bar)."""
        if not self.spec.featurizes:
            out = self.spec.text_scorer()(pool, self.targets, self.options, self.method.cache_dir,
                                          self.method.progress)
            if isinstance(out, MethodScores):
                self.notes += out.notes
                self.metrics.update(out.metrics)
                out = out.scores
            return np.asarray(out, dtype=np.float64), None
        matrix = self.method.featurize(pool, "pool", self.pool_stats, done_before=done_before)
        return self.score_matrix(matrix)

    def score_matrix(self, matrix: Matrix) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores, per-subtask score columns or None) of pool rows already featurized."""
        if self.bounded:
            self.upper.append(jaccard_upper_bound(matrix, self.proto))
        return prototype_scores(self.spec.matrix_scorer(), matrix, self.target_matrix, self.targets, self.options)

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
        progress.start("featurize pool", len(pool))
    try:
        scores, groups = scorer.score(pool)
    finally:
        if bar:
            progress.finish()
    return ScoreSet(scores, scorer.pool_stats, scorer.target_stats, scorer.truncated, groups, tuple(scorer.notes),
                    scorer.metrics)


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
    content: np.ndarray | None = None  # uint64 content_key of each row (--dedup); None: not taken

    @classmethod
    def of(cls, samples: Sequence[Sample], scores: np.ndarray, groups: np.ndarray | None, *,
           dedup: bool = False) -> PoolScores:
        """The scores of a pool held in memory (with each row's content key under `dedup`)."""
        return cls([s.id for s in samples], np.asarray([s.record.line for s in samples], dtype=np.int64), scores,
                   groups, sum(s.skipped_parts for s in samples), _kinds(id_kind(s.record.row) for s in samples),
                   np.fromiter((content_key(s) for s in samples), dtype=np.uint64, count=len(samples))
                   if dedup else None)


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
    content = array("Q")  # --dedup: 8 bytes a row, the content key
    dedup = config.options.dedup
    skipped_parts = 0
    parts: list[np.ndarray] = []
    group_parts: list[np.ndarray] = []
    bar = progress is not None and scorer.featurizer is not None
    if bar:
        progress.start("featurize pool", n_rows)
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
            if dedup:
                content.extend(content_key(s) for s in chunk)
            parts.append(scores)
            if groups is not None:
                group_parts.append(groups)
    finally:
        if bar:
            progress.finish()
    if not ids:
        raise InputError("no rows left within --max-length", path=str(config.pool))
    return PoolScores(ids, np.frombuffer(lines, dtype=np.int64), np.concatenate(parts),
                      np.concatenate(group_parts) if group_parts else None, skipped_parts, _kinds(kinds),
                      np.frombuffer(content, dtype=np.uint64) if dedup else None)


def choose(pool: PoolScores, *, ratio: float | None, budget: int | None, every_row: bool = False,
           diversity: float = 0.0, vectors_of: Callable[[np.ndarray], Matrix] | None = None
           ) -> tuple[int, np.ndarray]:
    """(rows to select, pool positions best first): round-robin over subtasks when there are groups, else by
    score with ties broken by id; the order covers every row with `every_row` (SCORES ranks them all), else at
    least the selected ones. When the pool has content keys (--dedup), a row saying what a better-ranked one says
    moves after all the distinct rows (and the budget shrinks to their number if it is larger). With
    `diversity` > 0 the first rows are then re-picked by maximal marginal relevance (mona.selection.diversity)
    over the vectors `vectors_of(pool positions)` gives."""
    n = resolve_budget(len(pool.ids), ratio=ratio, budget=budget)
    if pool.groups is not None:
        order = round_robin(pool.ids, pool.groups)
    elif every_row or pool.content is not None:
        order = rank(pool.ids, pool.scores)
    else:
        order = top_order(pool.ids, pool.scores, candidate_count(n, len(pool.ids)) if diversity else n)
    distinct = len(order)
    if pool.content is not None:
        order, distinct = distinct_first(order, pool.content)
        n = min(n, distinct)
    if diversity:  # among the distinct rows only
        assert vectors_of is not None, "diversity needs the method's vectors"
        order = np.concatenate([diversify(order[:distinct], n, diversity, vectors_of), order[distinct:]])
    return n, order


def dedup_notes(pool: PoolScores) -> tuple[str, ...]:
    """The summary's line on --dedup: how many rows repeat what a better-ranked row says (none of them picked)."""
    if pool.content is None:
        return ()
    repeats = len(pool.content) - len(np.unique(pool.content))
    rows = "1 row repeats" if repeats == 1 else f"{repeats} rows repeat"
    return (f"dedup: {rows} a better-ranked row's text, none selected",)


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


@dataclass
class _Run:
    """What a selection has done so far, for the line printed if it is interrupted or fails to write."""

    cache_dir: Path | None = None
    pool_stats: FeaturizeStats = field(default_factory=FeaturizeStats)
    target_stats: FeaturizeStats = field(default_factory=FeaturizeStats)
    featurized: bool = False  # the method featurizes through the cache (not a text scorer like bm25)


def select(config: SelectConfig, progress: Progress | None = None, *, pool_rows: Iterable[Any] | None = None,
           target_rows: Iterable[Any] | None = None) -> Selection:
    """Run one selection end to end; OUT and SCORES are written only if everything succeeded. Row-wise methods
    stream a pool file (memory does not grow with its rows' size); the others read it whole. `pool_rows` and
    `target_rows` (rows held in memory: dicts) replace reading `config.pool` and `config.target`, which then only
    name them in messages; they are checked as a file's rows are.

    Every option is checked before any file is read. Ctrl-C raises `Interrupted` (a KeyboardInterrupt) whose
    message says what the cache kept and how to resume; a file that cannot be written (an output or the cache)
    is a MissingFileError, and the run leaves none of its outputs behind."""
    config.check()
    run = _Run()
    try:
        return _select(config, progress, run, pool_rows, target_rows)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(run, config.options.method)) from None
    except OSError as exc:  # outside the outputs (written below, with their own message): the cache
        raise os_error(exc, run.cache_dir) from None


def read_input(path: Path, rows: Iterable[Any] | None, *, text_field: str | None,
               rejects: list[Rejected] | None) -> list[Sample]:
    """All samples of a file, or of rows held in memory (named by `path` in messages), checked alike."""
    if rows is None:
        return read_samples(path, text_field=text_field, rejects=rejects)
    return list(samples_of(row_records(rows, str(path), rejects), str(path), text_field=text_field,
                           rejects=rejects))


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


def _select(config: SelectConfig, progress: Progress | None, run: _Run, pool_rows: Iterable[Any] | None,
            target_rows: Iterable[Any] | None) -> Selection:
    t0 = time.perf_counter()
    quarantine_path = config.quarantine or (config.out.with_name(config.out.name + ".rejected.jsonl")
                                            if config.out is not None and config.on_error == "skip" else None)
    check_outputs({"--pool": config.pool if pool_rows is None else None,
                   "--target": config.target if target_rows is None else None},
                  {"--out": config.out, "--scores": config.scores, "--quarantine": quarantine_path})
    if not config.no_cache:
        check_output_dir("--cache-dir", config.cache_dir or cache_root())
    spec = get_method(config.options.method)
    run.featurized = spec.featurizes
    cache_dir = None if config.no_cache else (config.cache_dir or cache_root())
    run.cache_dir = cache_dir  # set first: Ctrl-C while the pool is still being read must not say --no-cache
    rejects: list[Rejected] | None = [] if config.on_error == "skip" else None
    refuse = config.too_long == "refuse" and spec.featurizes
    whole: list[Sample] | None = None
    if spec.rowwise and pool_rows is None:
        # a validation pass (parse, ids) before any model is loaded: bad input fails at once, the bar has a
        # total, and a budget larger than the pool is refused before any work
        n_rows = scan_samples(config.pool, text_field=config.text_field, rejects=rejects)
        resolve_budget(n_rows, ratio=config.ratio, budget=config.budget)
    else:
        whole = read_input(config.pool, pool_rows, text_field=config.text_field, rejects=rejects)
        resolve_budget(len(whole), ratio=config.ratio, budget=config.budget)  # before any scoring
        if refuse:
            whole = refuse_too_long(whole, config.options, config.pool, rejects)
    compute = make_compute(config)
    targets = read_input(config.target, target_rows, text_field=config.text_field, rejects=rejects)
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
        pool = PoolScores.of(whole, *scorer.score(whole), dedup=config.options.dedup)

    def vectors_of(positions: np.ndarray) -> Matrix:  # the candidates' vectors again, from the cache
        rows = [whole[int(i)] for i in positions] if whole is not None else read_selected(config, pool, positions)
        return scorer.method.featurize(rows, "pool", FeaturizeStats())

    n, order = choose(pool, ratio=config.ratio, budget=config.budget, every_row=config.scores is not None,
                      diversity=config.options.diversity, vectors_of=vectors_of)
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
    return Selection(pool.ids, pool.scores, order, n, selected, config.options.method, scorer.pool_stats,
                     scorer.target_stats, time.perf_counter() - t0, scorer.truncated, rejects or [], quarantine,
                     scorer.truncation_report(pool.scores, order, n),
                     pool.skipped_parts + sum(s.skipped_parts for s in targets), pool.id_kinds,
                     config.options.lm.max_length, scorer.method.dtype,
                     notes=(*scorer.notes, *dedup_notes(pool)))
