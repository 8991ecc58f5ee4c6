"""The options of the benchmarks, with their defaults (imports nothing heavy: the command line builds its
options from these classes)."""

from __future__ import annotations

from dataclasses import dataclass

from mona.config import opt
from mona.features.options import LAYER_HELP


@dataclass(frozen=True)
class RelevanceConfig:
    """What `mona bench relevance` compares: methods, or MoNA's variants (with a sweep), on which suite."""

    methods: str = opt("mona,mona-paper,neurons,hidden,dense,bm25,dsir,random",
                       "Comma-separated methods (see `mona methods`).")
    suite: str = opt("hard", "hard: cross-format targets (see mona.bench.hard_suite); easy: the first dev suite, "
                             "mostly in the pool's own format.")
    k: int | None = opt(None, "Budget: rows selected per target set (default: the suite's rows per task).")
    pool_size: int = opt(5000, "Rows in the labelled pool (easy suite).")
    per_task: int | None = opt(None, "Pool rows per BIG-bench task (default: 40 hard, 100 easy).")
    seed: int = opt(0, "Seed of the pool and target sets.")
    layer: int | None = opt(None, "LM methods: " + LAYER_HELP)
    render: str = opt("chat", "chat or plain.")
    similarity: str | None = opt(None, "Override every method's similarity.")
    prototype: str | None = opt(None, "single, max or per-subtask (see `mona select`; default: each method's).")
    pooling: str | None = opt(None, "Token pooling for LM methods: mean, sum or max (default: each method's).")
    k_codes: int | None = opt(None, "Keep the k largest SAE codes per token (K sweep).")
    sae: str | None = opt(None, "SAE directory for mona.")
    diversity: float = opt(0.0, "MMR weight for every method with vectors (see `mona select --diversity`).")
    name: str | None = opt(None, "Report name (default: relevance or relevance-sweep, with -easy for the easy "
                                 "suite).")

    @property
    def method_names(self) -> list[str]:
        """The methods, in order."""
        return [m.strip() for m in self.methods.split(",") if m.strip()]


@dataclass(frozen=True)
class DownstreamConfig:
    """What `mona bench downstream` runs: which part of the design (tasks, settings, methods), the budget, and
    the fine-tuning and evaluation settings (the same for every method). The design itself (tasks, formats,
    related tasks, pool) is `mona.bench.downstream.TASKS` and `build_data`."""

    tasks: str = opt("all", "Comma-separated target tasks of the design to run (see mona.bench.downstream.TASKS), "
                            "or all; the pool is always the whole design's.")
    settings: str = opt("present,absent", "present: the task's own rows are in the pool; absent: they are not, "
                                          "so a selection must find related tasks.")
    methods: str = opt("mona,mona-paper,dense,bm25,hidden,dsir,random", "Comma-separated methods (see `mona "
                                                                         "methods`).")
    random_seeds: str = opt("0,1,2", "Seeds of the random method, comma-separated.")
    second_seed: str = opt("mona,hidden", "Methods fine-tuned again with fine-tune seed 1 to measure training "
                                          "noise: mona and the strongest baseline (hidden on the hard relevance "
                                          "suite).")
    ratio: float = opt(0.05, "Budget: the share of the whole pool each method selects (the same count in both "
                             "settings).")
    ratio_figure: str = opt("0.01,0.1", "Further budgets of the selection-ratio figure (mona and random, present "
                                        "setting); empty: none.")
    ratio_tasks: str = opt("strategyqa,social_iqa", "Tasks of the selection-ratio figure.")
    pool_size: int = opt(5000, "Rows in the pool at least: the design's tasks and their related tasks, then "
                               "distractor tasks until this many.")
    per_task: int = opt(80, "Pool rows per BIG-bench task (a target task's rows must be at most 2 % of the pool).")
    n_target: int = opt(5, "Target examples per task.")
    eval_rows: int = opt(200, "Held-out evaluation rows per task (neither in the pool nor among the targets).")
    max_chars: int = opt(1200, "Longest row (instruction + answer, characters) taken into the pool, targets and "
                               "evaluation rows, so fine-tuning stays cheap and no row is cut.")
    seed: int = opt(0, "Seed of the pool, targets and evaluation rows.")
    epochs: int = opt(1, "Fine-tuning epochs.")
    lr: float = opt(1e-3, "Fine-tuning peak learning rate.")
    max_length: int = opt(384, "Fine-tuning tokens per row.")
    batch_tokens: int = opt(1024, "Fine-tuning padded tokens per batch.")
    max_new_tokens: int = opt(0, "Greedy answer length for exact match on rows without options (0: none; the NLL "
                                 "of the reference answer is the metric).")
    model: str | None = opt(None, "Selection and fine-tuned model (default: embedded SmolLM2-135M-Instruct).")
    sae: str | None = opt(None, "SAE directory for mona.")
    name: str = opt("downstream", "Report name (<name>.md, <name>.json; figures <name>.png, <name>-ratio.png).")
