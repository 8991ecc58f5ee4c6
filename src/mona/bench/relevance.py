"""`mona bench relevance`: every method at the same budget on the labelled BIG-bench pool and the dev
suite; precision@k, recall@k and nDCG@k per target set and on average, and featurization cost per method."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from mona.atomic import write_text
from mona.bench.metrics import ndcg_at_k, precision_at_k, recall_at_k, target_coverage
from mona.bench.options import RelevanceConfig
from mona.bench.suite import Suite, TargetSet
from mona.claims import CLAIM_FILE, claim, holder
from mona.data.formats import Record, Sample, to_sample
from mona.errors import ConfigError
from mona.features.cached import FeaturizeStats, prefetch_shared
from mona.features.options import LMConfig
from mona.progress import Progress, progress_step
from mona.scoring.similarity import prototype
from mona.selection.budget import rank, round_robin
from mona.selection.diversity import diversify
from mona.selection.pipeline import compute_scores
from mona.selection.registry import MethodOptions, get_method

if TYPE_CHECKING:  # sweep imports this module
    from mona.bench.sweep import SweepConfig


@dataclass
class MethodRun:
    """One method's results over the suite."""

    name: str
    per_target: dict[str, dict[str, float]] = field(default_factory=dict)
    picks: dict[str, list[str]] = field(default_factory=dict)  # target -> the top k pool ids, in rank order
    featurize_seconds: float = 0.0
    tokens: int = 0
    computed: int = 0
    cache_hits: int = 0
    machines: dict[str, int] = field(default_factory=dict)  # where its targets were scored (records of a work dir)

    def mean(self, metric: str, kinds: Sequence[str] | None = None, targets: Sequence[TargetSet] = (),
             half: str | None = None) -> float:
        """Mean of a metric over the targets (all, or those of `kinds` and/or of one `half`) where it was measured
        (present and not NaN: e.g. MATES' Spearman, undefined where every influence is 0)."""
        names = ([t.name for t in targets if (kinds is None or t.kind in kinds) and (half is None or t.half == half)]
                 if targets else list(self.per_target))
        values = [v for n in names if (v := self.per_target.get(n, {}).get(metric)) is not None and v == v]
        return float(np.mean(values)) if values else float("nan")


def suite_kinds(suite: Suite) -> list[str]:
    """The suite's target kinds in order of first appearance."""
    return list(dict.fromkeys(t.kind for t in suite.targets))


def halves(suite: Suite) -> list[str]:
    """The suite's fixed halves ("A", "B"), or none for a suite without them."""
    return sorted({t.half for t in suite.targets if t.half})


def summary_columns(suite: Suite) -> tuple[list[str], list[tuple[str | None, list[str] | None]]]:
    """Headers and (half, kinds) selectors of the mean-precision columns: all, each half, each kind."""
    heads, cols = ["P@k all"], [(None, None)]
    for h in halves(suite):
        heads.append(f"half {h}")
        cols.append((h, None))
    for kd in suite_kinds(suite):
        heads.append(kd)
        cols.append((None, [kd]))
    return heads, cols


def _samples(rows: Sequence[dict]) -> list[Sample]:
    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


def evaluate(ids: Sequence[str], scores: np.ndarray, groups: np.ndarray | None, relevant: set[str], k: int,
             words: np.ndarray | None = None, generic: tuple[sp.csr_matrix, np.ndarray] | None = None,
             order: np.ndarray | None = None, coverage: tuple[sp.csr_matrix, sp.csr_matrix] | None = None
             ) -> dict[str, float]:
    """Rank by score (or round-robin over per-subtask score columns; `order`: that ranking already made, e.g.
    diversified) and measure the top k. With `words` (each pool row's length in words) also the mean length of
    the picks and of the relevant rows; with `generic` (sparse pool vectors, prototype) the picks' generic_share;
    with `coverage` (TF-IDF vectors of the pool and of the target rows) the share of target examples the picks
    cover (metrics.target_coverage)."""
    if order is None:
        order = rank(ids, scores) if groups is None else round_robin(ids, groups)
    ranked = [ids[int(i)] for i in order[:k]]
    out = {"precision": precision_at_k(ranked, relevant, k), "recall": recall_at_k(ranked, relevant, k),
           "ndcg": ndcg_at_k(ranked, relevant, k)}
    if words is not None:
        is_relevant = np.fromiter((i in relevant for i in ids), dtype=bool, count=len(ids))
        out["pick_words"] = float(words[order[:k]].mean())
        out["relevant_words"] = float(words[is_relevant].mean()) if is_relevant.any() else float("nan")
    if generic is not None:
        out["generic_share"] = generic_share(*generic, np.asarray(order[:k]))
    if coverage is not None:
        out["coverage"] = target_coverage(coverage[0][np.asarray(order[:k])], coverage[1])
    return out


def generic_share(pool: sp.csr_matrix, proto: np.ndarray, picks: np.ndarray) -> float:
    """Share of the picks' shared mass sum_k min(z_k, p_k) carried by latents that fire on over half the pool (the
    format and whitespace latents every row shares)."""
    pool = sp.csr_matrix(pool)
    common = np.bincount(pool.indices, minlength=pool.shape[1]) > pool.shape[0] / 2
    coo = sp.csr_matrix(pool[picks]).tocoo()
    shared = np.minimum(coo.data, proto[coo.col])
    total = shared.sum()
    return float(shared[common[coo.col]].sum() / total) if total > 0 else float("nan")


def _sae_vectors(options: MethodOptions, cache_dir: Path | None):
    """A way to get a SAE method's (MoNA's) cached vectors, or None for any other representation."""
    from mona.features.mona import MonaFeaturizer
    from mona.selection.pipeline import PreparedMethod

    spec = get_method(options.method)
    if not (spec.featurizes and spec.rowwise) or cache_dir is None:  # SAE methods are row-wise
        return None
    prepared = PreparedMethod(options, cache_dir)
    if not isinstance(prepared.featurizer, MonaFeaturizer):
        return None
    return lambda samples, role: sp.csr_matrix(prepared.featurize(samples, role, FeaturizeStats()))


def _method_vectors(options: MethodOptions, pool: Sequence[Sample], cache_dir: Path | None):
    """The method's own pool vectors (through the cache), for --diversity."""
    from mona.selection.pipeline import PreparedMethod

    return PreparedMethod(options, cache_dir, pool=pool).featurize(pool, "pool", FeaturizeStats())


def row_words(samples: Sequence[Sample]) -> np.ndarray:
    """Length of each row in words (whitespace-separated), for the length diagnostics."""
    return np.asarray([len(s.plain_text().split()) for s in samples], dtype=np.float64)


def mean_generic_share(run: MethodRun) -> float:
    """Mean over targets of generic_share where it was measured (SAE methods), else NaN."""
    values = [m["generic_share"] for m in run.per_target.values() if "generic_share" in m]
    return float(np.mean(values)) if values else float("nan")


def length_ratio(run: MethodRun, targets: Sequence[TargetSet]) -> float:
    """Mean over targets of (mean words of the picks) / (mean words of the relevant rows)."""
    values = [run.per_target[t.name]["pick_words"] / run.per_target[t.name]["relevant_words"] for t in targets
              if "pick_words" in run.per_target.get(t.name, {})]
    return float(np.mean(values)) if values else float("nan")


RECORD_VERSION = 1


def record_dir(work_dir: Path, label: str, options: MethodOptions, suite: Suite, k: int, dtype: str) -> Path:
    """Where one method configuration's per-target records lie in a work dir: named by the label and a hash of
    everything that decides its results (the suite's definition, the budget, the options with the method's
    defaults filled in, the resolved dtype)."""
    import dataclasses

    from mona.features.cache import config_key
    from mona.selection.registry import with_defaults

    key = {"version": RECORD_VERSION, "suite": suite.config, "k": k, "dtype": dtype,
           "options": json.loads(json.dumps(dataclasses.asdict(with_defaults(options)), default=str))}
    return work_dir / f"{label}-{config_key(key)[:12]}"


def _record_path(records: Path, target: TargetSet) -> Path:
    return records / (target.name.replace("/", "__") + ".json")


def _read_record(path: Path) -> dict | None:
    """A finished target's record, or None (missing, or cut short by a crash: computed again)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"metrics", "picks", "stats"} <= set(record) else None


def _write_record(path: Path, record: dict) -> None:
    write_text(path, json.dumps(record, indent=1) + "\n")


@dataclass
class _PoolView:
    """What every target of one run scores against, built once per run: the pool, its ids and lengths, the
    SAE vectors used for the generic-latent share, the method's own vectors for --diversity, and the pool's
    TF-IDF (which target example each pick resembles most)."""

    samples: list[Sample]
    ids: list[str]
    words: np.ndarray
    vectors: Callable | None
    sae_m: np.ndarray | None
    method_m: np.ndarray | None
    tfidf: TfidfVectorizer
    text: sp.csr_matrix

    @classmethod
    def build(cls, options: MethodOptions, suite: Suite, cache_dir: Path | None) -> _PoolView:
        pool = _samples(suite.pool)
        vectors = _sae_vectors(options, cache_dir)
        tfidf = TfidfVectorizer(sublinear_tf=True).fit([s.plain_text() for s in pool])
        return cls(samples=pool, ids=[s.id for s in pool], words=row_words(pool), vectors=vectors,
                   sae_m=vectors(pool, "pool") if vectors is not None else None,
                   method_m=_method_vectors(options, pool, cache_dir) if options.diversity else None,
                   tfidf=tfidf, text=tfidf.transform([s.plain_text() for s in pool]))


def run_method(label: str, options: MethodOptions, suite: Suite, k: int, cache_dir: Path | None,
               progress: Progress | None = None, log: Callable[[str], None] = print,
               records: Path | None = None) -> MethodRun:
    """Score every target set with one method configuration. With `records` (record_dir), each finished target
    is written there and a rerun reads it instead of scoring again, so a long run resumes where it stopped;
    several invocations on one work dir share the targets (each claims the one it scores, see mona.claims) and
    each waits for the others' at the end. A method without a featurizer (a text scorer: bm25, dsir, mates, ...)
    is charged its scoring wall time and the pool rows it scored, once per target."""
    view = _PoolView.build(options, suite, cache_dir)
    done: dict[str, tuple[dict, str]] = {}

    def score(target: TargetSet, wait: bool) -> None:
        t0 = time.perf_counter()
        path = _record_path(records, target) if records is not None else None
        record = _read_record(path) if path is not None else None
        if record is not None:
            done[target.name] = record, "(from the work dir)"
            return
        with contextlib.ExitStack() as stack:
            if path is not None and not stack.enter_context(claim(path.with_suffix(CLAIM_FILE), wait=wait)):
                log(f"{label:<24} {target.name:<44} left to {holder(path.with_suffix(CLAIM_FILE))}")
                return
            record = _read_record(path) if path is not None else None  # finished while this one waited
            if record is None:
                record = _score_target(options, view, target, k, cache_dir, progress)
                if path is not None:
                    _write_record(path, record)
            done[target.name] = record, f"({time.perf_counter() - t0:.1f} s)"

    for target in suite.targets:
        score(target, wait=False)
        if target.name in done:
            _log_target(label, target.name, k, *done[target.name], log)
    for target in suite.targets:  # those another process held: its record once it lets go (or score it here)
        if target.name not in done:
            score(target, wait=True)
            _log_target(label, target.name, k, *done[target.name], log)
    run = MethodRun(label)
    for target in suite.targets:
        record = done[target.name][0]
        run.picks[target.name] = record["picks"]
        run.per_target[target.name] = record["metrics"]
        stats = record["stats"]
        run.featurize_seconds += stats["seconds"]
        run.tokens += stats["tokens"]
        run.computed += stats["computed"]
        run.cache_hits += stats["cache_hits"]
        where = stats.get("machine", "not recorded")
        run.machines[where] = run.machines.get(where, 0) + 1
    return run


def _log_target(label: str, target: str, k: int, record: dict, how: str, log: Callable[[str], None]) -> None:
    log(f"{label:<24} {target:<44} P@{k} {record['metrics']['precision']:.3f} {how}")


def _score_target(options: MethodOptions, view: _PoolView, target: TargetSet, k: int, cache_dir: Path | None,
                  progress: Progress | None) -> dict:
    """One target's record: its metrics, the top k pool ids, and what featurizing (or scoring) cost."""
    rows = _samples(target.rows)
    t0 = time.perf_counter()
    result = compute_scores(list(view.samples), rows, options, cache_dir, progress)
    scoring_seconds = time.perf_counter() - t0
    scores, groups = result.scores, result.group_scores
    generic = None
    if view.vectors is not None and view.sae_m is not None:  # how much of the score generic latents carry
        target_m = view.vectors(rows, "target")
        width = min(view.sae_m.shape[1], target_m.shape[1])  # compact pool vectors carry a left-out-mass column
        generic = (view.sae_m[:, :width], prototype(target_m[:, :width]))
    order = rank(view.ids, scores) if groups is None else round_robin(view.ids, groups)
    if view.method_m is not None:
        method_m = view.method_m
        order = diversify(order, k, options.diversity, lambda positions: method_m[positions])
    coverage = (view.text, view.tfidf.transform([s.plain_text() for s in rows]))
    metrics = {**evaluate(view.ids, scores, groups, target.relevant, k, view.words, generic, order, coverage),
               **(result.metrics or {})}
    stats = {"seconds": 0.0, "tokens": 0, "computed": 0, "cache_hits": 0}
    for part in (result.pool_stats, result.target_stats):
        if part.computed:
            stats["seconds"] += part.seconds
            stats["tokens"] += part.tokens
            stats["computed"] += part.computed
        stats["cache_hits"] += part.cache_hits
    if not get_method(options.method).featurizes:
        stats["seconds"], stats["computed"] = scoring_seconds, len(view.samples)
    stats["machine"] = machine()
    return {"target": target.name, "metrics": metrics, "picks": [view.ids[int(i)] for i in order[:k]],
            "stats": stats}


def prefetch_lm_methods(options: Sequence[MethodOptions], suite: Suite, cache_dir: Path,
                        progress: Progress | None = None) -> tuple[list[str], FeaturizeStats]:
    """One shared forward pass filling the caches of every LM method among `options` (same LMConfig) for
    the pool and all target rows. Returns the methods covered and the pass's cost."""
    from mona.features.lm import LMFeaturizer, LMRunner

    lm_options = [o for o in options if get_method(o.method).featurizes]
    if not lm_options:
        return [], FeaturizeStats()
    runner = LMRunner(lm_options[0].lm)
    featurizers = []
    for o in lm_options:
        f = get_method(o.method).build(o, runner)
        if isinstance(f, LMFeaturizer) and o.lm == lm_options[0].lm:
            featurizers.append(f)
    pool = _samples(suite.pool)
    targets = [s for t in suite.targets for s in _samples(t.rows)]
    stats = FeaturizeStats()
    with progress_step(progress, "shared LM pass", len(pool) + len(targets)) as step:
        # each in its own role: a pool vector may be stored compactly (top-m) under a key of its own, so targets
        # filled as pool rows would miss later and be computed again, one model load per target set
        for role, samples in (("pool", pool), ("target", targets)):
            offset = stats.samples

            def update(done: int, tokens: int, offset: int = offset) -> None:
                step(offset + done, stats.tokens + tokens)

            part = prefetch_shared(featurizers, samples, cache_dir, update, role=role)
            for name in ("samples", "cache_hits", "computed", "tokens", "seconds"):
                setattr(stats, name, getattr(stats, name) + getattr(part, name))
    return [f.name for f in featurizers], stats


def machine() -> str:
    """One line describing this machine."""
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, " \
           f"Python {platform.python_version()}, torch {torch.__version__}"


def _cell(metrics: dict[str, float]) -> str:
    # precision, and the mean length of the picks in words where it was measured
    words = f" ({metrics['pick_words']:.0f} w)" if "pick_words" in metrics else ""
    return f"{metrics['precision']:.2f}{words}"


def write_report(runs: Sequence[MethodRun], suite: Suite, k: int, command: str, out_dir: Path,
                 name: str = "relevance", dtype: str | None = None) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` (averages overall, per half and per target kind; per-target table;
    mean length of each method's picks against the relevant rows'; for SAE methods the share of the picks'
    shared mass on latents that fire on over half the pool) into out_dir. `dtype`: the selection model's dtype
    and why (mona.models.dtype), for the LM methods."""
    out_dir.mkdir(parents=True, exist_ok=True)
    heads, cols = summary_columns(suite)
    data = {"command": command, "machine": machine(), "dtype": dtype, "k": k, "suite": suite.config,
            "targets": [{"name": t.name, "kind": t.kind, "half": t.half, "examples": len(t.rows),
                         "relevant": len(t.relevant)} for t in suite.targets],
            "methods": [{"name": r.name, "per_target": r.per_target,
                         "mean": {m: r.mean(m) for m in ("precision", "recall", "ndcg", "coverage",
                                                          "influence_spearman")},
                         "mean_by_half": {h: r.mean("precision", targets=suite.targets, half=h)
                                          for h in halves(suite)},
                         "pick_length_ratio": length_ratio(r, suite.targets),
                         "generic_share": mean_generic_share(r),
                         "featurize_seconds": round(r.featurize_seconds, 2), "tokens": r.tokens,
                         "tokens_per_second": round(r.tokens / r.featurize_seconds, 1)
                         if r.featurize_seconds and r.tokens else None,
                         "computed": r.computed, "cache_hits": r.cache_hits, "picks": r.picks} for r in runs]}
    json_path = out_dir / f"{name}.json"
    write_text(json_path, json.dumps(data, indent=1) + "\n")
    here = machine()
    elsewhere = {m: n for r in runs for m, n in r.machines.items() if m != here}
    scored = ("" if not elsewhere else " (this invocation). Targets read from the work dir were scored on: "
              + "; ".join(f"{m}: {n} targets" for m, n in sorted(elsewhere.items())))
    lines = [f"# Relevance benchmark: {name}", "", f"Command: `{command}`", "", f"Machine: {here}{scored}", "",
             *([f"Selection model dtype (LM methods): {dtype}.", ""] if dtype else []),
             f"Suite: {suite.config.get('suite', 'easy')}; pool: {len(suite.pool)} BIG-bench rows over "
             f"{len(suite.config.get('groups', []))} tasks (seed {suite.config.get('seed')}); "
             f"{len(suite.targets)} target sets; budget k = {k} for every method.", "",
             "## Mean precision@k", "",
             "| method | " + " | ".join(heads) + " | nDCG@k all | target examples covered | picks' length / relevant "
             "rows' | generic latents' share | featurize s | s per 1,000 rows | tok/s |",
             "|---|" + "---|" * (len(heads) + 7)]
    for r in sorted(runs, key=lambda r: -r.mean("precision")):
        tps = f"{r.tokens / r.featurize_seconds:.0f}" if r.featurize_seconds and r.tokens else "-"
        fs = f"{r.featurize_seconds:.0f}" if r.computed else "cached"
        per_k = f"{1000 * r.featurize_seconds / r.computed:.0f}" if r.computed else "-"
        values = [r.mean("precision", kinds, suite.targets, half) for half, kinds in cols]
        lines.append(f"| {r.name} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {r.mean('ndcg'):.3f} | " + (f"{c:.2f}" if (c := r.mean("coverage")) == c else "-")
                     + f" | {length_ratio(r, suite.targets):.2f} | "
                     + (f"{g:.2f}" if (g := mean_generic_share(r)) == g else "-") + f" | {fs} | {per_k} | {tps} |")
    lines += ["", "*featurize s*: the seconds of featurizing rows not in the cache; for a method without a "
              "featurizer (bm25, mates, random) the seconds of scoring the pool for every target, and *s per 1,000 "
              "rows* per 1,000 pool rows scored against one target.",
              "", "## Precision@k per target", "", "| target | half | relevant | words (relevant) | " +
              " | ".join(r.name for r in runs) + " |", "|---|---|---|---|" + "---|" * len(runs)]
    for t in suite.targets:
        rel_words = runs[0].per_target[t.name].get("relevant_words") if runs else None
        lines.append(f"| {t.name} | {t.half or '-'} | {len(t.relevant)} | "
                     + (f"{rel_words:.0f}" if rel_words is not None else "-") + " | "
                     + " | ".join(_cell(r.per_target[t.name]) for r in runs) + " |")
    md_path = out_dir / f"{name}.md"
    write_text(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


def pick_targets(suite: Suite, spec: str) -> Suite:
    """The suite with only the target sets `spec` names (RelevanceConfig.targets): all, a half, or names and
    fnmatch patterns, comma-separated."""
    import dataclasses
    from fnmatch import fnmatchcase

    if spec.strip().lower() == "all":
        return suite
    if spec.strip() in halves(suite):
        chosen = [t for t in suite.targets if t.half == spec.strip()]
    else:
        patterns = [p.strip() for p in spec.split(",") if p.strip()]
        chosen = [t for t in suite.targets if any(fnmatchcase(t.name, p) for p in patterns)]
    if not chosen:
        names = ", ".join(t.name for t in suite.targets[:3])
        raise ConfigError(f"--targets {spec!r} matches no target set of this suite (all, "
                          f"{' or '.join(halves(suite)) or 'no halves'}, or names such as {names})")
    return dataclasses.replace(suite, targets=chosen)


def run_relevance(config: RelevanceConfig, command: str, out_dir: Path, cache_dir: Path,
                  sweep: SweepConfig | None = None, progress: Callable[[], Progress] | None = None,
                  log: Callable[[str], None] = print, params: dict[str, Any] | None = None,
                  work_dir: Path | None = None) -> tuple[Path, Path]:
    """Run the benchmark (or, with `sweep`, the sweep of MoNA's design choices) and write its JSON and Markdown
    reports; returns their paths. `progress` makes a fresh progress bar per step; `params` holds a method's own
    options (its options dataclass, as `mona select`'s flags give it, or None for its defaults) by method name.
    `work_dir`: keep each finished target's result there (record_dir) and reuse it on a rerun."""
    if sweep is not None and work_dir is not None:
        raise ConfigError("--work-dir keeps a method comparison's targets; --sweep does not use it")
    for m in config.method_names:
        get_method(m)  # an unknown method fails before the suite is built
    from mona.bench.suite import load_suite

    suite = pick_targets(load_suite(config.suite, pool_size=config.pool_size, per_task=config.per_task,
                                    seed=config.seed), config.targets)
    k = config.k or int(suite.config["per_task"])
    suffix = "" if config.suite == "hard" else f"-{config.suite}"
    if sweep is not None:
        from mona.bench.sweep import run_sweep, write_sweep_report

        results, sae_meta, dtype = run_sweep(suite, k, sweep, cache_dir=cache_dir, log=log, dtype=config.dtype)
        return write_sweep_report(results, sae_meta, suite, k, sweep, command, out_dir,
                                  config.name or f"relevance-sweep{suffix}", dtype)
    lm = LMConfig(layer=config.layer, render=config.render, dtype=config.dtype)
    all_options = [MethodOptions(method=m, lm=lm, sae=config.sae, similarity=config.similarity, seed=config.seed,
                                 pooling=config.pooling, k=config.k_codes,
                                 diversity=config.diversity if get_method(m).featurizes else 0.0,
                                 prototype=config.prototype if get_method(m).featurizes else None,
                                 params=(params or {}).get(m))
                   for m in config.method_names]
    from mona.features.lm import LMRunner

    choice = LMRunner(lm).resolved_dtype()
    dtype = str(choice)
    shared, shared_stats = prefetch_lm_methods(all_options, suite, cache_dir, progress() if progress else None)
    runs = []
    for options in all_options:
        records = (record_dir(work_dir, options.method, options, suite, k, choice.dtype)
                   if work_dir is not None else None)
        run = run_method(options.method, options, suite, k, cache_dir, progress=progress() if progress else None,
                         log=log, records=records)
        if options.method in shared:  # featurized together in one forward pass: report that pass's cost
            run.featurize_seconds, run.tokens = shared_stats.seconds, shared_stats.tokens
            run.computed = shared_stats.computed
        runs.append(run)
    return write_report(runs, suite, k, command, out_dir, config.name or f"relevance{suffix}", dtype=dtype)
