"""The relevance benchmark's labelled pool and dev suite, built from BIG-bench and lm-eval's few-shot
exemplars. Seeded, so the same arguments give the same pool and targets everywhere.

Target sets, each with the pool rows that count as relevant:
  (a) in-pool: held-out rows of a BIG-bench task that is in the pool -> that task's pool rows;
  (b) natural-instructions: held-out rows of a NaturalInstructions subtask in the pool -> its pool rows;
  (c) lm-eval: GSM8K CoT exemplars -> the pool's arithmetic/math tasks (MATH_TASKS); MMLU CoT exemplars
      (57 subjects) -> the pool's knowledge tasks (KNOWLEDGE_TASKS). BBH exemplars are left out on purpose:
      they are kept for an external check.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from mona.data.bigbench import load_task, prepare_bigbench, task_index
from mona.data.lm_eval_fewshot import prepare_lm_eval_fewshot

# Which BIG-bench tasks are relevant to the lm-eval targets (the mapping the issue asks to write down).
MATH_TASKS = frozenset({
    "arithmetic", "elementary_math_qa", "modified_arithmetic", "multistep_arithmetic", "simple_arithmetic_json",
    "simple_arithmetic_json_multiple_choice", "simple_arithmetic_json_subtasks",
    "simple_arithmetic_multiple_targets_json", "mathematical_induction", "chinese_remainder_theorem",
    "unit_conversion", "identify_math_theorems",
})
KNOWLEDGE_TASKS = frozenset({
    "general_knowledge", "hindu_knowledge", "physics_questions", "physics", "qa_wikidata", "known_unknowns",
    "misconceptions", "human_organs_senses", "periodic_elements", "international_phonetic_alphabet_nli",
    "anachronisms", "timedial", "strategyqa",
})
NI_PREFIX = "natural_instructions"


@dataclass
class TargetSet:
    """A target task: its examples and the pool ids that count as relevant."""

    name: str
    kind: str  # easy suite: in-pool | natural-instructions | lm-eval; hard suite: see hard_suite
    rows: list[dict]
    relevant: set[str]
    subtask_field: str = "subtask"
    half: str = ""  # the hard suite's fixed halves: "A" (settings chosen here) or "B"


@dataclass
class Suite:
    """The labelled pool and the dev suite."""

    pool: list[dict]
    targets: list[TargetSet]
    config: dict = field(default_factory=dict)


def _group_of(name: str) -> str:
    """Top-level task for a task file name; each NaturalInstructions subtask is its own group."""
    if name.startswith(NI_PREFIX + "__"):
        return name.replace("__", "/", 1)
    return name.split("__", 1)[0]


def build_suite(pool_size: int = 5000, per_task: int = 100, n_target: int = 5, n_in_pool: int = 8,
                n_ni: int = 5, seed: int = 0) -> Suite:
    """Build the pool (about `pool_size` rows, `per_task` per task) and the target sets."""
    prepare_bigbench()
    rng = random.Random(seed)
    files_by_group: dict[str, list[str]] = defaultdict(list)
    for name, count in sorted(task_index().items()):
        if count:
            files_by_group[_group_of(name)].append(name)

    def rows_of(group: str) -> list[dict]:
        return [row for name in files_by_group[group] for row in load_task(name)]

    need = per_task + n_target
    sizes = {g: sum(task_index()[n] for n in files) for g, files in files_by_group.items()}
    eligible = sorted(g for g, n in sizes.items() if n >= need)
    ni = [g for g in eligible if g.startswith(NI_PREFIX)]
    other = [g for g in eligible if not g.startswith(NI_PREFIX)]
    forced = sorted(g for g in other if g in MATH_TASKS or g in KNOWLEDGE_TASKS)
    n_groups = max(1, pool_size // per_task)
    n_other = max(0, n_groups - n_ni - len(forced))
    rest = [g for g in other if g not in forced]
    chosen = forced + rng.sample(rest, min(n_other, len(rest)))
    ni_chosen = rng.sample(ni, min(n_ni, len(ni)))
    pool: list[dict] = []
    held: dict[str, list[dict]] = {}
    for group in sorted(chosen + ni_chosen):
        rows = rows_of(group)
        rng.shuffle(rows)
        held[group] = rows[:n_target]
        for row in rows[n_target:need]:
            pool.append({**row, "group": group})
    rng.shuffle(pool)
    ids_by_group: dict[str, set[str]] = defaultdict(set)
    for row in pool:
        ids_by_group[row["group"]].add(row["id"])
    targets: list[TargetSet] = []
    in_pool = rng.sample(sorted(rest_g for rest_g in chosen if rest_g not in forced), min(n_in_pool, n_other))
    for group in sorted(in_pool) + sorted(forced[:0]):
        targets.append(TargetSet(f"bb/{group}", "in-pool", held[group], ids_by_group[group]))
    for group in sorted(ni_chosen):
        targets.append(TargetSet(f"ni/{group.split('/', 1)[1]}", "natural-instructions", held[group],
                                 ids_by_group[group]))
    fewshot = [json.loads(line) for line in prepare_lm_eval_fewshot().open(encoding="utf-8")]
    math_ids = set().union(*(ids_by_group[g] for g in chosen if g in MATH_TASKS))
    knowledge_ids = set().union(*(ids_by_group[g] for g in chosen if g in KNOWLEDGE_TASKS))
    targets.append(TargetSet("lm-eval/gsm8k_cot", "lm-eval", [r for r in fewshot if r["task"] == "gsm8k_cot"],
                             math_ids))
    targets.append(TargetSet("lm-eval/mmlu_cot", "lm-eval", [r for r in fewshot if r["task"] == "mmlu_cot"],
                             knowledge_ids))
    config = {"pool_size": pool_size, "per_task": per_task, "n_target": n_target, "n_in_pool": n_in_pool,
              "n_ni": n_ni, "seed": seed, "groups": sorted(chosen + ni_chosen)}
    return Suite(pool, targets, config)


SUITES = ("hard", "easy")


def load_suite(name: str = "hard", *, pool_size: int = 5000, per_task: int | None = None, seed: int = 0) -> Suite:
    """A suite by name: "hard" (cross-format targets, the default) or "easy" (mostly in the pool's own format).
    `pool_size` applies to the easy suite; the hard one's pool follows from its targets (per_task rows each)."""
    if name == "hard":
        from mona.bench.hard_suite import build_hard_suite

        return build_hard_suite(per_task=per_task or 40, seed=seed)
    if name == "easy":
        return build_suite(pool_size=pool_size, per_task=per_task or 100, seed=seed)
    from mona.errors import ConfigError

    raise ConfigError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
