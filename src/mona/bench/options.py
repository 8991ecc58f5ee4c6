"""The options of the benchmarks, with their defaults (imports nothing heavy: the command line builds its
options from these classes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mona.config import DEVICES, comma_ints, opt
from mona.errors import ConfigError
from mona.features.options import LAYER_HELP, LMConfig

REPORTS = Path("docs/benchmarks")  # where the benchmarks write their reports unless told otherwise


@dataclass(frozen=True)
class RelevanceConfig:
    """What `mona bench relevance` compares: methods, or MoNA's variants (with a sweep), on which suite."""

    methods: str = opt("mona,mona-paper,neurons,hidden,dense,bm25,rds,dsir,random",
                       "Comma-separated methods (see `mona methods`).")
    suite: str = opt("hard", "hard: cross-format targets (see mona.bench.hard_suite); easy: the first dev suite, "
                             "mostly in the pool's own format.")
    k: int | None = opt(None, "Budget: rows selected per target set (default: the suite's rows per task).")
    pool_size: int = opt(5000, "Rows in the labelled pool (easy suite).")
    per_task: int | None = opt(None, "Pool rows per BIG-bench task (default: 40 hard, 100 easy).")
    seed: int = opt(0, "Seed of the pool and target sets.")
    layer: int | None = opt(None, "LM methods: " + LAYER_HELP)
    render: str = opt(LMConfig().render, "LM input rendering: chat or plain.")
    similarity: str | None = opt(None, "Override every method's similarity.")
    prototype: str | None = opt(None, "single, max or per-subtask (see `mona select`; default: each method's).")
    pooling: str | None = opt(None, "Token pooling for LM methods: mean, sum or max (default: each method's).")
    k_codes: int | None = opt(None, "Keep the k largest SAE codes per token (K sweep).")
    sae: str | None = opt(None, "SAE directory for mona.")
    dtype: str = opt(LMConfig().dtype, "Selection model dtype of the LM methods and the sweep (see `mona select "
                                       "--dtype`).")
    diversity: float = opt(0.0, "MMR weight for every method with vectors (see `mona select --diversity`).")
    targets: str = opt("all", "Target sets to run: all, a half (A or B), or comma-separated names or patterns "
                              "(fnmatch, e.g. 'few-shot/*'). Pieces run with one --work-dir add up: a later run "
                              "of all reads their targets.")
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
    methods: str = opt("mona,mona-paper,dense,bm25,hidden,dsir,rds,llm2vec,mates,random",
                       "Comma-separated methods (see `mona methods`).")
    random_seeds: str = opt("0,1,2", "Seeds of the random method, comma-separated.")
    second_seed: str = opt("mona,hidden", "Methods fine-tuned again with fine-tune seed 1 in the present setting "
                                          "to measure training noise: mona and the strongest baseline (hidden on "
                                          "the hard relevance suite).")
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
    dtype: str = opt("fp32", "Selection model and fine-tuning dtype. Not auto: the pieces of one design run on "
                             "whichever machines a user has, and `auto` resolves per machine, so runs would "
                             "train in different dtypes (bf16 moves the fine-tuning loss by a few percent).")
    # not in the run key, so one design may be finished on another machine: in fp32 devices differ by rounding
    device: str = opt("auto", f"Where selection, fine-tuning and evaluation run: {DEVICES}.")
    name: str = opt("downstream", "Report name (<name>.md, <name>.json; figures <name>.png, <name>-ratio.png).")


@dataclass(frozen=True)
class MemoryConfig:
    """What `mona bench memory` runs: `mona select` per (method, pool size), one process each."""

    method: str = opt("random", "Comma-separated methods to run (see `mona methods`).")
    sizes: str = opt("10000,100000,1000000", "Comma-separated pool sizes (rows).")
    budget: int = opt(100, "--budget of every `mona select` run.")
    select_args: str = opt("", "More `mona select` options, one shell-quoted string (e.g. '--threads 2').")
    work_dir: Path | None = opt(None, "Pools, selections and logs (default: $MONA_CACHE/bench-memory).")
    out: Path = opt(REPORTS / "memory.json", "JSON figures.")
    out_md: Path = opt(REPORTS / "memory.md", "Markdown report.")

    @property
    def methods(self) -> list[str]:
        """The methods, in order."""
        return [m.strip() for m in self.method.split(",") if m.strip()]

    @property
    def pool_sizes(self) -> list[int]:
        """The pool sizes; each must hold the budget."""
        sizes = [int(n) for n in comma_ints(self.sizes, "--sizes")]
        if not sizes or min(sizes) < self.budget:
            raise ConfigError(f"every pool size must be at least --budget {self.budget}, got {self.sizes!r}")
        return sizes


@dataclass(frozen=True)
class ScoringConfig:
    """What `mona bench scoring` times: scoring N pooled vectors streamed from feature-cache shards."""

    rows: str = opt("1000000", "Comma-separated numbers of pooled vectors to score.")
    top_m: str = opt("256,full", "Comma-separated storage settings: an m (top-m latents + left-out mass) or 'full'.")
    source: Path = opt(Path("examples/pool.jsonl"), "Pool whose real MoNA vectors are resampled.")
    target: Path = opt(Path("examples/target.jsonl"), "Target rows (the prototype).")
    budget: int = opt(1000, "Rows to select from the scores.")
    work_dir: Path | None = opt(None, "Where the vector shards go (default: $MONA_CACHE/bench-scoring; ~10 GiB for "
                                      "1 M full vectors).")
    threads: str = opt("1,2", "Comma-separated thread counts of the scoring child.")
    out_md: Path = opt(REPORTS / "scoring.md", "Markdown report (and its .json beside it).")

    def grid(self) -> list[tuple[int, int | None, int]]:
        """Every (rows, m or None for full vectors, threads) to run, in order."""
        sizes = [int(n) for n in comma_ints(self.rows, "--rows")]
        ms = [None if m == "full" else int(m) for m in comma_ints(self.top_m, "--top-m", allow=("full",))]
        threads = [int(t) for t in comma_ints(self.threads, "--threads")]
        return [(n, m, t) for n in sizes for m in ms for t in threads]


@dataclass(frozen=True)
class TopMConfig:
    """What `mona bench top-m` compares: MoNA's selections from top-m storage against full vectors."""

    ms: str = opt("128,256,512,1024,2048,4096", "Comma-separated m values to compare with full vectors.")
    k: int = opt(100, "Budget: rows selected per target set.")
    pool_size: int = opt(5000, "Rows in the labelled pool.")
    per_task: int = opt(100, "Pool rows per BIG-bench task.")
    seed: int = opt(0, "Seed of the pool and target sets.")

    @property
    def m_values(self) -> list[int]:
        """The m values, in order."""
        return [int(m) for m in comma_ints(self.ms, "--ms")]


@dataclass(frozen=True)
class SpeedConfig:
    """What `mona bench speed` times: the rows featurized, the dtypes beside fp32 and bf16, and the agreement
    check of each dtype's selections with fp32's."""

    pool: Path = opt(Path("examples/pool.jsonl"), "Rows to featurize.")
    rows: int = opt(256, "Use the first N rows.")
    repeats: int = opt(1, "Repeat and keep the best time.")
    dtype: list[str] | None = opt(None, "A dtype to measure besides fp32 and bf16 (repeatable): fp16 or int8 "
                                        "(dynamic quantization, CPU only).")
    target: Path = opt(Path("examples/target.jsonl"), "Target rows of the agreement check: each dtype's top-k of "
                                                      "the same rows against fp32's.")
    k: int = opt(10, "Rows selected in the agreement check.")
    out: Path | None = opt(None, "Write the figures as JSON here.")
    out_md: Path | None = opt(None, f"Write the report as Markdown here ({REPORTS / 'speed.md'}).")

