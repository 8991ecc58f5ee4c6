"""The statistics, tables, figures and conclusion of `mona bench downstream`, from whatever runs have finished.

Metric: the NLL per answer token of the reference answers on a task's evaluation rows (lower is better), i.e. the
sum of the rows' answer NLLs over the sum of their answer tokens. Every comparison is paired over the same rows: a
bootstrap resamples the evaluation rows (the same resamples for every run of a task and setting) and gives the 95 %
interval of the NLL difference. Against random, the reference is the mean of random's seeds (per row), and the
verdict also asks the difference to exceed twice the spread of random's seeds, so that neither the evaluation
rows' sampling nor which random rows were drawn explains it:
  better: interval below 0 and gain > 2 x random's seed std; worse: interval above 0 and loss > 2 x that std;
  tie otherwise. Between two methods: won (interval below 0), lost (above 0), tied (it spans 0).
"""

from __future__ import annotations

import json
import os
import statistics
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mona.atomic import write_text
from mona.bench.downstream import RATIO_METHODS, SETTINGS, names
from mona.bench.relevance import machine

BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Diff:
    """A paired NLL difference (a - b) and its bootstrap 95 % interval."""

    value: float
    lo: float
    hi: float

    def cell(self) -> str:
        """The difference and its interval, for a table."""
        return f"{self.value:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"

    @property
    def sign(self) -> int:
        """-1 when the interval is below 0 (a is better), 1 above, 0 when it spans 0."""
        return -1 if self.hi < 0 else (1 if self.lo > 0 else 0)


class TaskStats:
    """The runs of one (setting, task) and their paired comparisons over the task's evaluation rows."""

    def __init__(self, setting: str, task: str, runs: Sequence[dict], base: dict | None) -> None:
        self.setting, self.task = setting, task
        self.runs = {r["label"]: r for r in runs}
        self.base = base
        first = next(iter(runs), None) or base
        self.tokens = np.asarray(first["row_tokens"] if first is base else first["eval"]["row_tokens"], dtype=float)
        rng = np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(f"{setting}/{task}".encode())])
        self.samples = rng.integers(0, len(self.tokens), size=(BOOTSTRAP, len(self.tokens)))
        self.seed_runs = [r for r in runs if r["method"] == "random" and r["ft_seed"] == 0 and not r["figure"]]

    def rows(self, label: str) -> np.ndarray:
        """Per-row answer NLL sums of a run ("random": the mean of random's seeds; "base": the base model)."""
        if label == "random":
            return np.mean([r["eval"]["row_nll"] for r in self.seed_runs], axis=0)
        ev = self.base if label == "base" else self.runs[label]["eval"]
        assert ev is not None
        return np.asarray(ev["row_nll"], dtype=float)

    def has(self, label: str) -> bool:
        """Whether the run has finished (random: at least one seed)."""
        return bool(self.seed_runs) if label == "random" else (self.base is not None if label == "base"
                                                                else label in self.runs)

    def nll(self, label: str) -> float:
        """The run's NLL per answer token."""
        return float(self.rows(label).sum() / self.tokens.sum())

    def diff(self, a: str, b: str) -> Diff:
        """NLL of a minus NLL of b, with the paired bootstrap interval."""
        d = self.rows(a) - self.rows(b)
        boot = d[self.samples].sum(axis=1) / self.tokens[self.samples].sum(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return Diff(float(d.sum() / self.tokens.sum()), float(lo), float(hi))

    def seed_nlls(self) -> list[float]:
        """NLL of each random seed."""
        return [self.nll(r["label"]) for r in self.seed_runs]

    def seed_std(self) -> float | None:
        """The spread (sample std) of random's seeds; None with fewer than two."""
        values = self.seed_nlls()
        return statistics.stdev(values) if len(values) > 1 else None

    def verdict(self, label: str) -> tuple[Diff, str]:
        """The run against random's seed mean: the difference and better / tie / worse (module docstring)."""
        d = self.diff(label, "random")
        std = self.seed_std() or 0.0
        if d.sign < 0 and -d.value > 2 * std:
            return d, "better"
        if d.sign > 0 and d.value > 2 * std:
            return d, "worse"
        return d, "tie"


def _main_methods(results: dict) -> list[str]:
    return [m for m in names(results["config"]["methods"]) if m != "random"]


def task_stats(results: dict) -> list[TaskStats]:
    """One TaskStats per (setting, task) with at least one finished run, in the design's order."""
    out = []
    for setting in SETTINGS:
        for task in (t["name"] for t in results["tasks"]):
            runs = [r for r in results["runs"] if r["setting"] == setting and r["task"] == task]
            if runs:
                out.append(TaskStats(setting, task, runs, results["bases"].get(task)))
    return out


def _vs_random(stats: Sequence[TaskStats], methods: Sequence[str]) -> dict[str, list[tuple[TaskStats, Diff, str]]]:
    return {m: [(s, *s.verdict(m)) for s in stats if s.has(m) and s.has("random")] for m in methods}


def _won_tied_lost(stats: Sequence[TaskStats], a: str, b: str) -> tuple[int, int, int]:
    signs = [s.diff(a, b).sign for s in stats if s.has(a) and s.has(b)]
    return signs.count(-1), signs.count(0), signs.count(1)


def _ratio_points(results: dict) -> dict[str, dict[str, dict[float, list[float]]]]:
    """task -> method -> budget ratio -> NLLs (random: one per seed) of the present setting's ratio runs and
    main runs."""
    stats = {s.task: s for s in task_stats(results) if s.setting == "present"}
    out: dict[str, dict[str, dict[float, list[float]]]] = {}
    for task in names(results["config"]["ratio_tasks"]):
        if task not in stats:
            continue
        s = stats[task]
        for r in s.runs.values():
            if r["method"] in RATIO_METHODS and r["ft_seed"] == 0:
                out.setdefault(task, {}).setdefault(r["method"], {}).setdefault(r["ratio"], []).append(
                    s.nll(r["label"]))
    return out


def conclusion(results: dict) -> list[str]:
    """Sentences derived from the numbers: a one-sentence answer, each method against random beyond noise, MoNA
    against each baseline, training noise, the selection ratio, and what is missing."""
    stats = task_stats(results)
    if not stats:
        return ["No run has finished yet."]
    methods = _main_methods(results)
    verdicts = _vs_random(stats, methods)
    lines = _in_short(stats, methods, verdicts)
    parts = []
    for m, rows in verdicts.items():
        if rows:
            better = [f"{s.task} ({s.setting})" for s, _, v in rows if v == "better"]
            worse = sum(v == "worse" for _, _, v in rows)
            parts.append(f"{m} on {len(better)} of {len(rows)}" + (f" ({', '.join(better)})" if better else "")
                         + (f", worse on {worse}" if worse else ""))
    lines.append("Better than random beyond noise (interval below 0 and gain over twice random's seed spread), "
                 "task-settings: " + "; ".join(parts) + "." if parts else
                 "No method besides random has finished a run that random can be compared with yet.")
    for setting in SETTINGS:
        cells = [(m, [d.value for s, d, _ in rows if s.setting == setting]) for m, rows in verdicts.items()]
        cells = [(m, v) for m, v in cells if v]
        if cells:
            best = min(cells, key=lambda mv: statistics.fmean(mv[1]))
            lines.append(f"Mean NLL change against random, {setting} setting: "
                         + ", ".join(f"{m} {statistics.fmean(v):+.3f} ({len(v)} tasks)" for m, v in cells)
                         + f"; lowest: {best[0]}.")
    if "mona" in methods:
        wtl = [(b, _won_tied_lost(stats, "mona", b)) for b in methods if b != "mona"]
        wtl = [(b, c) for b, c in wtl if sum(c)]
        if wtl:
            lines.append("MoNA against each baseline, task-settings won-tied-lost (paired 95 % interval of the NLL "
                         "difference): " + ", ".join(f"{b} {w}-{t}-{lo}" for b, (w, t, lo) in wtl) + ".")
    spread = _training_noise(stats)
    if spread:
        outside = sum(d.sign != 0 for d in spread)
        stds = [v for v in (s.seed_std() for s in stats) if v is not None]
        sizes = [abs(d.value) for d in spread]
        lines.append(f"Training noise: a second fine-tune seed moved the NLL by {statistics.fmean(sizes):.3f} on "
                     f"average (largest {max(sizes):.3f}, {len(spread)} runs; {outside} with an interval excluding 0)"
                     + (f"; random's seed spread averages {statistics.fmean(stds):.3f}" if stds else "") + ".")
    ratio = results["config"].get("ratio")
    form = _share_correlation(stats, ratio, _exact_answers)
    if form:
        lines.append("Answer form, where the answers are a closed set: Spearman correlation over the runs of the "
                     "selection's share of exact answers with the NLL (negative: more exact answers, lower NLL) "
                     + ", ".join(f"{rho:+.2f} on {s.task} ({s.setting}, {n} runs)"
                                                                 for s, rho, n in form) + ".")
    found = _share_correlation(stats, ratio, _found)
    if found:
        hurt = [f"{s.task} ({s.setting}, {rho:+.2f})" for s, rho, _ in found if rho > 0.5]
        lines.append("Relevance against the NLL: Spearman correlation over the runs of the selection's share of the "
                     "task's own and related rows with the NLL (negative: finding the task lowers the NLL) "
                     + ", ".join(f"{rho:+.2f} on {s.task} ({s.setting}, {n} runs)" for s, rho, n in found) + "."
                     + (f" Above +0.5, so the more of the task a selection found the worse it did: "
                        f"{', '.join(hurt)}." if hurt else ""))
    points = _ratio_points(results)
    for task, by_method in points.items():
        if len(by_method.get("mona", {})) > 1 and by_method.get("random"):
            text = ", ".join(
                f"{r:.0%}: mona {by_method['mona'][r][0]:.3f} vs random {statistics.fmean(by_method['random'][r]):.3f}"
                for r in sorted(by_method["mona"]) if r in by_method["random"])
            if text:
                lines.append(f"Selection ratio on {task}: {text}.")
    if results.get("missing"):
        lines.append(f"The run is not complete ({len(results['missing'])} of the design's runs missing): this covers "
                     f"{len(stats)} task-settings of {len(SETTINGS) * len(results['tasks'])}, some of them in part.")
    return lines


def _training_noise(stats: Sequence[TaskStats]) -> list[Diff]:
    """Each second-fine-tune-seed run against the same selection's first seed."""
    return [s.diff(label, label.removesuffix("-ft1")) for s in stats for label, r in s.runs.items()
            if r["ft_seed"] == 1 and s.has(label.removesuffix("-ft1"))]


def _in_short(stats: Sequence[TaskStats], methods: Sequence[str],
              verdicts: dict[str, list[tuple[TaskStats, Diff, str]]]) -> list[str]:
    """The answer to "does selecting with mona train a better model?" in one sentence, from the figures below it:
    mona against random, how the other methods rank on the same count, and how many of mona's differences with
    the baselines are smaller than what a second fine-tune seed alone changes."""
    rows = verdicts.get("mona")
    if not rows:
        return []
    better = {m: sum(v == "better" for _, _, v in r) for m, r in verdicts.items()}
    worse = sum(v == "worse" for _, _, v in rows)
    ahead = [m for m in methods if m != "mona" and better.get(m, 0) > better["mona"]]
    text = (f"In short: fine-tuning on mona's selection gave a lower NLL than random beyond noise on "
            f"{better['mona']} of {len(rows)} task-settings and a higher one on {worse}; "
            + (f"{', '.join(ahead)} did so on more task-settings" if ahead else
               "no other method did so on more task-settings"))
    noise = [abs(d.value) for d in _training_noise(stats)]
    gaps = [abs(s.diff("mona", b).value) for b in methods if b != "mona" for s in stats if s.has("mona") and s.has(b)]
    if noise and gaps:
        size, largest = statistics.fmean(noise), max(noise)
        text += (f". Of mona's {len(gaps)} differences with a baseline, {sum(g < size for g in gaps)} are smaller "
                 f"than the {size:.3f} that a second fine-tune seed alone moves the NLL on average, and "
                 f"{sum(g > largest for g in gaps)} larger than the most it moved ({largest:.3f})")
    return [text + "."]


def _share_correlation(stats: Sequence[TaskStats], ratio: float, share: Callable[[dict], float | None],
                       min_runs: int = 5) -> list[tuple[TaskStats, float, int]]:
    """Per task-setting with at least `min_runs` runs at the main budget `ratio` (first fine-tune seed) for which
    `share` gives a value: the Spearman correlation over those runs of that share of their selections with their
    NLL."""
    from scipy.stats import spearmanr

    out = []
    for s in stats:
        pairs = [(v, s.nll(label)) for label, r in s.runs.items()
                 if r.get("ratio") == ratio and r.get("ft_seed") == 0 and (v := share(r)) is not None]
        if len(pairs) >= min_runs:
            rho = spearmanr(*zip(*pairs, strict=True)).statistic
            if np.isfinite(rho):
                out.append((s, float(rho), len(pairs)))
    return out


def _exact_answers(run: dict) -> float | None:
    """The selection's share of rows whose answer is one of the task's closed set exactly (None: open answers)."""
    return run["answer_form"]["exact"] if run.get("answer_form") else None


def _found(run: dict) -> float | None:
    """The selection's share of rows from the task itself or from its related tasks."""
    if run.get("task_share") is None:
        return None
    return run["task_share"] + run.get("related_share", 0.0)


# ---------------------------------------------------------------- figures


def plot_vs_random(results: dict, path: Path) -> Path | None:
    """NLL change against random's seed mean per task and method, with the bootstrap intervals (one panel per
    setting; the grey band is +-2 std of random's seeds)."""
    stats = task_stats(results)
    methods = [m for m in _main_methods(results) if any(s.has(m) for s in stats)]
    if not stats or not methods:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2 * len(SETTINGS)), layout="constrained")
    axes = fig.subplots(len(SETTINGS), 1, squeeze=False)[:, 0]
    width = 0.8 / len(methods)
    for ax, setting in zip(axes, SETTINGS, strict=True):
        rows = [s for s in stats if s.setting == setting and s.has("random")]
        for x, s in enumerate(rows):
            std = s.seed_std()
            if std:
                ax.fill_between([x - 0.45, x + 0.45], -2 * std, 2 * std, color="0.85", lw=0)
        for i, m in enumerate(methods):
            xs, ds = zip(*[(x, s.diff(m, "random")) for x, s in enumerate(rows) if s.has(m)], strict=True) \
                if any(s.has(m) for s in rows) else ((), ())
            if not xs:
                continue
            offsets = [x - 0.4 + width * (i + 0.5) for x in xs]
            errors = [[d.value - d.lo for d in ds], [d.hi - d.value for d in ds]]
            ax.errorbar(offsets, [d.value for d in ds], yerr=errors, fmt="o", capsize=3, label=m, color=f"C{i}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(rows)), [s.task for s in rows])
        ax.set_ylabel("NLL/token minus random's mean")
        ax.set_title(f"{setting} setting (lower is better; bars: paired bootstrap 95 %; grey: ±2 std of random's "
                     "seeds)")
        ax.legend(fontsize=8, ncols=min(len(methods), 6))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_ratio(results: dict, path: Path) -> Path | None:
    """NLL after fine-tuning on each budget ratio, mona against random (mean and spread of its seeds)."""
    points = _ratio_points(results)
    points = {t: p for t, p in points.items() if any(len(v) > 1 for v in p.values())}
    if not points:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(points), 3.8), layout="constrained")
    axes = fig.subplots(1, len(points), squeeze=False)[0]
    for ax, (task, by_method) in zip(axes, points.items(), strict=True):
        for i, (m, by_ratio) in enumerate(sorted(by_method.items())):
            rs = sorted(by_ratio)
            means = [statistics.fmean(by_ratio[r]) for r in rs]
            stds = [statistics.stdev(by_ratio[r]) if len(by_ratio[r]) > 1 else 0.0 for r in rs]
            ax.errorbar([r * 100 for r in rs], means, yerr=stds, marker="o", capsize=3, label=m, color=f"C{i}")
        ax.set_xscale("log")
        ax.set_xticks([1, 5, 10], ["1 %", "5 %", "10 %"])
        ax.set_xlabel("budget (share of the pool)")
        ax.set_ylabel("NLL per answer token")
        ax.set_title(f"{task} (present setting)")
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------- the report


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _cost(results: dict) -> list[str]:
    """Measured time per step, and what the missing part of the design would take at that pace."""
    runs = results["runs"]
    adapters = {r["adapter"]: r["train_seconds"] for r in runs}
    evals = [r["eval"]["seconds"] for r in runs] + [b["seconds"] for b in results["bases"].values()]
    if not adapters:
        return ["No fine-tune has finished yet."]
    ft = statistics.fmean(adapters.values())
    ev = statistics.fmean(evals)
    tokens = statistics.fmean(r["train_tokens"] for r in runs)
    missing = results.get("missing", [])
    # a missing random run of the present setting shares its fine-tune with the other tasks' (same pool, same rows)
    shared = {m.split()[-1] for m in missing if m.startswith("present ") and " random-s" in m}
    own = [m for m in missing if not (m.startswith("present ") and " random-s" in m) and not m.endswith(" base")]
    left = (len(own) + len(shared)) * ft + len(missing) * ev
    select = sum(r["selection_seconds"] for r in runs)
    return [f"Measured here: a fine-tune {ft:.0f} s on average ({len(adapters)} distinct fine-tunes, "
            f"{tokens:.0f} tokens each on average), an evaluation {ev:.0f} s ({len(evals)} evaluations); the "
            f"selections {select / 60:.0f} min in all (the first run of each LM method featurizes the pool, later "
            "ones read the feature cache).",
            f"Missing: {len(missing)} evaluations and up to {len(own) + len(shared)} fine-tunes, about "
            f"{left / 3600:.1f} h at that pace."]


def _row(cells: Sequence[str]) -> str:
    """A markdown table row."""
    return "| " + " | ".join(cells) + " |"


def _missing(missing: Sequence[str]) -> list[str]:
    """The missing runs, one line per task (base model) or (setting, task)."""
    groups: dict[str, list[str]] = {}
    for m in missing:
        head, _, label = m.rpartition(" ")
        groups.setdefault(head, []).append(label)
    return [f"- {head}: {', '.join(labels)}" for head, labels in groups.items()]


def _tables(results: dict, stats: Sequence[TaskStats], methods: Sequence[str], ratio_figure: str | None
            ) -> list[str]:
    """The report's result tables, from the finished runs."""
    cfg = results["config"]
    lines: list[str] = []
    lines += ["", "## NLL per answer token", "",
              "Lower is better. *random*: mean ± std over its seeds.", "",
              _row(["task", "setting", "base", "random", *methods]), "|---" * (4 + len(methods)) + "|"]
    for s in stats:
        seeds = s.seed_nlls()
        rnd = "-" if not seeds else f"{statistics.fmean(seeds):.3f} ± {s.seed_std() or 0:.3f}"
        if seeds and len(seeds) != len(names(cfg["random_seeds"])):
            rnd += f" ({len(seeds)} of {len(names(cfg['random_seeds']))} seeds)"
        lines.append(_row([s.task, s.setting, _f(s.nll("base") if s.has("base") else None), rnd,
                           *(_f(s.nll(m) if s.has(m) else None) for m in methods)]))
    if methods:  # random alone has nothing to be compared with
        lines += ["", "## Against random", "",
                  "NLL of the method minus random's seed mean, paired bootstrap 95 % interval over the evaluation "
                  "rows, and the verdict (better: interval below 0 and gain over twice random's seed std; worse: the "
                  "reverse; tie otherwise).", "",
                  _row(["task", "setting", "random's seed std", *methods]), "|---" * (3 + len(methods)) + "|"]
        for s in stats:
            if not s.has("random"):
                continue
            cells = []
            for m in methods:
                if s.has(m):
                    d, v = s.verdict(m)
                    cells.append(f"{d.cell()} **{v}**")
                else:
                    cells.append("-")
            lines.append(_row([s.task, s.setting, _f(s.seed_std()), *cells]))
        others = [m for m in methods if m != "mona"]
        if "mona" in methods and others:
            lines += ["", "## MoNA against each baseline", "",
                      "NLL of mona minus the baseline's, paired bootstrap 95 % interval.", "",
                      "| task | setting | " + " | ".join(others) + " |", "|---|---|" + "---|" * len(others)]
            for s in stats:
                if s.has("mona"):
                    lines.append(f"| {s.task} | {s.setting} | "
                                 + " | ".join(s.diff("mona", b).cell() if s.has(b) else "-" for b in others) + " |")
        lines += ["", "## Every method against every other", "",
                  "Task-settings won-tied-lost by the row's method against the column's (paired 95 % interval of the "
                  "NLL difference below 0: won; above: lost).", "",
                  "| method | " + " | ".join([*methods, "random"]) + " |", "|---|" + "---|" * (len(methods) + 1)]
        for a in methods:
            lines.append(f"| {a} | " + " | ".join("" if a == b else "{}-{}-{}".format(*_won_tied_lost(stats, a, b))
                                                  for b in [*methods, "random"]) + " |")
    mc_tasks = [s for s in stats if s.runs and next(iter(s.runs.values()))["eval"]["by_kind"]["mc"]["n"]]
    if mc_tasks:
        lines += ["", "## Accuracy by option log-likelihood", "",
                  "Rows with options: accuracy / mean probability on the right option.", "",
                  _row(["task", "setting", "base", "random mean", *methods]), "|---" * (4 + len(methods)) + "|"]

        def acc(ev: dict | None) -> str:
            if ev is None:
                return "-"
            mc = ev["by_kind"]["mc"]
            return f"{_f(mc['accuracy'])} / {_f(mc['p_correct'])}"

        for s in mc_tasks:
            seeds = [r["eval"]["by_kind"]["mc"] for r in s.seed_runs]
            rnd = (f"{statistics.fmean(m['accuracy'] for m in seeds):.3f} / "
                   f"{statistics.fmean(m['p_correct'] for m in seeds):.3f}") if seeds else "-"
            lines.append(_row([s.task, s.setting, acc(s.base), rnd,
                               *(acc(s.runs[m]["eval"] if m in s.runs else None) for m in methods)]))
    noise = [(s, label) for s in stats for label, r in s.runs.items()
             if r["ft_seed"] == 1 and s.has(label.removesuffix("-ft1"))]
    if noise:
        lines += ["", "## Training noise", "",
                  "The same selection fine-tuned with fine-tune seed 1 (LoRA initialisation and batch order).", "",
                  "| task | setting | method | NLL seed 0 | NLL seed 1 | seed 1 minus seed 0 |",
                  "|---|---|---|---|---|---|"]
        for s, label in noise:
            first = label.removesuffix("-ft1")
            lines.append(f"| {s.task} | {s.setting} | {first} | {s.nll(first):.3f} | {s.nll(label):.3f} | "
                         f"{s.diff(label, first).cell()} |")
    points = _ratio_points(results)
    ratios = sorted({r for p in points.values() for v in p.values() for r in v})
    if len(ratios) > 1:
        figure = f"; figure `{ratio_figure}`." if ratio_figure else "."
        lines += ["", "## Selection ratio", "", "NLL per answer token after fine-tuning on each budget (present "
                  "setting; random: mean over its seeds)" + figure, "",
                  "| task | method | " + " | ".join(f"{r:.0%}" for r in ratios) + " |",
                  "|---|---|" + "---|" * len(ratios)]
        for task, by_method in points.items():
            for m, by_ratio in sorted(by_method.items()):
                lines.append(f"| {task} | {m} | " + " | ".join(
                    _f(statistics.fmean(by_ratio[r]) if r in by_ratio else None) for r in ratios) + " |")
    lines += ["", "## Every run", "",
              "*task* / *related*: share of the selection from the task's own rows / from its related tasks. "
              "*answers*: for a task with a closed answer set, the share of the selection whose answer is one of "
              "the task's answers exactly / only up to case (\"yes\" for \"Yes\").", "",
              "| task | setting | run | NLL | task | related | answers | train loss | train tokens | select s | "
              "train s | eval s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in stats:
        for label, r in s.runs.items():
            losses = r.get("epoch_losses") or []
            form = r.get("answer_form")
            answers = f"{form['exact']:.2f} / {form['other_case']:.2f}" if form else "-"
            lines.append(f"| {s.task} | {s.setting} | {label} | {s.nll(label):.3f} | {r['task_share']:.2f} | "
                         f"{r['related_share']:.2f} | {answers} | {_f(losses[0] if losses else None)} | "
                         f"{r['train_tokens']} | "
                         f"{r['selection_seconds']:.0f} | {r['train_seconds']:.0f} | {r['eval']['seconds']:.0f} |")
    return lines


def write_report(results: dict, command: str, wall_seconds: float, out_dir: Path, figures_dir: Path,
                 name: str = "downstream") -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` into out_dir and the figures `<name>.png`, `<name>-ratio.png` into
    figures_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = task_stats(results)
    methods = [m for m in _main_methods(results) if any(s.has(m) for s in stats)]  # those with a finished run
    cfg, ft, design = results["config"], results["finetune"], results["design"]
    lines_conclusion = conclusion(results)
    fig_main = plot_vs_random(results, figures_dir / f"{name}.png")
    fig_ratio = plot_ratio(results, figures_dir / f"{name}-ratio.png")
    # pieces may run on machines that resolve `auto` differently: say how many fine-tunes ran in which dtype
    dtypes = Counter(str(r["dtype"]) for r in results["runs"] if r.get("dtype"))
    import torch

    dtype = "; ".join(f"{d}: {n} fine-tunes" for d, n in sorted(dtypes.items())) if dtypes else \
        f"{torch.get_default_dtype()} (torch's default; the fine-tunes record none)"
    span = "-" if results.get("span_seconds") is None else f"{results['span_seconds'] / 3600:.2f} h"
    step_seconds = sum({r["adapter"]: r["train_seconds"] for r in results["runs"]}.values()) \
        + sum(r["eval"]["seconds"] + r["selection_seconds"] for r in results["runs"]) \
        + sum(b["seconds"] for b in results["bases"].values())

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, out_dir)).as_posix()

    lines = [f"# Downstream benchmark: {name}", "",
             "What a selection buys after fine-tuning: the NLL per answer token of the reference answers on held-out "
             "rows of each target task (lower is better), after LoRA fine-tuning SmolLM2-135M-Instruct on each "
             "method's selection. Generated by `mona bench downstream`; the design and the statistics are in "
             "`mona/bench/downstream.py` and `mona/bench/downstream_report.py`.", "",
             f"Command: `{command}` (the whole design; it runs in pieces with `--tasks` and `--settings` into the same "
             "work dir, and `--report-only` writes this report from whatever has finished).", "",
             f"Machine: {machine()}; dtype {dtype} (one dtype for every piece: bf16 against fp32 fine-tuning, in "
             "speed and in NLL, is measured in docs/benchmarks/speed.md).", "",
             (f"Wall time: {span} from the run's first start ({results['started']}) to its last evaluation, over "
              "every resumed invocation (the machine was shared with other work at times); "
              if results["started"] else "Wall time: no piece has started in this work dir yet; ")
             + f"{step_seconds / 3600:.2f} h summed over the finished steps; {wall_seconds / 60:.1f} min for the "
             "invocation that wrote this report.", ""]
    if results.get("missing"):
        lines += [f"**Partial report**: {len(results['missing'])} of the design's runs have not finished (listed at "
                  "the end); every figure below is from finished runs only.", ""]
    lines += ["## Design", "",
              f"Pool: {results['pool_rows']} BIG-bench rows from {design['groups']} tasks, {design['per_task']} per "
              f"task, rows of at most {design['max_chars']} characters (seed {design['seed']}): the target tasks, "
              f"the tasks related to them, then distractor tasks ({len(design['distractors'])}). Budget: "
              f"{cfg['ratio']:.0%} of the pool, {results['budget']} rows, in both settings. *present*: the task's own "
              f"{design['per_task']} rows are in the pool ({design['per_task'] / results['pool_rows']:.1%}); "
              "*absent*: they are not, and the related tasks (written down in code before any run) are what a "
              "selection can find.", "",
              f"Fine-tuning (identical for every run): LoRA r {ft['lora_r']} on q/k/v/o, {ft['epochs']} epoch, lr "
              f"{ft['lr']}, max length {ft['max_length']}, {ft['batch_tokens']} padded tokens per batch, fine-tune "
              f"seed 0 (and 1 for {cfg['second_seed']}). Random: seeds {cfg['random_seeds']}. Evaluation: "
              f"{design['eval_rows']} rows per task, neither in the pool nor among the targets; NLL of the reference "
              "answer's tokens; rows with options also by option log-likelihood (accuracy, probability on the right "
              "option)" + ("." if not cfg["max_new_tokens"] else f"; others by exact match of a greedy answer "
                                                                  f"(at most {cfg['max_new_tokens']} tokens)."), "",
              "| task | BIG-bench task | targets' and evaluation rows' format | options | evaluation answers | "
              "related tasks (rows in pool) |", "|---|---|---|---|---|---|"]
    for t in results["tasks"]:
        answers = ", ".join(f"{a} {n}" for a, n in list(t["eval_answers"].items())[:4])
        if len(t["eval_answers"]) > 4:
            answers = f"{len(t['eval_answers'])} distinct"
        options = "/".join(t["answers"]) or {"mc-letter": "letters", "template": "in the prompt"}.get(
            t["kind"], "none (NLL)")
        lines.append(f"| {t['name']} | {t['group']} | {t['kind']} | {options} | {answers} | "
                     f"{', '.join(g.removeprefix('natural_instructions/') for g in t['related'])} "
                     f"({t['related_rows_in_pool']}) |")
    if stats:
        lines += _tables(results, stats, methods, rel(fig_ratio) if fig_ratio else None)
    else:
        lines += ["", "No run has finished yet."]
    lines += ["", "## Cost", "", *_cost(results)]
    if fig_main:
        lines += ["", f"![NLL change against random]({rel(fig_main)})"]
    lines += ["", "## Conclusion", "", "Generated from the numbers above.", "", " ".join(lines_conclusion)]
    if results.get("missing"):
        lines += ["", "## Missing runs", "", *_missing(results["missing"])]
    md_path = out_dir / f"{name}.md"
    write_text(md_path, "\n".join(lines) + "\n")
    data = {"command": command, "machine": machine(), "dtype": dtype, "wall_seconds": round(wall_seconds, 1),
            "conclusion": lines_conclusion,
            "summary": [{"task": s.task, "setting": s.setting, "nll": {lb: s.nll(lb) for lb in s.runs},
                         "base": s.nll("base") if s.has("base") else None, "random_seeds": s.seed_nlls(),
                         "vs_random": {m: {"diff": d.value, "lo": d.lo, "hi": d.hi, "verdict": v}
                                       for m in methods if s.has(m) and s.has("random")
                                       for d, v in [s.verdict(m)]}} for s in stats],
            **{k: v for k, v in results.items() if k not in ("runs", "bases")},
            "runs": [{k: v for k, v in r.items() if k != "eval"} | {"nll": r["eval"]["nll"]} for r in results["runs"]]}
    json_path = out_dir / f"{name}.json"
    write_text(json_path, json.dumps(data, indent=1, default=str) + "\n")
    return json_path, md_path
