"""`mona bench speed`: tokens/s of the bare truncated forward and of MoNA's featurization (forward + SAE
encoding + pooling) on the same rows, so the cost of the SAE and pooling is visible."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass

import torch

from mona.data.formats import Sample
from mona.features.lm import LMConfig, LMRunner
from mona.features.mona import MonaFeaturizer


@dataclass
class SpeedResult:
    """One speed measurement."""

    rows: int
    tokens: int  # tokens through the model, padding excluded
    pooled_tokens: int
    forward_seconds: float
    mona_seconds: float
    threads: int
    machine: str

    @property
    def forward_tok_s(self) -> float:
        return self.tokens / self.forward_seconds

    @property
    def mona_tok_s(self) -> float:
        return self.tokens / self.mona_seconds

    def as_dict(self) -> dict:
        return {**asdict(self), "forward_tok_s": round(self.forward_tok_s, 1), "mona_tok_s": round(self.mona_tok_s, 1),
                "mona_vs_forward": round(self.mona_tok_s / self.forward_tok_s, 3)}


def measure_speed(samples: list[Sample], config: LMConfig | None = None, sae: str | None = None,
                  repeats: int = 1) -> SpeedResult:
    """Time the bare truncated forward and MoNA featurization over the same batches (per batch, best of
    `repeats`)."""
    runner = LMRunner(config or LMConfig())
    featurizer = MonaFeaturizer(runner, sae)
    lm = runner.lm()
    items = [runner.render(s) for s in samples]
    tokenized = lm.tokenize(items)
    plan = lm.plan(tokenized)
    tokens = sum(len(t.ids) for t in tokenized)
    pooled = sum(sum(t.pool) for t in tokenized)
    _ = featurizer.sae
    lm.forward(tokenized, plan[-1][:2])  # warm-up
    # Both runs alternate batch by batch and keep each batch's best time, so drift in the machine's speed
    # (other jobs, clock changes) hits both alike instead of whichever run came second.
    forward_total = mona_total = 0.0
    for positions in plan:
        forward_best = mona_best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            lm.forward(tokenized, positions)
            t1 = time.perf_counter()
            featurizer.pool(lm.forward(tokenized, positions))
            t2 = time.perf_counter()
            forward_best, mona_best = min(forward_best, t1 - t0), min(mona_best, t2 - t1)
        forward_total += forward_best
        mona_total += mona_best
    return SpeedResult(len(samples), tokens, pooled, forward_total, mona_total, torch.get_num_threads(),
                       f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
