"""`mona bench downstream`: what a selection buys after fine-tuning.

For each target task: every method selects the same budget of rows from the labelled BIG-bench pool given 5
target examples, the base model is fine-tuned (LoRA, identical settings) on each selection, and each adapter and
the base model are evaluated on held-out rows of the task that are neither in the pool nor among the targets.
Random selection runs with several seeds, so its spread shows how much of a difference is noise.

Default tasks, picked from the default pool (`build_suite(pool_size=2000, per_task=40, seed=0)`) by looking at
the rows: each has far more rows than the pool takes (so 50 clean evaluation rows remain), short prompts (cheap
to fine-tune and evaluate on a CPU) and a one-word answer whose form or prior a 135M model can learn from 100 rows:
  - strategyqa (2,290 rows, forced into the pool as a knowledge task): a yes/no question; answer "Yes" or "No"
    (53 % No), exact match. The base model answers in sentences, so learning the form alone moves accuracy.
  - object_counting (1,000 rows): "I have a ..., how many ... do I have?"; a number word, exact match.
  - social_support (897 rows): multiple choice (supportive / neutral / unsupportive, 78 % neutral) scored by
    log-likelihood; fine-tuning on the task's rows moves the label prior.
dyck_languages (an in-pool suite target) was tried first and dropped: the base model and the model fine-tuned on
MoNA's selection (all 40 of the task's pool rows) both scored 0/50, copying the sequence instead of closing it.
That fine-tune used `mona finetune`'s defaults (2 epochs, lr 2e-4): 100 rows make 12 optimizer steps and the
training loss only went from 2.83 to 2.70 per epoch, so the reported run passes `--lr 1e-3` (same for every
method) to let 100 rows move the model.

Resumable: every (task, method, seed) selection, adapter and evaluation lands in its own directory under the
run directory and a re-run skips what is finished (an interrupted fine-tune resumes from its checkpoint). The run
directory's name hashes the arguments that decide the results; the tasks, methods and random seeds are not part
of it (each has its own subdirectory), so a re-run with more of them reuses the finished ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mona.bench.relevance import _samples, machine
from mona.bench.suite import _group_of, build_suite
from mona.errors import ConfigError
from mona.features.lm import LMConfig
from mona.finetune.evaluate import evaluate, normalise_answer
from mona.finetune.options import FinetuneConfig
from mona.finetune.sft import finetune
from mona.outputs import atomic_write
from mona.selection.budget import rank
from mona.selection.pipeline import compute_scores
from mona.selection.registry import MethodOptions, get_method

DEFAULT_TASKS = ("strategyqa", "object_counting", "social_support")
DEFAULT_METHODS = ("mona", "random", "bm25", "dense", "hidden")
DEFAULT_RANDOM_SEEDS = (0, 1, 2)


@dataclass
class DownstreamTask:
    """A target task: its group name in the pool, its target examples and its evaluation rows."""

    name: str
    targets: list[dict]
    eval_rows: list[dict]


@dataclass
class DownstreamData:
    """The pool (rows with a `group` label) and the tasks; `config` records how they were built."""

    pool: list[dict]
    tasks: list[DownstreamTask]
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DownstreamConfig:
    """How selections are made, fine-tuned and evaluated (the same for every method)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    random_seeds: tuple[int, ...] = DEFAULT_RANDOM_SEEDS
    budget: int = 100
    model: str | None = None
    sae: str | None = None
    epochs: int | None = None
    lr: float | None = None
    max_new_tokens: int = 16

    def finetune_config(self) -> FinetuneConfig:
        overrides: dict[str, Any] = {"model": self.model}
        if self.epochs is not None:
            overrides["epochs"] = self.epochs
        if self.lr is not None:
            overrides["lr"] = self.lr
        return FinetuneConfig(**overrides)

    def runs(self) -> list[tuple[str, int]]:
        """(method, seed) of every selection; random once per seed, the others with seed 0."""
        out = []
        for method in self.methods:
            seeds = self.random_seeds if method == "random" else (0,)
            out += [(method, s) for s in seeds]
        return out

    def check(self) -> None:
        if not self.methods:
            raise ConfigError("--methods is empty")
        for m in self.methods:
            get_method(m)
        if self.budget < 1:
            raise ConfigError("--budget must be at least 1")
        if "random" in self.methods and not self.random_seeds:
            raise ConfigError("--random-seeds is empty")
        self.finetune_config().check()


def run_label(method: str, seed: int) -> str:
    return f"{method}-s{seed}" if method == "random" else method


# ---------------------------------------------------------------- data


def _group_rows(group: str) -> list[dict]:
    from mona.data.bigbench import load_task, task_index

    return [row for name in sorted(task_index()) if _group_of(name) == group for row in load_task(name)]


def _text_key(row: dict) -> str:
    return " ".join(str(row.get("instruction", "")).split()).casefold()


def held_out(rows: Sequence[dict], exclude: Sequence[dict], n_target: int, n_eval: int, rng: random.Random,
             targets: Sequence[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """(targets, evaluation rows) from `rows`, leaving out those whose id or instruction text is in `exclude`
    (the pool). `targets` given (the suite's held-out rows) are used as they are; the evaluation rows never share
    an id or an instruction with the targets either."""
    taken_ids = {r["id"] for r in exclude}
    taken_texts = {_text_key(r) for r in exclude}
    free = [r for r in rows if r["id"] not in taken_ids and _text_key(r) not in taken_texts]
    rng.shuffle(free)
    if targets is None:
        targets = free[:n_target]
    target_ids = {r["id"] for r in targets}
    target_texts = {_text_key(r) for r in targets}
    evals, seen = [], set()
    for r in free:
        key = _text_key(r)
        if r["id"] in target_ids or key in target_texts or key in seen:
            continue
        seen.add(key)
        evals.append(r)
        if len(evals) == n_eval:
            break
    return list(targets), evals


def build_data(tasks: Sequence[str] = DEFAULT_TASKS, pool_size: int = 2000, per_task: int = 40, n_target: int = 5,
               eval_rows: int = 50, seed: int = 0) -> DownstreamData:
    """The BIG-bench pool of the relevance suite and, per task, 5 target and `eval_rows` evaluation rows held out
    from it (seeded). An in-pool suite target keeps the suite's held-out rows as its targets."""
    suite = build_suite(pool_size=pool_size, per_task=per_task, n_target=n_target, seed=seed)
    suite_targets = {t.name.removeprefix("bb/"): t.rows for t in suite.targets if t.kind == "in-pool"}
    out = []
    for task in tasks:
        rows = _group_rows(task)
        if not rows:
            raise ConfigError(f"no BIG-bench task named {task!r} (a task group such as dyck_languages)")
        rng = random.Random(f"{seed}/{task}")
        targets, evals = held_out(rows, suite.pool, n_target, eval_rows, rng, suite_targets.get(task))
        if len(targets) < n_target or len(evals) < eval_rows:
            raise ConfigError(f"task {task} has too few rows outside the pool for {n_target} targets and "
                              f"{eval_rows} evaluation rows ({len(targets)} and {len(evals)})")
        out.append(DownstreamTask(task, [{**r, "group": task} for r in targets], [{**r, "group": task} for r in evals]))
    config = {"pool_size": pool_size, "per_task": per_task, "n_target": n_target, "eval_rows": eval_rows,
              "seed": seed, "tasks": list(tasks)}
    return DownstreamData(suite.pool, out, config)


def run_key(data: DownstreamData, config: DownstreamConfig) -> str:
    """Hash of everything that decides the results (not the lists of tasks, methods or random seeds)."""
    pool_ids = hashlib.sha256("\n".join(r["id"] for r in data.pool).encode()).hexdigest()
    args = {"data": {k: v for k, v in data.config.items() if k != "tasks"}, "pool_ids": pool_ids,
            "budget": config.budget, "model": config.model, "sae": config.sae,
            "finetune": asdict(config.finetune_config()), "max_new_tokens": config.max_new_tokens}
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the run


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with atomic_write(path) as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False, default=str)
        fh.write("\n")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _finished_training(out: Path) -> dict | None:
    try:
        summary = _read_json(out / "train.json")
    except (OSError, ValueError):
        return None
    return summary if summary.get("finished") and (out / "adapter" / "adapter_config.json").exists() else None


class _Clock:
    def __init__(self, log: Callable[[str], None]) -> None:
        self.t0 = time.perf_counter()
        self.log = log

    def __call__(self, message: str) -> None:
        elapsed = int(time.perf_counter() - self.t0)
        self.log(f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {message}")


def _eval_summary(result: dict) -> dict:
    return {k: result[k] for k in ("n", "accuracy", "by_kind", "seconds")} | _answer_spread(result)


def _answer_spread(result: dict) -> dict:
    """How varied the answers are: the share of rows given the most frequent (normalised) answer."""
    predictions = [normalise_answer(str(p["prediction"])) for p in result.get("predictions", [])]
    if not predictions:
        return {"top_answer": None, "top_answer_share": None}
    top, count = Counter(predictions).most_common(1)[0]
    return {"top_answer": top, "top_answer_share": round(count / len(predictions), 4)}


def majority_accuracy(rows: Sequence[dict]) -> float:
    """Accuracy of always giving the evaluation set's most frequent reference answer."""
    counts = Counter(normalise_answer(str(r["output"])) for r in rows)
    return counts.most_common(1)[0][1] / len(rows) if rows else 0.0


def _evaluated(out: Path, adapter: Path | None, label: str, eval_path: Path, config: DownstreamConfig,
               clock: _Clock) -> dict:
    """The evaluation stored in out/eval.json, run first if missing."""
    path = out / "eval.json"
    if path.exists():
        return _read_json(path)
    clock(f"{label}: evaluating")
    result = evaluate(eval_path, model=config.model, adapter=adapter, max_new_tokens=config.max_new_tokens)
    _write_json(path, result)
    clock(f"{label}: accuracy {result['accuracy']:.3f} on {result['n']} rows ({result['seconds']:.0f} s)")
    return result


def _span(work_dir: Path) -> float | None:
    """Seconds from the run's first start to its last finished evaluation, over every (resumed) invocation."""
    try:
        started = time.mktime(time.strptime(_read_json(work_dir / "run.json")["started"], "%Y-%m-%d %H:%M:%S"))
    except (OSError, ValueError, KeyError):
        return None
    ends = [p.stat().st_mtime for p in work_dir.glob("*/*/eval.json")]
    return round(max(ends) - started, 1) if ends else None


def run_downstream(data: DownstreamData, config: DownstreamConfig, work_dir: Path, cache_dir: Path | None = None,
                   log: Callable[[str], None] = print, only_finished: bool = False) -> dict[str, Any]:
    """Select, fine-tune and evaluate every (task, method, seed), skipping what `work_dir` already holds.
    `only_finished`: run nothing, collect the finished runs only (`complete` tells whether any is missing).
    Returns the results (also written to work_dir/results.json)."""
    config.check()
    clock = _Clock(log)
    work_dir.mkdir(parents=True, exist_ok=True)
    ft_config = config.finetune_config()
    if not (work_dir / "pool.jsonl").exists():
        _write_jsonl(work_dir / "pool.jsonl", data.pool)
    if not (work_dir / "run.json").exists():
        _write_json(work_dir / "run.json", {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "data": data.config,
                                            "budget": config.budget, "model": config.model, "sae": config.sae,
                                            "finetune": asdict(ft_config), "max_new_tokens": config.max_new_tokens})
    pool_samples = _samples(data.pool)
    ids = [s.id for s in pool_samples]
    if len(set(ids)) != len(ids):
        raise ConfigError("the pool's ids are not unique")
    if config.budget > len(data.pool):
        raise ConfigError(f"--budget {config.budget} is larger than the pool ({len(data.pool)} rows)")
    tasks_out = []
    complete = True
    for task in data.tasks:
        tdir = work_dir / task.name.replace("/", "__")
        if not (tdir / "eval.jsonl").exists():
            _write_jsonl(tdir / "targets.jsonl", task.targets)
            _write_jsonl(tdir / "eval.jsonl", task.eval_rows)
        relevant = sum(1 for r in data.pool if r.get("group") == task.name)
        if only_finished and not (tdir / "base" / "eval.json").exists():
            complete = False
            continue
        base = _evaluated(tdir / "base", None, f"{task.name} base model", tdir / "eval.jsonl", config, clock)
        runs = []
        for method, seed in config.runs():
            label = run_label(method, seed)
            rdir = tdir / label
            sel_path, meta_path = rdir / "selection.jsonl", rdir / "selection.json"
            if only_finished and not (meta_path.exists() and (rdir / "eval.json").exists()
                                      and _finished_training(rdir / "ft")):
                complete = False
                continue
            if not meta_path.exists():
                clock(f"{task.name} {label}: selecting {config.budget} rows")
                t0 = time.perf_counter()
                options = MethodOptions(method=method, seed=seed, lm=LMConfig(model=config.model), sae=config.sae)
                scores = compute_scores(pool_samples, _samples(task.targets), options, cache_dir)[0]
                chosen = [data.pool[int(i)] for i in rank(ids, scores)[: config.budget]]
                share = sum(1 for r in chosen if r.get("group") == task.name) / len(chosen)
                _write_jsonl(sel_path, chosen)
                _write_json(meta_path, {"method": method, "seed": seed, "rows": len(chosen), "relevant_share": share,
                                        "seconds": round(time.perf_counter() - t0, 2),
                                        "ids": [r["id"] for r in chosen]})
                clock(f"{task.name} {label}: {share:.0%} of the selection from {task.name} "
                      f"({time.perf_counter() - t0:.0f} s)")
            meta = _read_json(meta_path)
            train = _finished_training(rdir / "ft")
            if train is None:
                clock(f"{task.name} {label}: fine-tuning on {meta['rows']} rows")
                train = finetune(sel_path, rdir / "ft", ft_config)
                clock(f"{task.name} {label}: fine-tuned, final loss {train['final_loss']:.3f} "
                      f"({train['seconds']:.0f} s)")
            result = _evaluated(rdir, rdir / "ft" / "adapter", f"{task.name} {label}", tdir / "eval.jsonl", config,
                                clock)
            runs.append({"label": label, "method": method, "seed": seed, "accuracy": result["accuracy"],
                         "by_kind": result["by_kind"], "relevant_share": meta["relevant_share"],
                         "selection_seconds": meta["seconds"], "train_seconds": train["seconds"],
                         "final_loss": train["final_loss"], "epoch_losses": train.get("epoch_losses"),
                         "eval_seconds": result["seconds"], **_answer_spread(result)})
        tasks_out.append({"name": task.name, "targets": len(task.targets), "eval_rows": len(task.eval_rows),
                          "majority_accuracy": round(majority_accuracy(task.eval_rows), 4),
                          "relevant_in_pool": relevant, "base": _eval_summary(base), "runs": runs})
    step_seconds = sum(r["selection_seconds"] + r["train_seconds"] + r["eval_seconds"]
                       for t in tasks_out for r in t["runs"]) + sum(t["base"]["seconds"] for t in tasks_out)
    results = {"work_dir": str(work_dir), "data": data.config, "pool_rows": len(data.pool),
               "budget": config.budget, "methods": list(config.methods), "random_seeds": list(config.random_seeds),
               "model": config.model, "sae": config.sae, "finetune": asdict(ft_config),
               "max_new_tokens": config.max_new_tokens, "step_seconds": round(step_seconds, 1),
               "started": _read_json(work_dir / "run.json")["started"], "span_seconds": _span(work_dir),
               "complete": complete, "tasks": tasks_out}
    if not only_finished:
        _write_json(work_dir / "results.json", results)
    clock("all steps done" if complete else "report from the finished steps only: some are missing")
    return results


# ---------------------------------------------------------------- report


def method_accuracy(task: dict) -> dict[str, list[float]]:
    """Accuracies per method (several for random: one per seed)."""
    out: dict[str, list[float]] = {}
    for r in task["runs"]:
        out.setdefault(r["method"], []).append(r["accuracy"])
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def conclusion(results: dict) -> list[str]:
    """Sentences derived from the numbers: each method against the base model and against random's spread, MoNA
    against each baseline, and the evaluation set's own sampling noise."""
    tasks = results["tasks"]
    methods = [m for m in results["methods"] if m != "random"]
    accs = [method_accuracy(t) for t in tasks]
    lines = []
    if not tasks:
        return ["No task has finished yet."]
    parts = []
    for m in [*methods, "random"]:
        pairs = [(a[m], t["base"]["accuracy"]) for a, t in zip(accs, tasks, strict=True) if m in a]
        if pairs:
            above = sum(statistics.fmean(v) > b for v, b in pairs)
            parts.append(f"{m} {above} of {len(pairs)}")
    lines.append("Fine-tuned above the base model (random: its mean over seeds), tasks: " + ", ".join(parts) + ".")
    parts = []
    for m in methods:
        both = [a for a in accs if m in a and len(a.get("random", [])) > 1]
        if not both:
            continue
        beat = sum(a[m][0] > _mean_std(a["random"])[0] for a in both)
        beat2 = sum(a[m][0] > _mean_std(a["random"])[0] + 2 * _mean_std(a["random"])[1] for a in both)
        parts.append(f"{m} beats random's mean on {beat} of {len(both)} tasks (by more than 2 std of random's "
                     f"seeds on {beat2})")
    if parts:
        lines.append("; ".join(parts) + ".")
    if "mona" in methods:
        parts = []
        for m in methods:
            if m == "mona":
                continue
            both = [a for a in accs if "mona" in a and m in a]
            if both:
                wins = sum(a["mona"][0] > a[m][0] for a in both)
                ties = sum(a["mona"][0] == a[m][0] for a in both)
                parts.append(f"{m} {wins}-{ties}-{len(both) - wins - ties}")
        if parts:
            lines.append("MoNA against each baseline, tasks won-tied-lost: " + ", ".join(parts) + ".")
    n_eval = min(t["eval_rows"] for t in tasks)
    values = [v for a in accs for vals in a.values() for v in vals]
    p = min(max(statistics.fmean(values), 0.05), 0.95) if values else 0.5
    se = math.sqrt(p * (1 - p) / n_eval)
    noise = 2 * math.sqrt(2) * se
    lines.append(f"Sampling noise of the evaluation set alone: at accuracy ~{p:.2f} on {n_eval} rows one accuracy "
                 f"has a standard error of {se:.3f}, so two runs must differ by more than {noise:.3f} (2 standard "
                 "errors of a difference) before the gap is more than noise.")
    both = [a for a in accs if "mona" in a and a.get("random")]
    if both:
        gaps = [a["mona"][0] - _mean_std(a["random"])[0] for a in both]
        gap = statistics.fmean(gaps)
        beyond = sum(abs(g) > noise for g in gaps)
        text = (f"MoNA minus random's mean, per task: {', '.join(f'{g:+.3f}' for g in gaps)} (mean {gap:+.3f}); "
                f"{beyond} of {len(gaps)} exceed that noise level.")
        if abs(gap) > 1e-9:
            need = math.ceil(8 * p * (1 - p) / gap ** 2)
            text += (f" Resolving a gap of {abs(gap):.3f} on one task would take about {need} evaluation rows "
                     "(2 standard errors of a difference), before the variance of fine-tuning itself.")
        lines.append(text)
    runs = [r for t in tasks for r in t["runs"] if r.get("top_answer_share") is not None]
    if runs:
        collapsed = sum(r["top_answer_share"] >= 0.9 for r in runs)
        above = sum(any(r["accuracy"] > t["majority_accuracy"] for r in t["runs"]) for t in tasks
                    if "majority_accuracy" in t)
        lines.append(f"{collapsed} of {len(runs)} fine-tuned runs gave the same answer to at least 90 % of the rows, "
                     "so their accuracy is the share of rows where that answer is right rather than task skill; "
                     f"some run beats always giving the evaluation set's majority answer on {above} of {len(tasks)} "
                     "tasks.")
    if not results.get("complete", True):
        lines.append("The run is not complete: this report covers the finished steps only.")
    return lines


def write_report(results: dict, command: str, wall_seconds: float, out_dir: Path, name: str = "downstream"
                 ) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n_seeds = len(results["random_seeds"])
    summary = []
    for t in results["tasks"]:
        row: dict[str, Any] = {"task": t["name"], "majority": t.get("majority_accuracy"),
                               "base": t["base"]["accuracy"]}
        for m, vals in method_accuracy(t).items():
            if m == "random":
                mean, std = _mean_std(vals)
                row["random"] = {"mean": round(mean, 4), "std": round(std, 4), "seeds": vals}
            else:
                row[m] = vals[0]
        summary.append(row)
    data = {"command": command, "machine": machine(), "wall_seconds": round(wall_seconds, 1),
            "summary": summary, "conclusion": conclusion(results), **results}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    methods = list(results["methods"])
    cfg, ft = results["data"], results["finetune"]
    span = "-" if results.get("span_seconds") is None else f"{results['span_seconds'] / 60:.1f} min"

    def cell(m: str, v: Any) -> str:
        if v is None:
            return "-"
        if m != "random":
            return f"{v:.3f}"
        text = f"{v['mean']:.3f} ± {v['std']:.3f}"
        return text if len(v["seeds"]) == n_seeds else f"{text} ({len(v['seeds'])} of {n_seeds} seeds)"

    lines = [f"# Downstream benchmark: {name}", "", f"Command: `{command}`", "", f"Machine: {machine()}", "",
             f"Wall time of the whole benchmark: {span} from the run's first start ({results['started']}) to its "
             f"last evaluation, over every resumed invocation; {results['step_seconds'] / 60:.1f} min summed over "
             f"the steps (selection, fine-tuning, evaluation); {wall_seconds / 60:.1f} min for the invocation that "
             "wrote this report.", "",
             f"Pool: {results['pool_rows']} BIG-bench rows, {cfg['per_task']} per task (seed {cfg['seed']}); each "
             f"method selects {results['budget']} rows from {cfg['n_target']} target examples. Fine-tuning: LoRA "
             f"r {ft['lora_r']}, {ft['epochs']} epochs, lr {ft['lr']}, seed {ft['seed']}, model "
             f"{results['model'] or 'embedded SmolLM2-135M-Instruct'}. Evaluation: {cfg['eval_rows']} held-out rows "
             "per task (neither in the pool nor among the targets); multiple choice by log-likelihood, otherwise "
             f"exact match of a greedy answer (at most {results['max_new_tokens']} new tokens). Random: seeds "
             f"{', '.join(map(str, results['random_seeds']))}.", ""]
    if not results.get("complete", True):
        lines += ["**Partial report**: some steps of this run have not finished; missing runs show as -.", ""]
    lines += ["## Accuracy", "",
              "*majority*: always giving the evaluation set's most frequent answer (not a run, a yardstick).", "",
              "| task | majority | base | " + " | ".join("random mean ± std" if m == "random" else m for m in methods)
              + " |", "|---|---|---|" + "---|" * len(methods)]
    for row in summary:
        majority = "-" if row["majority"] is None else f"{row['majority']:.3f}"
        lines.append(f"| {row['task']} | {majority} | {row['base']:.3f} | "
                     + " | ".join(cell(m, row.get(m)) for m in methods) + " |")
    labels = list(dict.fromkeys(r["label"] for t in results["tasks"] for r in t["runs"]))
    lines += ["", "## Share of each selection from the target task", "",
              "The pool holds the number of the task's rows in the second column, so a budget of "
              f"{results['budget']} caps the share at that number / {results['budget']}.", "",
              "| task | task rows in pool | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for t in results["tasks"]:
        share = {r["label"]: f"{r['relevant_share']:.2f}" for r in t["runs"]}
        lines.append(f"| {t['name']} | {t['relevant_in_pool']} | " + " | ".join(share.get(lb, "-") for lb in labels)
                     + " |")
    lines += ["", "## Every run", "",
              "*top answer*: the share of rows given the run's most frequent answer.", "",
              "| task | run | accuracy | share from task | top answer | train loss, epoch 1 → last | select s | "
              "train s | eval s |", "|---|---|---|---|---|---|---|---|---|"]

    def top(r: dict) -> str:
        return "-" if r.get("top_answer_share") is None else f"{r['top_answer_share']:.2f} ({r['top_answer']})"

    for t in results["tasks"]:
        lines.append(f"| {t['name']} | base model | {t['base']['accuracy']:.3f} | - | {top(t['base'])} | - | - | - | "
                     f"{t['base']['seconds']:.0f} |")
        for r in t["runs"]:
            losses = r.get("epoch_losses") or []
            loss = f"{losses[0]:.3f} → {losses[-1]:.3f}" if losses else "-"
            lines.append(f"| {t['name']} | {r['label']} | {r['accuracy']:.3f} | {r['relevant_share']:.2f} | "
                         f"{top(r)} | {loss} | {r['selection_seconds']:.0f} | {r['train_seconds']:.0f} | "
                         f"{r['eval_seconds']:.0f} |")
    lines += ["", "## Conclusion", "", "Generated from the numbers above.", "", " ".join(data["conclusion"])]
    md_path = out_dir / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
