"""Raw MLP neurons ("polysemantic" ablation of the paper): TopK(SiLU(W_gate x)) of the selection layer's
gated MLP with the same K as the SAE, mean-pooled, generalized Jaccard."""

from __future__ import annotations

from typing import Any

import scipy.sparse as sp
import torch

from mona.features.lm import LMFeaturizer, LMRunner
from mona.features.options import MethodSettings
from mona.features.pooling import pool_sparse_codes
from mona.models import TokenBatch
from mona.sae.topk import resolve_sae_path, sae_k


class NeuronFeaturizer(LMFeaturizer):
    """Sparse vectors over the d_mlp gate neurons."""

    name = "neurons"
    needs_gate = True

    def __init__(self, runner: LMRunner, *, k: int = 32, pooling: str = "mean") -> None:
        super().__init__(runner)
        self.k = k
        self.pooling = pooling

    @classmethod
    def from_options(cls, options: MethodSettings, runner: LMRunner) -> NeuronFeaturizer:
        """The gate neurons with the SAE's K (or --k), pooled as the options say."""
        k = options.k or sae_k(resolve_sae_path(options.sae)) or 32
        return cls(runner, k=k, pooling=str(options.pooling))

    def key_config(self) -> dict[str, Any]:
        return {"method": self.name, **self.runner.base_key(), "k": self.k, "pooling": self.pooling}

    def pool(self, batch: TokenBatch) -> sp.csr_matrix:
        gate = batch.gate[self.runner.resolved_layer()][batch.pool_mask]
        rows = torch.nonzero(batch.pool_mask, as_tuple=True)[0]
        values, indices = gate.topk(min(self.k, gate.shape[-1]), dim=-1)
        return pool_sparse_codes(rows, values, indices, len(batch.positions), gate.shape[-1], self.pooling)
