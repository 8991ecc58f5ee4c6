"""RDS+ (Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning"): the selection model's final
hidden states, position-weighted mean pooling, cosine, max over the target examples, round-robin over target
subtasks.

What this follows in hamishivi/automated-instruction-selection (read, not copied):
- `minimal_multitask/compute_influence_cosinesim.py`, `--pooling weighted_mean` (the RDS+ setting of
  `shell_scripts/core_commands/index_selection_and_creation/rds/*weighted_mean_pool*.sh`): the model's
  `hidden_states[-1]` (the last decoder layer's output after the final norm), weighted by token position
  (weight of the token at 0-based position t: t + 1, normalised to sum to 1, after SGPT, arXiv 2202.08904),
  summed; pool and target vectors L2-normalised, scored by their dot product (cosine).
- `minimal_multitask/get_top_influences.py` / `get_top_aggregated_influences.py` with `--selection_method max`
  and the default `--aggregation_method round_robin`: a pool row's score for a task is its largest cosine to any
  of the task's examples; with several tasks, the picks take the best remaining row of each task in turn.
  Here the tasks are the target's subtasks (`--subtask-field`): the method's default prototype mode
  "per-subtask", scored by `rds_scorer` (max cosine within each subtask), is exactly that; targets without
  subtasks form one group, so the ranking is the plain max-cosine one.

Where mona differs: the input is rendered as for every other LM method (the model's chat template, `--render`),
and, as everywhere in mona, the fixed first token, special tokens and template markup are kept out of the pooled
tokens (the reference pools every position, BOS included); a token's weight is still its position in the whole
sequence. `--layer` reads another decoder layer instead of the last (then without the final norm, which follows
only the last one).

Cost: a forward through every decoder layer (the other LM methods stop at their layer), so it cannot share the
benchmark's LM pass, which reads one shallower layer without the final norm."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.base import FeatureBlock, Featurizer, Matrix
from mona.features.less import max_cosine
from mona.features.lm import LMRunner, text_key_of
from mona.features.options import MethodSettings
from mona.models import TokenBatch, TruncatedLM, load_lm

# TruncatedLM replaces the final norm (under one of these names) by an identity; RDS+ needs it
FINAL_NORMS = ("norm", "ln_f", "final_layernorm")


def final_norm(model: nn.Module) -> nn.Module | None:
    """The final norm of a causal LM (applied after its last decoder layer), or None if it has none."""
    base = getattr(model, "base_model", model)
    for name in FINAL_NORMS:
        module = getattr(base, name, None)
        if isinstance(module, nn.Module) and not isinstance(module, nn.Identity):
            return module
    return None


def position_weighted_mean(rows: torch.Tensor, positions: torch.Tensor, x: torch.Tensor, n_rows: int
                           ) -> np.ndarray:
    """rows [N] (sample of each token), positions [N] (0-based position of the token in its sequence), x [N, d]
    -> [n_rows, d]: each sample's tokens averaged with weights position + 1 (SGPT's weighted mean, RDS+'s
    pooling). A sample without tokens gets a zero vector."""
    weights = positions.double() + 1.0
    out = torch.zeros(n_rows, x.shape[1], dtype=torch.float64).index_add_(0, rows, x.double() * weights[:, None])
    total = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, rows, weights)
    return (out / total.clamp(min=1.0)[:, None]).float().numpy()


class RdsFeaturizer(Featurizer):
    """Dense d_model vectors: the final hidden states (after the final norm), position-weighted mean. It runs the
    whole model stack itself, so it is not an LMFeaturizer (those share one truncated forward pass)."""

    name = "rds"

    def __init__(self, runner: LMRunner) -> None:
        self.runner = runner
        self._lm: TruncatedLM | None = None
        self._norm: nn.Module | None = None

    @classmethod
    def from_options(cls, options: MethodSettings, runner: LMRunner) -> RdsFeaturizer:
        """RDS+ on the runner's model, rendering and lengths."""
        return cls(runner)

    @property
    def layer(self) -> int:
        """The decoder layer read: `--layer` if given, else the last."""
        _ = self.runner.tokenizer  # reads the model's config
        n_layers = self.runner.n_layers
        assert n_layers is not None
        layer = self.runner.config.layer if self.runner.config.layer is not None else -1
        resolved = layer if layer >= 0 else n_layers + layer
        if not 0 <= resolved < n_layers:
            raise ConfigError(f"layer {layer} out of range: the model has {n_layers} decoder layers "
                              f"(0..{n_layers - 1})")
        return resolved

    @property
    def normed(self) -> bool:
        """Whether the final norm applies (only after the last layer)."""
        layer = self.layer  # loads the model's config first
        return layer == self.runner.n_layers - 1

    def key_config(self) -> dict[str, Any]:
        return {"method": self.name, **self.runner.base_key(), "layer": self.layer, "final_norm": self.normed,
                "pooling": "position-weighted-mean"}

    def text_key(self, sample: Sample) -> str:
        return text_key_of(self.runner.render(sample))

    def _model(self) -> TruncatedLM:
        if self._lm is None:
            c = self.runner.config
            model, tokenizer = load_lm(c.model, c.dtype, self.runner.device)
            if self.normed:
                norm = final_norm(model)
                # activations come back to the CPU as float32 (TokenBatch): the norm runs there too
                self._norm = copy.deepcopy(norm).float().cpu() if norm is not None else None
            self._lm = TruncatedLM(model, tokenizer, self.layer, max_length=c.max_length,
                                   batch_tokens=c.batch_tokens)
        return self._lm

    @torch.inference_mode()
    def pool(self, batch: TokenBatch) -> np.ndarray:
        """Vectors of the batch's rows, in batch order."""
        rows, cols = torch.nonzero(batch.pool_mask, as_tuple=True)
        x = batch.resid[self.layer][rows, cols]
        if self._norm is not None:
            x = self._norm(x)
        # the batch's tensors start after the shared prefix it ran once (TokenBatch.offset)
        return position_weighted_mean(rows, cols + batch.offset, x, len(batch.positions))

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        lm = self._model()
        for batch in lm.run([self.runner.render(s) for s in samples]):
            yield FeatureBlock(batch.positions, self.pool(batch), batch.n_tokens)
        self.runner.truncated += lm.last_truncated


def rds_scorer(pool: Matrix, targets: Matrix, options: MethodSettings) -> np.ndarray:
    """Registry matrix scorer: each pool row's largest cosine to any of `targets` (RDS+'s "max" aggregation; the
    prototype modes choose the target sets: per-subtask, the default, gives RDS+'s round-robin)."""
    if options.similarity not in (None, "cosine"):
        raise ConfigError(f"rds scores by cosine (max over the target examples); --similarity {options.similarity} "
                          "does not apply")
    return max_cosine(pool, targets)
