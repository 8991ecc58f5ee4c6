"""`mona bench downstream`: what a selection buys after fine-tuning.

The design (issue 18). Six target tasks from BIG-bench (TASKS), each with 5 target examples and 200 evaluation
rows held out from the pool; four of them give their targets and evaluation rows in another format than the
pool's rows of the task (few-shot prompts, lettered multiple choice, the Alpaca template, a NaturalInstructions
definition the pool rows lack; built with the hard relevance suite's builders), two are in the pool's own format.
Tasks with a closed answer set get evaluation rows balanced over the answers and those answers as options.

The pool: `per_task` rows of each target task, of each task listed as related to one (TASKS[...].related), then
of seeded distractor tasks until `pool_size` rows. Two settings per task: *present* (the whole pool, where the
task's own rows are at most 2 % of it) and *absent* (the pool without them, so a selection must find the related
tasks). Every method selects `ratio` of the whole pool (the same count in both settings) from the targets; the
base model is fine-tuned with LoRA on each selection with identical settings, and every adapter and the base model
are scored on the evaluation rows by the NLL per answer token of the reference answers (and, for rows with
options, accuracy by option log-likelihood and the probability mass on the right option). Random runs with
several seeds. In the present setting, `second_seed` methods are fine-tuned again with another fine-tune seed
(training noise), and mona and random also run at the budgets of `ratio_figure` on `ratio_tasks` (the
selection-ratio figure).

Resumable and splittable: every selection, evaluation and fine-tune lands in its own directory under the work dir
and a re-run skips what is finished (an interrupted fine-tune resumes from its checkpoint), so `--tasks` and
`--settings` subsets can run in separate sessions into the same work dir and `--report-only` reports whatever has
finished. Several processes may run on one work dir at once (one per core, say, each with the same
command): each step is claimed (mona.claims) by the process that does it and the others move on to the next.
Fine-tunes are keyed by the selected rows and the fine-tune seed, so identical selections (random's in
the present setting, whose pool is the same for every task) are trained once. The work dir's default name hashes
what decides the results (the design, budget, model, SAE, fine-tuning and evaluation settings), not which parts run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mona.atomic import atomic_write
from mona.bench.hard_suite import ALPACA, BBH_TASKS, few_shot, lettered, ni_split
from mona.bench.options import DownstreamConfig
from mona.bench.relevance import _samples
from mona.bench.suite import _group_of
from mona.claims import CLAIM_FILE, claim, held, holder
from mona.errors import ConfigError
from mona.features.lm import LMConfig
from mona.finetune.evaluate import evaluate, parse_options
from mona.finetune.options import FinetuneConfig
from mona.finetune.sft import finetune
from mona.selection.budget import rank
from mona.selection.pipeline import compute_scores
from mona.selection.registry import MethodOptions, get_method

SETTINGS = ("present", "absent")
RATIO_METHODS = ("mona", "random")  # the selection-ratio figure compares these two, as the paper's does
MAX_TASK_SHARE = 0.02  # a target task's own rows in the present setting's pool, at most
FEW_SHOT_EXEMPLARS = 2  # solved examples before each few-shot evaluation question
# Tasks too large to load for a few dozen rows each (hundreds of thousands of rows): never distractors.
HUGE_TASK_ROWS = 100_000


@dataclass(frozen=True)
class TaskSpec:
    """A target task of the design: its BIG-bench task (`group`), the format of its targets and evaluation rows
    (`kind`: few-shot, mc-letter, template, ni-definition or in-format, as in the hard relevance suite), its closed
    answer set when it has one, and the pool tasks that count as related to it."""

    name: str
    group: str
    kind: str
    related: tuple[str, ...]
    answers: tuple[str, ...] = ()


# The design, written down before any run: the related tasks are what a selection should find in the absent
# setting (none is itself a target task, so each stays in the pool when its task's rows leave it).
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("strategyqa", "strategyqa", "few-shot", answers=("Yes", "No"),
             related=("general_knowledge", "known_unknowns", "misconceptions", "physics_questions", "hindu_knowledge",
                      "qa_wikidata", "fact_checker", "anachronisms", "human_organs_senses", "timedial")),
    TaskSpec("social_iqa", "social_iqa", "mc-letter",
             related=("social_support", "moral_permissibility", "simple_ethical_questions", "implicatures",
                      "dark_humor_detection", "irony_identification",
                      "natural_instructions/subtask023_cosmosqa_question_generation",
                      "natural_instructions/subtask024_cosmosqa_answer_generation",
                      "natural_instructions/subtask025_cosmosqa_incorrect_answer_generation")),
    TaskSpec("elementary_math_qa", "elementary_math_qa", "template",
             related=("arithmetic", "modified_arithmetic", "unit_conversion", "chinese_remainder_theorem",
                      "mathematical_induction", "simple_arithmetic_json", "simple_arithmetic_json_subtasks",
                      "identify_math_theorems", "unit_interpretation")),
    TaskSpec("qasc_answer", "natural_instructions/subtask041_qasc_answer_generation", "ni-definition",
             related=tuple(f"natural_instructions/subtask{s}" for s in (
                 "036_qasc_topic_word_to_generate_related_fact", "037_qasc_generate_related_fact",
                 "038_qasc_combined_fact", "039_qasc_find_overlapping_words", "040_qasc_question_generation",
                 "042_qasc_incorrect_option_generation"))),
    TaskSpec("vitaminc", "vitaminc_fact_verification", "in-format", answers=("True", "False", "Neither"),
             related=("fact_checker", "epistemic_reasoning", "presuppositions_as_nli", "analytic_entailment",
                      "entailed_polarity")),
    TaskSpec("logical_fallacy", "logical_fallacy_detection", "in-format", answers=("Valid", "Invalid"),
             related=("logic_grid_puzzle", "analytic_entailment", "epistemic_reasoning", "logical_args",
                      "logical_sequence", "evaluating_information_essentiality", "sufficient_information")),
)
TASK_NAMES = tuple(t.name for t in TASKS)


def names(text: str) -> list[str]:
    """The items of a comma-separated option, in order."""
    return [v.strip() for v in text.split(",") if v.strip()]


def chosen_tasks(config: DownstreamConfig, available: Sequence[str] = TASK_NAMES) -> list[str]:
    """The tasks `config.tasks` names (all: every one available); ConfigError when it or `config.ratio_tasks`
    names one that is not available."""
    chosen = list(available) if config.tasks.strip() == "all" else names(config.tasks)
    for n in chosen + names(config.ratio_tasks):
        if n not in available:
            raise ConfigError(f"unknown downstream task {n!r}; the design's tasks: {', '.join(available)}")
    return chosen


def budget(config: DownstreamConfig, pool_rows: int, ratio: float | None = None) -> int:
    """Rows selected at `ratio` (default: config.ratio) of the whole pool."""
    return max(1, round((config.ratio if ratio is None else ratio) * pool_rows))


def _ratio_values(config: DownstreamConfig) -> list[float]:
    try:
        return [float(v) for v in names(config.ratio_figure)]
    except ValueError:
        raise ConfigError(f"--ratio-figure must be comma-separated numbers, got {config.ratio_figure!r}") from None


def check(config: DownstreamConfig, available: Sequence[str] = TASK_NAMES) -> None:
    """Refuse options that cannot run, before any work (`available`: the task names there are)."""
    if not names(config.methods):
        raise ConfigError("--methods is empty")
    for m in names(config.methods) + names(config.second_seed):
        get_method(m)
    chosen_tasks(config, available)
    for s in names(config.settings):
        if s not in SETTINGS:
            raise ConfigError(f"unknown setting {s!r}; choose from {', '.join(SETTINGS)}")
    if "random" in names(config.methods) and not random_seeds(config):
        raise ConfigError("--random-seeds is empty")
    for r in [config.ratio, *_ratio_values(config)]:
        if not 0 < r <= 1:
            raise ConfigError(f"a budget ratio must be in (0, 1], got {r}")
    for name in ("pool_size", "per_task", "n_target", "eval_rows", "max_chars"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if config.max_new_tokens < 0:
        raise ConfigError("--max-new-tokens must be at least 0")
    finetune_config(config).check()


def random_seeds(config: DownstreamConfig) -> list[int]:
    """The random method's seeds."""
    try:
        return [int(s) for s in names(config.random_seeds)]
    except ValueError:
        raise ConfigError(f"--random-seeds must be comma-separated integers, got {config.random_seeds!r}") from None


def finetune_config(config: DownstreamConfig, seed: int = 0) -> FinetuneConfig:
    """The fine-tuning settings every run shares (`seed`: the fine-tune seed)."""
    return FinetuneConfig(model=config.model, epochs=config.epochs, lr=config.lr, max_length=config.max_length,
                          batch_tokens=config.batch_tokens, seed=seed, dtype=config.dtype, device=config.device)


# ---------------------------------------------------------------- data


@dataclass
class DownstreamTask:
    """A target task as built: its spec, target examples, evaluation rows and the ids of its own pool rows."""

    spec: TaskSpec
    targets: list[dict]
    eval_rows: list[dict]
    pool_ids: set[str]

    @property
    def name(self) -> str:
        """The task's name in the design."""
        return self.spec.name


@dataclass
class DownstreamData:
    """The pool (rows with a `group` label) and every task of the design; `config` records how they were built."""

    pool: list[dict]
    tasks: list[DownstreamTask]
    config: dict = field(default_factory=dict)

    def task(self, name: str) -> DownstreamTask:
        """The built task of that name."""
        return next(t for t in self.tasks if t.name == name)

    def pool_for(self, setting: str, task: DownstreamTask) -> list[dict]:
        """The pool of a setting: all of it (present), or without the task's own rows (absent)."""
        return self.pool if setting == "present" else [r for r in self.pool if r["id"] not in task.pool_ids]


def _text_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _fits(row: dict, max_chars: int) -> bool:
    return len(row["instruction"]) + len(row["output"]) <= max_chars


def _usable(spec: TaskSpec, row: dict, max_chars: int) -> bool:
    """Whether a row of a target task can serve in every role its kind gives it (pool, target, evaluation)."""
    if not _fits(row, max_chars):
        return False
    if spec.answers and row["output"] not in spec.answers:
        return False
    if spec.kind == "mc-letter":
        return lettered(row) is not None
    if spec.kind == "ni-definition":
        return ni_split(row["instruction"]) is not None
    return True


def _pool_row(spec: TaskSpec, row: dict) -> dict:
    """A target task's row as the pool holds it (an ni-definition task's pool rows are bare instances)."""
    if spec.kind == "ni-definition":
        split = ni_split(row["instruction"])
        assert split is not None  # _usable checked it
        row = {**row, "instruction": split[1]}
    return {**row, "group": spec.group}


def _targets(spec: TaskSpec, rows: Sequence[dict], n: int) -> list[dict]:
    """`n` target examples in the task's target format from held-out rows (few-shot: 3 rows per prompt)."""
    ids = [f"target/{spec.name}/{i}" for i in range(n)]
    if spec.kind == "few-shot":
        return [{"id": i, **r} for i, r in zip(ids, few_shot(list(rows[: 3 * n])), strict=True)]
    if spec.kind == "mc-letter":
        return [{"id": i, **lettered(r)} for i, r in zip(ids, rows, strict=False)]  # type: ignore[dict-item]
    if spec.kind == "template":
        return [{"id": i, "text": ALPACA.format(instruction=r["instruction"], output=r["output"])}
                for i, r in zip(ids, rows, strict=False)]
    return [{"id": i, "instruction": r["instruction"], "output": r["output"]} for i, r in zip(ids, rows, strict=False)]


def _eval_row(spec: TaskSpec, row: dict, exemplars: Sequence[dict], rng: random.Random) -> dict:
    """An evaluation row in the task's target format (prompt, reference answer, and options where it has them)."""
    instruction, output = row["instruction"], row["output"]
    options = list(spec.answers) or parse_options(instruction)
    if spec.kind == "few-shot":
        shots = [*rng.sample(list(exemplars), FEW_SHOT_EXEMPLARS), {"instruction": instruction, "output": ""}]
        instruction = few_shot(shots, per_prompt=len(shots))[0]["text"].rstrip()
    elif spec.kind == "mc-letter":
        letter = lettered(row)
        assert letter is not None and options is not None  # _usable checked it
        instruction, output = letter["prompt"], letter["completion"]
        options = [f"({chr(65 + i)})" for i in range(len(options))]
    elif spec.kind == "template":
        instruction = ALPACA.format(instruction=instruction, output="").rstrip()
    out = {"id": row["id"], "instruction": instruction, "output": output, "group": spec.group}
    return {**out, "options": options} if options else out


def _balanced(rows: Sequence[dict], answers: Sequence[str], n: int) -> list[dict]:
    """`n` rows, equally many per answer (the first answers take the remainder), the first of each answer in the
    given order and kept in that order (so the answers stay mixed); [] when the rows do not allow it."""
    quota = {a: n // len(answers) + (i < n % len(answers)) for i, a in enumerate(answers)}
    taken: Counter[str] = Counter()
    picked = []
    for r in rows:
        if taken[r["output"]] < quota.get(r["output"], 0):
            taken[r["output"]] += 1
            picked.append(r)
    return picked if len(picked) == n else []


def _group_files() -> dict[str, list[str]]:
    from mona.data.bigbench import prepare_bigbench, task_index

    prepare_bigbench()
    files: dict[str, list[str]] = defaultdict(list)
    for name, count in sorted(task_index().items()):
        if count:
            files[_group_of(name)].append(name)
    return files


def _unique_rows(files: Sequence[str], seed: int, group: str) -> list[dict]:
    """A task's rows in a seeded order, one per distinct instruction text (so no text is in two roles)."""
    from mona.data.bigbench import load_task

    seen: set[str] = set()
    rows = []
    for name in files:
        for row in load_task(name):
            key = _text_key(row["instruction"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
    random.Random(f"{seed}/{group}").shuffle(rows)
    return rows


def build_data(config: DownstreamConfig) -> DownstreamData:
    """The pool and every task of the design (seeded; the same options give the same rows everywhere)."""
    from mona.data.bigbench import task_index

    files = _group_files()
    size = {g: sum(task_index()[n] for n in fs) for g, fs in files.items()}
    targets_groups = {t.group for t in TASKS}
    related = sorted({g for t in TASKS for g in t.related})
    for g in [*targets_groups, *related]:
        if g not in files:
            raise ConfigError(f"the design names BIG-bench task {g!r}, which the BIG-bench data does not have")
        if g in BBH_TASKS:
            raise ConfigError(f"the design names {g!r}, a task reserved for the external BBH checks")
    if set(related) & targets_groups:
        raise ConfigError("a related task of the design is itself a target task")
    pool: list[dict] = []
    tasks = []
    for spec in TASKS:
        rows = [r for r in _unique_rows(files[spec.group], config.seed, spec.group)
                if _usable(spec, r, config.max_chars)]
        n_src = 3 * config.n_target if spec.kind == "few-shot" else config.n_target
        in_pool, target_src, rest = rows[: config.per_task], rows[config.per_task: config.per_task + n_src], \
            rows[config.per_task + n_src:]
        evals_src = _balanced(rest, spec.answers, config.eval_rows) if spec.answers else rest[: config.eval_rows]
        if len(in_pool) < config.per_task or len(target_src) < n_src or len(evals_src) < config.eval_rows:
            raise ConfigError(f"task {spec.name} has too few usable rows (under --max-chars {config.max_chars}) "
                              f"for {config.per_task} pool rows, {config.n_target} targets and {config.eval_rows} "
                              "evaluation rows")
        rng = random.Random(f"{config.seed}/{spec.name}/eval")
        pool += [_pool_row(spec, r) for r in in_pool]
        tasks.append(DownstreamTask(spec, _targets(spec, target_src, config.n_target),
                                    [_eval_row(spec, r, target_src, rng) for r in evals_src],
                                    {r["id"] for r in in_pool}))

    def take(group: str) -> list[dict]:
        rows = [r for r in _unique_rows(files[group], config.seed, group) if _fits(r, config.max_chars)]
        return [{**r, "group": group} for r in rows[: config.per_task]]

    for g in related:
        pool += take(g)
    others = sorted(g for g in files if g not in targets_groups and g not in related and g not in BBH_TASKS
                    and size[g] <= HUGE_TASK_ROWS)
    random.Random(f"{config.seed}/distractors").shuffle(others)
    distractors = []
    for g in others:
        if len(pool) >= config.pool_size:
            break
        rows = take(g)
        if len(rows) >= config.per_task // 2:  # a task that is mostly longer rows than max_chars is left out
            pool += rows
            distractors.append(g)
    if len(pool) < config.pool_size:
        raise ConfigError(f"BIG-bench has too few rows for a pool of {config.pool_size} at --per-task "
                          f"{config.per_task} and --max-chars {config.max_chars}")
    if config.per_task > MAX_TASK_SHARE * len(pool):
        raise ConfigError(f"--per-task {config.per_task} is over {MAX_TASK_SHARE:.0%} of the pool "
                          f"({len(pool)} rows)")
    random.Random(f"{config.seed}/pool").shuffle(pool)
    design = {"pool_size": config.pool_size, "per_task": config.per_task, "n_target": config.n_target,
              "eval_rows": config.eval_rows, "max_chars": config.max_chars, "seed": config.seed,
              "tasks": [asdict(t) for t in TASKS], "distractors": sorted(distractors),
              "groups": len({r["group"] for r in pool})}
    return DownstreamData(pool, tasks, design)


def run_key(data: DownstreamData, config: DownstreamConfig) -> str:
    """Hash of everything that decides the results (not which tasks, settings, methods or seeds run)."""
    pool_ids = hashlib.sha256("\n".join(r["id"] for r in data.pool).encode()).hexdigest()
    ft = asdict(finetune_config(config))
    ft.pop("seed")
    ft.pop("device")
    args = {"data": data.config, "pool_ids": pool_ids, "ratio": config.ratio, "model": config.model,
            "sae": config.sae, "finetune": ft, "max_new_tokens": config.max_new_tokens}
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Run:
    """One fine-tuned run: a method's selection (selection seed, budget ratio) and the fine-tune seed."""

    label: str
    method: str
    seed: int
    ft_seed: int
    ratio: float
    figure: bool = False  # a run of the selection-ratio figure only


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}pct"


def plan(config: DownstreamConfig, setting: str, task: str) -> list[Run]:
    """The runs of one (setting, task), in the order they run: every method (random once per seed), then in the
    present setting the second fine-tune seeds and the selection-ratio figure's budgets (on its tasks)."""
    def label(method: str, seed: int) -> str:
        return f"{method}-s{seed}" if method == "random" else method

    def seeds(method: str) -> list[int]:
        return random_seeds(config) if method == "random" else [0]

    runs = [Run(label(m, s), m, s, 0, config.ratio) for m in names(config.methods) for s in seeds(m)]
    if setting != "present":  # training noise and the ratio figure are measured in the present setting
        return runs
    runs += [Run(f"{label(m, s)}-ft1", m, s, 1, config.ratio) for m in names(config.second_seed)
             for s in seeds(m)[:1]]
    if task in names(config.ratio_tasks):
        runs += [Run(f"{label(m, s)}-{_pct(r)}", m, s, 0, r, figure=True) for r in _ratio_values(config)
                 for m in RATIO_METHODS for s in seeds(m)]
    return runs


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


def eval_summary(result: dict) -> dict:
    """An evaluation's figures without its predictions, plus each row's answer NLL sum and answer tokens (what
    the statistics resample)."""
    preds = result["predictions"]
    return {"n": result["n"], "nll": result["nll"], "accuracy": result["accuracy"], "by_kind": result["by_kind"],
            "seconds": result["seconds"], "row_nll": [p["nll"] for p in preds],
            "row_tokens": [p["answer_tokens"] for p in preds]}


def _evaluated(path: Path, adapter: Path | None, label: str, eval_path: Path, config: DownstreamConfig,
               clock: _Clock) -> dict:
    """The evaluation summary stored at `path`, run first if missing (the full predictions go beside it)."""
    if path.exists():
        return _read_json(path)
    clock(f"{label}: evaluating")
    result = evaluate(eval_path, model=config.model, adapter=adapter, max_new_tokens=config.max_new_tokens,
                      device=config.device)
    _write_json(path.with_name("predictions.json"), result["predictions"])
    summary = eval_summary(result) | {"finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_json(path, summary)
    clock(f"{label}: NLL {result['nll']:.4f} per answer token on {result['n']} rows ({result['seconds']:.0f} s)")
    return summary


def _started(work_dir: Path) -> str | None:
    """When the run first started (None before it has)."""
    try:
        return _read_json(work_dir / "run.json")["started"]
    except (OSError, ValueError, KeyError):
        return None


def _finished_at(path: Path) -> float:
    """When an evaluation finished: its own record (which survives copying), else the file's time."""
    try:
        return time.mktime(time.strptime(_read_json(path)["finished"], "%Y-%m-%d %H:%M:%S"))
    except (OSError, ValueError, KeyError):
        return path.stat().st_mtime


def _span(work_dir: Path) -> float | None:
    """Seconds from the run's first start to its last finished evaluation, over every (resumed) invocation."""
    started_at = _started(work_dir)
    if started_at is None:
        return None
    started = time.mktime(time.strptime(started_at, "%Y-%m-%d %H:%M:%S"))
    ends = [_finished_at(p) for p in work_dir.glob("**/eval.json")]
    return round(max(ends) - started, 1) if ends else None


def _selection(pool: list[dict], task: DownstreamTask, run: Run, n: int, config: DownstreamConfig,
               cache_dir: Path | None) -> tuple[list[dict], float]:
    """The `n` rows `run`'s method ranks highest for the task's targets, and the seconds it took."""
    t0 = time.perf_counter()
    lm = LMConfig(model=config.model, dtype=config.dtype, device=config.device)
    options = MethodOptions(method=run.method, seed=run.seed, lm=lm, sae=config.sae)
    samples = _samples(pool)
    scores = compute_scores(samples, _samples(task.targets), options, cache_dir)[0]
    chosen = [pool[int(i)] for i in rank([s.id for s in samples], scores)[:n]]
    return chosen, time.perf_counter() - t0


def _adapter_dir(work_dir: Path, selection: Path, ft_seed: int) -> Path:
    """Where the fine-tune of a selection lives: keyed by the selected rows (the file's bytes) and the seed."""
    digest = hashlib.sha256(selection.read_bytes()).hexdigest()[:16]
    return work_dir / "adapters" / f"{digest}-ft{ft_seed}"


def _train_record(ft_dir: Path, train: dict) -> dict:
    """What the results keep of a fine-tune (the run's train.json: the run stays reportable without its adapter)."""
    return {"adapter": ft_dir.name, "seconds": train["seconds"], "tokens": train["tokens"],
            "rows_truncated": train["rows_truncated"], "epoch_losses": train["epoch_losses"],
            "dtype": train.get("dtype")}


CLOSED_ANSWERS = 10  # at most this many distinct evaluation answers: a closed set whose form the picks can teach


def answer_form(ids: Sequence[str], pool: Sequence[dict], task: DownstreamTask) -> dict[str, float] | None:
    """For a task whose evaluation answers are a closed set: the share of the picks whose answer is one of them
    exactly, and the share that is one only up to case ("yes" for "Yes"). Fine-tuning on the latter teaches a
    form that the NLL of the reference answers punishes. None for open answers."""
    answers = {str(r["output"]).strip() for r in task.eval_rows}
    if not ids or len(answers) > CLOSED_ANSWERS:
        return None
    lower = {a.lower() for a in answers}
    by_id = {r["id"]: r for r in pool}
    outputs = [str(by_id[i].get("output", "")).strip() for i in ids]
    exact = sum(o in answers for o in outputs)
    other_case = sum(o not in answers and o.lower() in lower for o in outputs)
    return {"exact": exact / len(outputs), "other_case": other_case / len(outputs)}


def _run_one(work_dir: Path, rdir: Path, name: str, pool: list[dict], task: DownstreamTask, run: Run, n: int,
             config: DownstreamConfig, cache_dir: Path | None, clock: _Clock) -> dict:
    """Select (unless rdir holds the selection), fine-tune (unless the selection's adapter exists) and evaluate
    (unless rdir holds the evaluation) one run; its record for the results. A run whose directory holds its
    records (selection.json, train.json, eval.json) is finished without its bulky files (the selected rows, the
    adapter), so a work dir's records alone, copied to another machine, resume the run there."""
    sel_path, meta_path, train_path = rdir / "selection.jsonl", rdir / "selection.json", rdir / "train.json"
    if not meta_path.exists():
        clock(f"{name}: selecting {n} of {len(pool)} rows")
        chosen, seconds = _selection(pool, task, run, n, config, cache_dir)
        _write_jsonl(sel_path, chosen)
        related = set(task.spec.related)
        _write_json(meta_path, {
            "method": run.method, "seed": run.seed, "rows": len(chosen), "seconds": round(seconds, 2),
            "task_share": sum(r["group"] == task.spec.group for r in chosen) / len(chosen),
            "related_share": sum(r["group"] in related for r in chosen) / len(chosen),
            "ids": [r["id"] for r in chosen]})
    meta = _read_json(meta_path)
    if (rdir / "eval.json").exists() and train_path.exists():
        train = _read_json(train_path)
    else:
        if not sel_path.exists():  # records carried without the rows: the pool is rebuilt identically
            by_id = {r["id"]: r for r in pool}
            _write_jsonl(sel_path, [by_id[i] for i in meta["ids"]])
        ft_dir = _adapter_dir(work_dir, sel_path, run.ft_seed)
        summary = _finished_training(ft_dir)
        if summary is None:
            # another run with the same selection (random's, in another task) may be training it: wait for it
            with claim(ft_dir.with_name(ft_dir.name + CLAIM_FILE), wait=True):
                summary = _finished_training(ft_dir)
                if summary is None:
                    clock(f"{name}: fine-tuning on {meta['rows']} rows ({ft_dir.name})")
                    summary = finetune(sel_path, ft_dir, finetune_config(config, run.ft_seed))
                    clock(f"{name}: fine-tuned, loss {summary['epoch_losses'][0]:.3f} ({summary['seconds']:.0f} s)")
        train = _train_record(ft_dir, summary)
        _write_json(train_path, train)
        _evaluated(rdir / "eval.json", ft_dir / "adapter", name, work_dir / "tasks" / task.name / "eval.jsonl",
                   config, clock)
    result = _read_json(rdir / "eval.json")
    return {"adapter": train["adapter"], "rows": meta["rows"], "task_share": meta["task_share"],
            "related_share": meta["related_share"], "answer_form": answer_form(meta["ids"], pool, task),
            "selection_seconds": meta["seconds"],
            "train_seconds": train["seconds"], "train_tokens": train["tokens"],
            "rows_truncated": train["rows_truncated"], "epoch_losses": train["epoch_losses"],
            "dtype": train["dtype"], "eval": result}


def _task_files(tdir: Path, task: DownstreamTask) -> None:
    """Write the task's targets and evaluation rows, or check that the work dir's are these (records carried
    from another machine must be of the same data)."""
    for fname, rows in (("targets.jsonl", task.targets), ("eval.jsonl", task.eval_rows)):
        path = tdir / fname
        if not path.exists():
            _write_jsonl(path, rows)
        elif [json.loads(line) for line in path.open(encoding="utf-8")] != list(rows):
            raise ConfigError(f"{path} differs from the design's {task.name} rows built here: the work dir was "
                              "made from other data; use another --work-dir")


@contextlib.contextmanager
def _claimed(rdir: Path, finished: bool, name: str, busy: list[str], clock: _Clock) -> Iterator[bool]:
    """Whether this process does the step in `rdir`: a finished step is only read (no claim); an unfinished one
    is this process's if it takes the step's claim, else it is left to the process holding it (and noted in
    `busy`). So several invocations on one work dir share the steps."""
    if finished:
        yield True
        return
    with claim(rdir / CLAIM_FILE) as mine:
        if not mine:
            clock(f"{name}: left to {holder(rdir / CLAIM_FILE)}")
            busy.append(name)
        yield mine


def _steps(data: DownstreamData, config: DownstreamConfig) -> Iterator[tuple[str, DownstreamTask, list[Run]]]:
    for setting in names(config.settings):
        for name in chosen_tasks(config, [t.name for t in data.tasks]):
            yield setting, data.task(name), plan(config, setting, name)


def run_downstream(data: DownstreamData, config: DownstreamConfig, work_dir: Path, cache_dir: Path | None = None,
                   log: Callable[[str], None] = print, only_finished: bool = False) -> dict[str, Any]:
    """Select, fine-tune and evaluate every run of the chosen tasks and settings, skipping what `work_dir`
    already holds. `only_finished`: run nothing, collect what has finished (the rest is listed in `missing`).
    Returns the results (also written to work_dir/results.json unless `only_finished`)."""
    check(config, [t.name for t in data.tasks])
    clock = _Clock(log)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not (work_dir / "pool.jsonl").exists() and not only_finished:
        _write_jsonl(work_dir / "pool.jsonl", data.pool)
    if not (work_dir / "run.json").exists() and not only_finished:  # a report does not start the clock
        _write_json(work_dir / "run.json", {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "design": data.config,
                                            "ratio": config.ratio, "model": config.model, "sae": config.sae,
                                            "finetune": asdict(finetune_config(config)),
                                            "max_new_tokens": config.max_new_tokens})
    if len({r["id"] for r in data.pool}) != len(data.pool):
        raise ConfigError("the pool's ids are not unique")
    main_budget = budget(config, len(data.pool))
    bases: dict[str, dict] = {}
    runs_out: list[dict] = []
    missing: list[str] = []
    failed: list[str] = []
    busy: list[str] = []  # steps another process holds (their records come from it)
    for setting, task, runs in _steps(data, config):
        tdir = work_dir / "tasks" / task.name
        _task_files(tdir, task)
        base_name = f"{task.name} base"
        if task.name not in bases and base_name not in missing and base_name not in busy:  # once per task
            base_path = tdir / "base" / "eval.json"
            if only_finished and not base_path.exists():
                missing.append(base_name)
            else:
                with _claimed(base_path.parent, base_path.exists(), base_name, busy, clock) as mine:
                    if mine:
                        bases[task.name] = _evaluated(base_path, None, f"{task.name} base model",
                                                      tdir / "eval.jsonl", config, clock)
        pool = data.pool_for(setting, task)
        for run in runs:
            name = f"{setting} {task.name} {run.label}"
            rdir = work_dir / setting / task.name / run.label
            finished = (rdir / "eval.json").exists() and (rdir / "train.json").exists()
            if only_finished and not finished:
                missing.append(name)
                if held(rdir / CLAIM_FILE):
                    clock(f"{name}: running now, {holder(rdir / CLAIM_FILE)}")
                continue
            n = main_budget if run.ratio == config.ratio else budget(config, len(data.pool), run.ratio)
            with _claimed(rdir, finished, name, busy, clock) as mine:
                if not mine:
                    continue
                try:
                    runs_out.append({"setting": setting, "task": task.name, **asdict(run),
                                     **_run_one(work_dir, rdir, name, pool, task, run, n, config, cache_dir, clock)})
                except Exception as exc:  # one method failing must not stop the others of a long background run
                    clock(f"{name}: FAILED: {type(exc).__name__}: {exc}")
                    failed.append(f"{name}: {type(exc).__name__}: {exc}")
    results = {"work_dir": str(work_dir), "design": data.config, "pool_rows": len(data.pool),
               "budget": main_budget, "config": asdict(config), "finetune": asdict(finetune_config(config)),
               "started": _started(work_dir), "span_seconds": _span(work_dir),
               "tasks": [{"name": t.name, "group": t.spec.group, "kind": t.spec.kind, "answers": list(t.spec.answers),
                          "related": list(t.spec.related), "targets": len(t.targets), "eval_rows": len(t.eval_rows),
                          "task_rows_in_pool": len(t.pool_ids),
                          "related_rows_in_pool": sum(r["group"] in set(t.spec.related) for r in data.pool),
                          "eval_answers": dict(Counter(r["output"] for r in t.eval_rows).most_common())}
                         for t in data.tasks],
               "bases": bases, "runs": runs_out, "missing": missing, "failed": failed, "busy": busy,
               "complete": not missing and not failed and not busy}
    if not only_finished:
        _write_json(work_dir / "results.json", results)
    clock(f"{len(busy)} steps left to the other processes on this work dir" if busy else
          "all steps done" if not missing else f"report from the finished steps: {len(missing)} missing")
    return results
