"""The hard relevance suite: targets whose rows differ from the pool's rows of the same task in format, length or
register, as real targets do (few-shot prompts, lettered multiple choice, worked answers, templates, task
definitions). Seeded: the same arguments give the same pool, targets and halves everywhere.

Every target is built from data we have offline and belongs to one kind:
  mc-letter        a BIG-bench multiple-choice task; target rows show lettered options "(A) ..." and answer with
                   the letter, the pool's rows list the options and answer with the option's text;
  few-shot         three held-out examples of a task concatenated into one "Q: ... A: ..." prompt (plain text);
  template         rows wrapped in the Alpaca template ("### Instruction: ... ### Response: ...", plain text);
  ni-definition    a NaturalInstructions subtask whose target rows carry the task definition while its pool rows
                   are bare instances; ni-bare: the reverse (pool rows with the definition, bare target rows);
  worked-answer    lm-eval's exemplars with long step-by-step answers (GSM8K CoT, Minerva math, MBPP, MMLU CoT
                   grouped by subject family) against the pool's short-answer rows of the related BIG-bench tasks
                   (FAMILIES, MMLU_FAMILIES: the relevance mapping, written down before any run);
  in-format        held-out rows of a pool task in the pool's own format (the control; under a quarter).
Relevant rows are the pool rows of the target's task (or family). BIG-bench tasks that BBH is built from, BBH's
exemplars, CHAMP and HumanEval are left out: they are kept for the external checks.

The targets are split into two fixed halves, alternately within each kind after a seeded shuffle: settings are
chosen on half A and reported on both."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict

from mona.bench.suite import Suite, TargetSet
from mona.data.bigbench import load_task, prepare_bigbench, task_index
from mona.data.lm_eval_fewshot import prepare_lm_eval_fewshot

# BIG-bench tasks BBH is built from: reserved for the external checks, never in this suite.
BBH_TASKS = frozenset({
    "boolean_expressions", "causal_judgment", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies_syllogisms_negation", "geometric_shapes", "hyperbaton", "logical_deduction",
    "movie_recommendation", "multistep_arithmetic", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects", "web_of_lies", "word_sorting",
})
# Task families: which BIG-bench tasks count as relevant to each worked-answer target.
FAMILIES: dict[str, frozenset[str]] = {
    "math": frozenset({"arithmetic", "elementary_math_qa", "modified_arithmetic", "mathematical_induction",
                       "chinese_remainder_theorem", "unit_conversion"}),
    "physics": frozenset({"physics", "physical_intuition"}),
    "code": frozenset({"cs_algorithms", "code_line_description", "semantic_parsing_spider",
                       "semantic_parsing_in_context_sparc"}),
    "ethics": frozenset({"moral_permissibility", "simple_ethical_questions", "hhh_alignment"}),
    "logic": frozenset({"logical_fallacy_detection", "logic_grid_puzzle", "analytic_entailment"}),
    "chemistry": frozenset({"periodic_elements"}),
}
MMLU_FAMILIES: dict[str, tuple[str, ...]] = {
    "math": ("abstract_algebra", "college_mathematics", "elementary_mathematics", "high_school_mathematics",
             "high_school_statistics"),
    "physics": ("astronomy", "college_physics", "conceptual_physics", "high_school_physics"),
    "code": ("college_computer_science", "computer_security", "high_school_computer_science", "machine_learning"),
    "ethics": ("business_ethics", "moral_disputes", "moral_scenarios"),
    "logic": ("formal_logic", "logical_fallacies"),
    "chemistry": ("college_chemistry", "high_school_chemistry"),
}
LM_EVAL_FAMILY = {"gsm8k_cot": "math", "minerva_math": "math", "mbpp": "code"}
# targets per kind (the worked-answer and NaturalInstructions counts follow from the data)
KIND_COUNTS = {"mc-letter": 10, "few-shot": 8, "template": 6, "in-format": 8}
NI_SOURCES = 8  # NaturalInstructions subtasks used as targets, each from a different source dataset
NI_PREFIX = "natural_instructions"
ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}")
_OPTIONS = re.compile(r"\nOptions:\n((?:- [^\n]*(?:\n|$))+)")


def lettered(row: dict) -> dict | None:
    """A multiple-choice row with lettered options, answered by the letter (None if it has no options)."""
    match = _OPTIONS.search(row["instruction"])
    if match is None:
        return None
    choices = [line[2:] for line in match.group(1).splitlines() if line.startswith("- ")]
    if row["output"] not in choices or len(choices) > 26:
        return None
    options = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))
    tail = row["instruction"][match.end():]
    question = row["instruction"][:match.start()] + "\n" + options + ("\n" + tail if tail else "")
    letter = chr(65 + choices.index(row["output"]))
    return {"prompt": question.rstrip() + "\nAnswer with the letter of the correct option.",
            "completion": f"({letter})"}


def few_shot(rows: list[dict], per_prompt: int = 3) -> list[dict]:
    """Rows concatenated into few-shot prompts of `per_prompt` examples each, as plain text."""
    return [{"text": "\n\n".join(f"Q: {r['instruction']}\nA: {r['output']}" for r in rows[i:i + per_prompt])}
            for i in range(0, len(rows) - per_prompt + 1, per_prompt)]


def ni_split(instruction: str) -> tuple[str, str] | None:
    """(definition, instance) of a NaturalInstructions row: the instance starts on the line after "Prompt:"."""
    at = instruction.find("Prompt:")
    cut = instruction.find("\n", at) if at >= 0 else -1
    if cut < 0 or not instruction[cut + 1:].strip():
        return None
    return instruction[:cut], instruction[cut + 1:]


def _ni_source(group: str) -> str:
    # "natural_instructions/subtask001_quoref_question_generation" -> "quoref"
    return group.split("/", 1)[1].split("_")[1]


def build_hard_suite(per_task: int = 40, n_target: int = 5, n_distractors: int = 12, seed: int = 0) -> Suite:
    """The hard suite: pool of `per_task` rows per task (targets' tasks, family tasks, `n_distractors` others)."""
    prepare_bigbench()
    rng = random.Random(seed)
    index = task_index()
    files: dict[str, list[str]] = defaultdict(list)
    for name, count in sorted(index.items()):
        if count:
            group = name.replace("__", "/", 1) if name.startswith(NI_PREFIX + "__") else name.split("__", 1)[0]
            files[group].append(name)

    cache: dict[str, list[dict]] = {}

    def rows_of(group: str) -> list[dict]:
        if group not in cache:
            rows = [row for name in files[group] for row in load_task(name)]
            random.Random(f"{seed}/{group}").shuffle(rows)
            cache[group] = rows
        return cache[group]

    held_n = max(n_target, 9)  # few-shot targets use 9 examples (3 prompts of 3)
    need = per_task + held_n
    size = {g: sum(index[n] for n in names) for g, names in files.items()}
    family_tasks = sorted(set().union(*FAMILIES.values()))
    missing = [t for t in family_tasks if size.get(t, 0) < need]
    family_tasks = [t for t in family_tasks if t not in missing]
    eligible = sorted(g for g, n in size.items() if n >= need and not g.startswith(NI_PREFIX)
                      and g not in BBH_TASKS and g not in family_tasks)
    mc = [g for g in eligible if all(lettered(r) is not None for r in rows_of(g)[:need])]
    rng.shuffle(mc)
    chosen: dict[str, list[str]] = {"mc-letter": sorted(mc[:KIND_COUNTS["mc-letter"]])}
    rest = [g for g in eligible if g not in chosen["mc-letter"]]
    rng.shuffle(rest)
    at = 0
    for kind in ("few-shot", "template", "in-format"):
        chosen[kind] = sorted(rest[at:at + KIND_COUNTS[kind]])
        at += KIND_COUNTS[kind]
    distractors = sorted(rest[at:at + n_distractors])

    ni_groups = sorted(g for g, n in size.items() if g.startswith(NI_PREFIX) and n >= need
                       and all(ni_split(r["instruction"]) for r in rows_of(g)[:need]))
    by_source: dict[str, list[str]] = defaultdict(list)
    for g in ni_groups:
        by_source[_ni_source(g)].append(g)
    sources = sorted(by_source)
    rng.shuffle(sources)
    ni_targets = [rng.choice(by_source[s]) for s in sources[:NI_SOURCES]]
    chosen["ni-definition"] = sorted(ni_targets[0::2])
    chosen["ni-bare"] = sorted(ni_targets[1::2])

    pool: list[dict] = []
    held: dict[str, list[dict]] = {}
    groups = sorted(set(family_tasks) | set(distractors) | {g for gs in chosen.values() for g in gs})
    for group in groups:
        rows = rows_of(group)
        if group in chosen["mc-letter"]:
            rows = [r for r in rows if lettered(r) is not None]
        held[group] = rows[:held_n]
        for row in rows[held_n:need]:
            if group in chosen["ni-definition"]:  # the pool holds bare instances of this subtask
                split = ni_split(row["instruction"])
                assert split is not None
                row = {**row, "instruction": split[1]}
            pool.append({**row, "group": group})
    rng.shuffle(pool)
    ids_by_group: dict[str, set[str]] = defaultdict(set)
    for row in pool:
        ids_by_group[row["group"]].add(row["id"])

    def strip(row: dict) -> dict:
        return {"instruction": row["instruction"], "output": row["output"]}

    targets: list[TargetSet] = []
    for g in chosen["mc-letter"]:
        targets.append(TargetSet(f"mc-letter/{g}", "mc-letter", [lettered(r) for r in held[g][:n_target]],
                                 ids_by_group[g]))
    for g in chosen["few-shot"]:
        targets.append(TargetSet(f"few-shot/{g}", "few-shot", few_shot(held[g][:9]), ids_by_group[g]))
    for g in chosen["template"]:
        targets.append(TargetSet(f"template/{g}", "template",
                                 [{"text": ALPACA.format(**strip(r))} for r in held[g][:n_target]], ids_by_group[g]))
    for g in chosen["ni-definition"]:
        targets.append(TargetSet(f"ni-definition/{g.split('/', 1)[1]}", "ni-definition",
                                 [strip(r) for r in held[g][:n_target]], ids_by_group[g]))
    for g in chosen["ni-bare"]:
        bare = [{"instruction": ni_split(r["instruction"])[1], "output": r["output"]}  # type: ignore[index]
                for r in held[g][:n_target]]
        targets.append(TargetSet(f"ni-bare/{g.split('/', 1)[1]}", "ni-bare", bare, ids_by_group[g]))
    fewshot_rows = [json.loads(line) for line in prepare_lm_eval_fewshot().open(encoding="utf-8")]
    family_ids = {f: set().union(*(ids_by_group[t] for t in tasks if t in family_tasks))
                  for f, tasks in FAMILIES.items()}

    def messages(row: dict) -> dict:
        return {"messages": [{"role": "user", "content": row["instruction"]},
                             {"role": "assistant", "content": row["output"]}]}

    for task, family in LM_EVAL_FAMILY.items():
        rows = [messages(r) for r in fewshot_rows if r["task"] == task]
        targets.append(TargetSet(f"worked-answer/{task}", "worked-answer", rows, family_ids[family]))
    for family, subjects in MMLU_FAMILIES.items():
        rows = [{**messages(r), "subtask": r["subtask"]} for r in fewshot_rows
                if r["task"] == "mmlu_cot" and r["subtask"] in subjects]
        targets.append(TargetSet(f"worked-answer/mmlu-{family}", "worked-answer", rows, family_ids[family]))
    for g in chosen["in-format"]:
        targets.append(TargetSet(f"in-format/{g}", "in-format", [strip(r) for r in held[g][:n_target]],
                                 ids_by_group[g]))
    by_kind: dict[str, list[TargetSet]] = defaultdict(list)
    for t in targets:
        by_kind[t.kind].append(t)
    for kind, ts in by_kind.items():
        order = sorted(ts, key=lambda t: t.name)
        random.Random(f"{seed}/halves/{kind}").shuffle(order)
        for i, t in enumerate(order):
            t.half = "AB"[i % 2]
    config = {"suite": "hard", "per_task": per_task, "n_target": n_target, "n_distractors": n_distractors,
              "seed": seed, "groups": groups, "family_tasks_missing": missing,
              "halves": {h: sorted(t.name for t in targets if t.half == h) for h in "AB"}}
    return Suite(pool, targets, config)
