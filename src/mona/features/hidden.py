"""Raw hidden states: the residual stream at the selection layer, mean-pooled over content tokens, compared by
cosine (the paper's DLRDS-LLM baseline and its "raw hidden states" ablation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mona.features.lm import LMFeaturizer, LMRunner
from mona.features.options import MethodSettings
from mona.features.pooling import pool_dense
from mona.models import TokenBatch


class HiddenFeaturizer(LMFeaturizer):
    """Dense d_model vectors."""

    name = "hidden"

    def __init__(self, runner: LMRunner, *, pooling: str = "mean") -> None:
        super().__init__(runner)
        self.pooling = pooling

    @classmethod
    def from_options(cls, options: MethodSettings, runner: LMRunner) -> HiddenFeaturizer:
        """Hidden states pooled as the options say."""
        return cls(runner, pooling=str(options.pooling))

    def key_config(self) -> dict[str, Any]:
        return {"method": self.name, **self.runner.base_key(), "pooling": self.pooling}

    def pool(self, batch: TokenBatch) -> np.ndarray:
        x = batch.resid[self.runner.resolved_layer()]
        rows = torch.nonzero(batch.pool_mask, as_tuple=True)[0]
        return pool_dense(rows, x[batch.pool_mask], len(batch.positions), self.pooling)
