"""What a selection returns: the picks (ids and rows, best first), every pool row's score and rank, what it cost,
and the files `mona select` writes from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mona.data.formats import Rejected, Sample
from mona.features.cached import FeaturizeStats
from mona.outputs import OutputSet, check_outputs, write_quarantine, write_scores, write_selection
from mona.selection.budget import rank


@dataclass
class Selection:
    """The outcome of one selection. `ids` and `rows` are the picks, best first (rows exactly as given);
    `scores` and `ranks` have one entry per pool row, in pool order (`pool_ids`)."""

    pool_ids: Sequence[str]
    scores: np.ndarray
    order: np.ndarray  # pool positions best first: at least the selected ones (every row with SCORES or subtasks)
    n_selected: int
    selected: list[Sample]
    method: str
    pool_stats: FeaturizeStats = field(default_factory=FeaturizeStats)
    target_stats: FeaturizeStats = field(default_factory=FeaturizeStats)
    seconds: float = 0.0
    truncated: int = 0  # rows cut to max_length tokens
    rejected: list[Rejected] = field(default_factory=list)  # bad rows left out (on_error="skip")
    quarantine: Path | None = None  # where they were written, if anywhere
    top_m: tuple[float, bool] | None = None  # with top-m storage: (largest score gap, selection certified)
    skipped_parts: int = 0  # non-text content parts (images, audio...) left out of pool and target rows
    id_kinds: np.ndarray | None = None  # JSON type of each pool id (formats.id_kind); None: all strings
    max_length: int | None = None  # the selection model's tokens per row (LM methods)
    dtype: str | None = None  # the selection model's dtype and why (methods that run it)
    notes: tuple[str, ...] = ()  # what the method adds to the summary (MATES: its influence model's Spearman)

    @property
    def ids(self) -> list[str]:
        """Ids of the selected rows, best first."""
        return [s.id for s in self.selected]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The selected rows, unchanged, best first."""
        return [s.record.row for s in self.selected]

    def full_order(self) -> np.ndarray:
        """Every pool position, best first (the first `n_selected` are the picks)."""
        if len(self.order) == len(self.pool_ids):
            return self.order
        return rank(self.pool_ids, self.scores)

    @property
    def ranks(self) -> np.ndarray:
        """Rank of each pool row (1 = best), in pool order."""
        ranks = np.empty(len(self.pool_ids), dtype=np.int64)
        ranks[self.full_order()] = np.arange(1, len(self.pool_ids) + 1)
        return ranks

    def to_dataset(self):
        """The selected rows as a `datasets.Dataset`, best first."""
        from datasets import Dataset

        return Dataset.from_list(self.rows)

    def to_pandas(self):
        """The selected rows as a `pandas.DataFrame`, best first."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def write(self, out: str | Path | None, scores: str | Path | None = None,
              quarantine: str | Path | None = None) -> None:
        """Write what `mona select` writes: OUT (the selected rows as JSONL, best first), SCORES ({id, score, rank,
        selected} per pool row) and the quarantine of bad rows, all or none of them."""
        paths = {"--out": out, "--scores": scores, "--quarantine": quarantine}
        check_outputs({}, {k: None if v is None else Path(v) for k, v in paths.items()})
        with OutputSet() as outputs:
            if out is not None:
                write_selection(out, self.selected, outputs)
            if scores is not None:
                write_scores(scores, self.pool_ids, self.scores, self.full_order(), self.n_selected, outputs,
                             self.id_kinds)
            if quarantine is not None:
                write_quarantine(quarantine, self.rejected, outputs)

    def summary(self, out: Path | None = None) -> str:
        """The one line `mona select` prints: what was picked, how fast, what the cache held, what was left out."""
        ps = self.pool_stats
        hits = ps.cache_hits + self.target_stats.cache_hits
        total = ps.samples + self.target_stats.samples
        parts = [f"cache hits {hits}/{total}" + (f", {ps.tokens_per_second:.0f} tok/s" if ps.tokens else "")]
        if self.dtype is not None:
            parts.append(f"dtype {self.dtype}")
        if self.truncated:
            parts.append(f"{self.truncated} truncated to {self.max_length} tokens")
        if self.rejected:
            parts.append(f"{len(self.rejected)} bad rows skipped" + (f" -> {self.quarantine}" if self.quarantine
                                                                    else ""))
        if self.skipped_parts:
            parts.append(f"{self.skipped_parts} non-text content parts (images, audio, files) left out")
        if self.top_m is not None:
            gap, certified = self.top_m
            parts.append(f"top-m storage: scores low by at most {gap:.2e}, selection "
                         + ("certified unchanged" if certified else "not certified (bounds overlap)"))
        parts += self.notes
        dest = f" -> {out}" if out is not None else ""
        return (f"selected {self.n_selected} of {len(self.pool_ids)} rows with {self.method} in {self.seconds:.1f} s "
                f"({', '.join(parts)}){dest}")
