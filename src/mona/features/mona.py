"""MoNA: per-token TopK SAE codes of the residual stream at the selection layer (or of that layer's MLP or
attention output, where the SAE was trained there), pooled over the sample's tokens (mean as in the paper, or
max or sum: MonaOptions.pooling)."""

from __future__ import annotations

from typing import Any

import scipy.sparse as sp
import torch

from mona.errors import ConfigError
from mona.features.lm import LMFeaturizer, LMRunner
from mona.features.options import MethodSettings
from mona.features.pooling import keep_row_top, keep_top_m, pool_sparse_codes
from mona.models import TokenBatch
from mona.sae.topk import check_width, encode, load_sae, resolve_sae_path, sae_fingerprint, sae_k, sae_metadata


class MonaFeaturizer(LMFeaturizer):
    """Sparse, non-negative sample vectors over the SAE's latents."""

    name = "mona"

    def __init__(self, runner: LMRunner, sae: str | None = None, *, k: int | None = None,
                 pooling: str = "mean", top_m: int | None = None, row_latents: int | None = None) -> None:
        super().__init__(runner)
        self.sae_path = resolve_sae_path(sae)
        meta = sae_metadata(self.sae_path)
        self.sae_layer = meta.get("layer")
        self.site = str(meta["site"])  # read where the SAE was trained: the residual stream, MLP or attention output
        self.sae_k = sae_k(self.sae_path)
        if k is not None and self.sae_k is not None and k > self.sae_k:
            raise ConfigError(f"--k {k} exceeds the SAE's k ({self.sae_k})")
        self.k = k
        self.pooling = pooling
        if top_m is not None and top_m < 1:
            raise ConfigError(f"--top-m must be at least 1, got {top_m}")
        # compact storage (pooling.keep_top_m): pool vectors keep their top_m latents plus the left-out mass;
        # targets are few and stay exact, so the prototype is exact
        self.top_m = top_m
        if row_latents is not None and row_latents < 1:
            raise ConfigError(f"--mona-row-latents must be at least 1, got {row_latents}")
        self.row_latents = row_latents
        self._sae = None
        self.check()

    @classmethod
    def from_options(cls, options: MethodSettings, runner: LMRunner) -> MonaFeaturizer:
        """mona or mona-paper: `--k` codes per token as given, else the options' `codes` (at most the SAE's k);
        compact top-m storage only under Jaccard, which it keeps exact (pooling.keep_top_m)."""
        k = options.k
        codes = options.params.codes
        if k is None and codes is not None:
            own = sae_k(resolve_sae_path(options.sae))
            k = codes if own is None else min(codes, own)
        top_m = options.top_m if options.similarity == "jaccard" and options.top_m else None
        return cls(runner, options.sae, k=k, pooling=str(options.pooling), top_m=top_m,
                   row_latents=options.params.row_latents or None)

    @property
    def sae(self):
        if self._sae is None:
            self._sae = load_sae(self.sae_path, self.runner.device)
        return self._sae

    def check(self) -> None:
        """Refuse an SAE that does not fit the model's width or the layer read (before any model is loaded)."""
        _ = self.runner.tokenizer
        assert self.runner.d_model is not None
        check_width(self.sae, self.runner.d_model, sae_path=self.sae_path, layer=self.runner.resolved_layer(),
                    sae_layer=self.sae_layer)

    def key_config(self) -> dict[str, Any]:
        key = {"method": self.name, **self.runner.base_key(), "sae": sae_fingerprint(self.sae_path),
               "k": self.k, "pooling": self.pooling}
        if self.row_latents is not None:  # only then: keys of the paper's vectors stay what they were
            key["row_latents"] = self.row_latents
        if self.top_m is not None:  # only then: keys of full vectors stay what they were
            key.update(top_m=self.top_m, truncated=self.role == "pool")
        return key

    def pool(self, batch: TokenBatch) -> sp.csr_matrix:
        layer = self.runner.resolved_layer()
        x = batch.site(self.site, layer)
        rows = torch.nonzero(batch.pool_mask, as_tuple=True)[0]
        values, indices = encode(self.sae, x[batch.pool_mask], self.k)
        pooled = pool_sparse_codes(rows, values, indices, len(batch.positions), int(self.sae.num_latents),
                                   self.pooling)
        if self.row_latents is not None:
            pooled = keep_row_top(pooled, self.row_latents)
        if self.top_m is None:
            return pooled
        return keep_top_m(pooled, self.top_m if self.role == "pool" else None)
