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
