"""The Python API: `select` picks rows for one target; `Selector` featurizes a pool once and then picks for as many
targets as you like at the cost of scoring alone. Both read what `mona select` reads (a path in any of its
formats) and rows held in memory (a list or any iterable of dicts, a `datasets.Dataset`, a `pandas.DataFrame`),
check them as it does, use the same cache, and write no file unless asked (`out=`, `scores=`)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from mona.config import unknown_option
from mona.errors import ConfigError, InputError
from mona.features.cached import FeaturizeStats
from mona.features.options import LMConfig
from mona.paths import cache_root
from mona.selection import pipeline
from mona.selection.budget import check_budget
from mona.selection.config import SHARED, MethodOptions, SelectConfig
from mona.selection.registry import get_method
from mona.selection.result import Selection

__all__ = ["Selection", "Selector", "select"]

# SelectConfig fields that are not options: the inputs, the budget (arguments of their own) and the method's
_NOT_OPTIONS = {"pool", "target", "ratio", "budget", "options"}


def _rows(data: Any, name: str) -> Iterable[Any] | None:
    """The rows of in-memory data, or None for a path (read as `mona select` reads it)."""
    if isinstance(data, str | os.PathLike):
        return None
    if type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "to_dict"):
        # a DataFrame has every column in every row: a missing cell (None, NaN) is a field the row lacks, as in
        # the JSONL the frame was read from
        return [{k: v for k, v in row.items() if not _missing(v)} for row in data.to_dict(orient="records")]
    if isinstance(data, Mapping | bytes) or not isinstance(data, Iterable):
        raise ConfigError(f"{name}: expected a path, a list of dicts, a datasets.Dataset or a pandas.DataFrame, "
                          f"got {type(data).__name__}")
    return data  # a list, a generator, a datasets.Dataset: each item a dict


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _path(data: Any, name: str) -> Path:
    return Path(data) if isinstance(data, str | os.PathLike) else Path(name)


def make_config(method: str, options: Mapping[str, Any], **given: Any) -> SelectConfig:
    """A SelectConfig from `method` and keyword options, each given by its field name: of SelectConfig
    (cache_dir, out, on_error, ...), of the method's knobs (MethodOptions: sae, k, pooling, seed, ...), of the
    selection model (LMConfig: model, layer, max_length, ...) or the method's own options class (e.g. combine
    for bm25). A name none of them has is a ConfigError naming the nearest one."""
    spec = get_method(method)
    top = {f.name for f in fields(SelectConfig)} - _NOT_OPTIONS
    knobs = {f.name for f in fields(MethodOptions)} - {"method", "lm", "params"}
    lm = {f.name for f in fields(LMConfig)}
    own = {f.name for f in fields(spec.options)} - set(SHARED)
    values: dict[str, dict[str, Any]] = {"top": {}, "knobs": {}, "lm": {}, "own": {}}
    for name, value in options.items():
        group = next((g for g, names in (("top", top), ("knobs", knobs), ("lm", lm), ("own", own))
                      if name in names), None)
        if group is None:
            raise unknown_option(name, sorted(top | knobs | lm | own), f"method {method}")
        values[group][name] = value
    params = spec.options(**values["own"]) if values["own"] else None
    method_options = MethodOptions(method=method, lm=LMConfig(**values["lm"]), params=params, **values["knobs"])
    return SelectConfig(options=method_options, **values["top"], **given)


def select(pool: Any, target: Any, *, budget: int | None = None, ratio: float | None = None, method: str = "mona",
           **options: Any) -> Selection:
    """Pick the `budget` (or `ratio` of the) pool rows most useful for the target task, exactly as `mona select`
    picks them. `pool` and `target`: a path, a list or iterable of dicts, a `datasets.Dataset` or a
    `pandas.DataFrame`. `options`: any option of `mona select` by its field name (`mona.api.make_config`), e.g.
    `pooling="mean"`, `cache_dir=...`, `out="picked.jsonl"` to also write OUT."""
    config = make_config(method, options, pool=_path(pool, "pool"), target=_path(target, "target"), budget=budget,
                         ratio=ratio)
    return pipeline.select(config, pool_rows=_rows(pool, "pool"), target_rows=_rows(target, "target"))


class Selector:
    """One method over one pool, for many targets: `fit(pool)` featurizes the pool once (through the cache);
    each `select(target, budget=...)` then featurizes only the target rows and scores. Picks are those of
    `mona.select` with the same options. The pool's vectors stay in memory between selections."""

    def __init__(self, method: str = "mona", **options: Any) -> None:
        self.config = make_config(method, options, pool=Path("pool"), target=Path("target"))
        self.config.check(budget=False)
        self._run: pipeline.PreparedMethod | None = None
        self._pool: list = []
        self._matrix = None
        self.pool_stats = FeaturizeStats()
        self.fit_seconds = 0.0
        self.rejected: list = []

    @property
    def _cache_dir(self) -> Path | None:
        return None if self.config.no_cache else (self.config.cache_dir or cache_root())

    def fit(self, pool: Any) -> Selector:
        """Read and check the pool, and featurize it (methods that score text directly only keep its rows)."""
        t0 = time.perf_counter()
        config = self.config
        config.pool = _path(pool, "pool")
        rejects = [] if config.on_error == "skip" else None
        samples = pipeline.read_input(config.pool, _rows(pool, "pool"), text_field=config.text_field,
                                      rejects=rejects)
        if config.too_long == "refuse" and get_method(config.options.method).featurizes:
            samples = pipeline.refuse_too_long(samples, config.options, config.pool, rejects)
            if not samples:
                raise InputError("no rows left within --max-length", path=str(config.pool))
        self.pool_stats = FeaturizeStats()
        self._run = pipeline.PreparedMethod(config.options, self._cache_dir, compute=pipeline.make_compute(config),
                                       pool=samples)
        self._matrix = (self._run.featurize(samples, "pool", self.pool_stats) if self._run.featurizer is not None
                        else None)
        self._pool, self.rejected = samples, rejects or []
        self.fit_seconds = time.perf_counter() - t0
        return self

    def select(self, target: Any, *, budget: int | None = None, ratio: float | None = None,
               out: str | Path | None = None, scores: str | Path | None = None) -> Selection:
        """Pick rows of the fitted pool for this target (a path or rows, as for `fit`); `out` and `scores` also
        write OUT and SCORES as `mona select` does."""
        if self._run is None:
            raise ConfigError("call fit(pool) before select(target)")
        check_budget(ratio=ratio, budget=budget)
        t0 = time.perf_counter()
        config = self.config
        rejects = [] if config.on_error == "skip" else None
        targets = pipeline.read_input(_path(target, "target"), _rows(target, "target"),
                                      text_field=config.text_field, rejects=rejects)
        if config.too_long == "refuse" and self._run.featurizer is not None:
            targets = pipeline.refuse_too_long(targets, config.options, _path(target, "target"), rejects)
            if not targets:
                raise InputError("no rows left within --max-length", path=str(_path(target, "target")))
        scorer = pipeline.PoolScorer(targets, config.options, self._cache_dir, method=self._run,
                                     stats=(self.pool_stats, FeaturizeStats()))
        result = scorer.score(self._pool) if self._matrix is None else scorer.score_matrix(self._matrix)
        pool = pipeline.PoolScores.of(self._pool, *result, dedup=config.options.dedup)
        matrix = self._matrix
        n, order = pipeline.choose(pool, ratio=ratio, budget=budget, every_row=scores is not None,
                                   diversity=config.options.diversity,
                                   vectors_of=None if matrix is None else lambda positions: matrix[positions])
        selection = Selection(pool.ids, pool.scores, order, n, [self._pool[int(i)] for i in order[:n]],
                              config.options.method, self.pool_stats, scorer.target_stats,
                              time.perf_counter() - t0, self._run.truncated, self.rejected + (rejects or []),
                              None, scorer.truncation_report(pool.scores, order, n),
                              pool.skipped_parts + sum(t.skipped_parts for t in targets), pool.id_kinds,
                              config.options.lm.max_length, self._run.dtype,
                              notes=(*scorer.notes, *pipeline.dedup_notes(pool)))
        if out is not None or scores is not None:
            selection.write(out, scores)
        return selection
