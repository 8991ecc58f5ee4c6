"""The options of a selection (`mona select`, `mona.select`, `mona.Selector`): what to read and write, and which
method with which knobs. Every default and every check of an option that needs no file is here; the command line
generates its options from these fields (mona.cli_options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mona.config import REQUIRED, opt
from mona.errors import ConfigError
from mona.features.options import POOLINGS, LMConfig

PROTOTYPES = ("single", "max", "per-subtask")
ON_ERROR = ("fail", "skip")
TOO_LONG = ("truncate", "refuse")
BACKENDS = ("local", "ray")
# Pool rows per streamed chunk: large enough that per-chunk overhead (cache lookups, scoring calls) vanishes,
# small enough that a chunk's rows and vectors stay well under a GB.
STREAM_ROWS = 8192


@dataclass
class MethodOptions:
    """A method and its knobs. The shared knobs left None take the method's own default (its options class in
    mona.features.options, see registry.with_defaults); `params` holds the method's own options (None: its
    defaults)."""

    method: str = opt("mona", "Selection method (see `mona methods`).")
    lm: LMConfig = field(default_factory=LMConfig)
    sae: str | None = opt(None, "SAE folder or weights file (sparsify, SAELens, Gemma Scope, Llama Scope, "
                                "dictionary_learning, OpenAI, Goodfire; a release folder: the --layer one); "
                                "default: the shipped SmolLM2 SAE.")
    # the shared knobs: None means the method's default
    k: int | None = opt(None, "Keep only the k largest SAE codes per token (<= SAE's k; default: the method's).")
    pooling: str | None = opt(None, "Token pooling: mean, sum or max (default: the method's; see `mona methods`).")
    similarity: str | None = opt(None, "jaccard, cosine or euclidean (default: the method's).")
    prototype: str | None = opt(None, "single: mean target (the paper); max: best single target row; per-subtask: "
                                      "one prototype per target subtask, picked round-robin (default: the "
                                      "method's).")
    top_m: int | None = opt(None, "mona (jaccard): store each pool vector's m largest latents plus its left-out "
                                  "mass (compact cache; the summary reports the largest possible score error and "
                                  "whether the selection is certified unchanged; 0: whole vectors; default: the "
                                  "method's).")
    seed: int = opt(0, "Seed for random choices (the random method, --dsir-gumbel, the LESS warm-up).")
    group_field: str = opt("subtask", "Target field naming subtasks (--prototype per-subtask).",
                           cli="--subtask-field")
    diversity: float = opt(0.0, "Weight W in [0, 1] of redundancy against relevance: maximal marginal relevance "
                                "over the method's own vectors re-picks among its best 4n rows, so the budget is "
                                "not spent on near-duplicates (0: the plain ranking; mona.selection.diversity).")
    dedup: bool = opt(False, "Pick at most one of the rows that say the same (same roles and texts, whitespace "
                             "aside): the best-ranked one; the others rank after the selection, unselected.")
    params: Any = None  # the method's own options: an instance of its options class (registry.MethodSpec.options)

    def check(self) -> None:
        """Reject option values no method accepts, and the method's own ones it refuses, before any work."""
        from mona.scoring.similarity import SIMILARITIES
        from mona.selection.registry import get_method, with_defaults

        spec = get_method(self.method)
        if self.params is not None and type(self.params) is not spec.options:
            raise ConfigError(f"{self.method} takes {spec.options.__name__}, got {type(self.params).__name__}")
        options = with_defaults(self)
        if options.top_m is not None and options.top_m < 0:
            raise ConfigError(f"--top-m must be at least 1 (or 0: store whole vectors), got {options.top_m}")
        if options.pooling is not None and options.pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {options.pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.lm.check()
        if options.similarity is not None and options.similarity not in SIMILARITIES:
            raise ConfigError(f"unknown similarity {options.similarity!r}; choose one of {', '.join(SIMILARITIES)}")
        if options.k is not None and options.k < 1:
            raise ConfigError(f"--k must be at least 1, got {options.k}")
        if options.prototype is not None and options.prototype not in PROTOTYPES:
            raise ConfigError(f"unknown prototype mode {options.prototype!r}; choose one of {', '.join(PROTOTYPES)}")
        if not spec.featurizes and options.prototype not in (None, "single"):
            raise ConfigError(f"--prototype {options.prototype} needs a feature-based method, not {self.method}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"--diversity must be in [0, 1], got {self.diversity}")
        if self.diversity and not spec.featurizes:
            raise ConfigError(f"--diversity needs a method with feature vectors, not {self.method}")
        check = getattr(options.params, "check", None)
        if check is not None:
            check()


@dataclass
class SelectConfig:
    """One selection: inputs, outputs, budget, the method and where it runs."""

    pool: Path = opt(REQUIRED, "Pool file: .jsonl(.gz/.zst), .json, .parquet or a save_to_disk dir.")
    target: Path = opt(REQUIRED, "Examples of the target task, same formats as the pool.")
    out: Path | None = opt(None, "Where to write the selected rows (JSONL, best first).")
    scores: Path | None = opt(None, "Also write {id, score, rank, selected} per pool row.")
    ratio: float | None = opt(None, "Fraction of the pool to select, in (0, 1].")
    budget: int | None = opt(None, "Number of rows to select.")
    options: MethodOptions = field(default_factory=MethodOptions)
    cache_dir: Path | None = opt(None, "Feature cache (default: $MONA_CACHE or ~/.cache/mona).")
    no_cache: bool = opt(False, "Do not read or write the feature cache.")
    text_field: str | None = opt(None, "Read text from this field as plain text, in the pool and the target alike.")
    on_error: str = opt("fail", "fail: stop at the first bad row (exit 2); skip: leave bad rows out, write them "
                                "with the reason to --quarantine and count them.")
    quarantine: Path | None = opt(None, "--on-error skip: where bad rows go (default: OUT.rejected.jsonl).")
    too_long: str = opt("truncate", "Rows over --max-length tokens: truncate (and count them) or refuse (a bad "
                                    "row: exit 2, or quarantined with --on-error skip).")
    backend: str = opt("local", "Where uncached samples are featurized: local (this process) or ray (Ray Data "
                                "actors; RAY_ADDRESS or a `ray start` cluster if there is one; needs mona[ray]).")
    num_workers: int = opt(2, "ray: actors, each with its own copy of the model.")
    num_gpus: float = opt(0.0, "ray: GPUs per actor (0: CPU only).")
    stream_rows: int = opt(STREAM_ROWS, "Pool rows read, featurized, cached and scored together (memory vs. "
                                        "overhead).")

    def check(self, *, budget: bool = True) -> None:
        """Every option that can be judged without reading a file (budget, ratio, method and its knobs, error
        modes, backend), checked before any work. The budget against the pool's size waits for the pool's row
        count, but comes before any scoring. `budget=False`: all but the budget (mona.Selector gets one per
        target)."""
        from mona.selection.budget import check_budget

        if self.on_error not in ON_ERROR:
            raise ConfigError(f"unknown --on-error {self.on_error!r}; choose one of {', '.join(ON_ERROR)}")
        if self.too_long not in TOO_LONG:
            raise ConfigError(f"unknown --too-long {self.too_long!r}; choose one of {', '.join(TOO_LONG)}")
        if self.stream_rows < 1:
            raise ConfigError(f"--stream-rows must be at least 1, got {self.stream_rows}")
        if budget:
            check_budget(ratio=self.ratio, budget=self.budget)
        self.options.check()
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown --backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend == "ray":
            if self.num_workers < 1:
                raise ConfigError(f"--num-workers must be at least 1, got {self.num_workers}")
            if self.num_gpus < 0:
                raise ConfigError(f"--num-gpus must be at least 0, got {self.num_gpus}")


# The shared knobs: MethodOptions fields a method's options class may give a default for.
SHARED = ("k", "pooling", "similarity", "prototype", "top_m")

