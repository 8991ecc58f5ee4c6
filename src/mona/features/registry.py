"""The registry of methods: a name -> how to featurize and score. A new representation is one module in
`features` and one entry here; nothing else changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.base import Featurizer, Matrix
from mona.features.lm import LMConfig, LMRunner
from mona.scoring.similarity import prototype, score


@dataclass
class MethodOptions:
    """Everything a method may need; each method reads the fields it uses."""

    method: str = "mona"
    lm: LMConfig = field(default_factory=LMConfig)
    sae: str | None = None
    k: int | None = None
    pooling: str = "mean"
    similarity: str | None = None  # None: the method's own default
    seed: int = 0
    extra: dict = field(default_factory=dict)  # method-specific options (e.g. bm25's combine)


# Scores pool rows from their feature matrix and the targets' (default: similarity to the mean target).
MatrixScorer = Callable[[Matrix, Matrix, MethodOptions], np.ndarray]
# Scores pool rows straight from the samples (methods with corpus-level state, e.g. BM25, or none: random).
TextScorer = Callable[[Sequence[Sample], Sequence[Sample], MethodOptions, Path | None], np.ndarray]


def prototype_scorer(pool: Matrix, targets: Matrix, options: MethodOptions) -> np.ndarray:
    """The paper's scoring: similarity of each pool vector to the mean target vector."""
    return score(pool, prototype(targets), options.similarity or "jaccard")


@dataclass(frozen=True)
class MethodSpec:
    """A method: either a featurizer plus a matrix scorer, or a text scorer."""

    help: str
    similarity: str | None = None
    build: Callable[[MethodOptions, LMRunner], Featurizer] | None = None
    matrix_scorer: MatrixScorer = prototype_scorer
    text_scorer: TextScorer | None = None


def _mona(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.mona import MonaFeaturizer

    return MonaFeaturizer(runner, opts.sae, k=opts.k, pooling=opts.pooling)


def _sae_k(opts: MethodOptions) -> int:
    """The SAE's k (the neuron ablation uses the same K), unless --k overrides it."""
    if opts.k is not None:
        return opts.k
    from mona.sae.topk import resolve_sae_path, sae_metadata

    meta = sae_metadata(resolve_sae_path(opts.sae))
    return int(meta.get("k") or (meta.get("activation_fn_kwargs") or {}).get("k", 32))


def _neurons(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.neurons import NeuronFeaturizer

    return NeuronFeaturizer(runner, k=_sae_k(opts), pooling=opts.pooling)


def _hidden(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.hidden import HiddenFeaturizer

    return HiddenFeaturizer(runner, pooling=opts.pooling)


def _random(pool: Sequence[Sample], _targets: Sequence[Sample], opts: MethodOptions, _cache: Path | None
            ) -> np.ndarray:
    return np.random.default_rng(opts.seed).random(len(pool))


METHODS: dict[str, MethodSpec] = {
    "mona": MethodSpec("SAE (monosemantic) features of the selection model, mean-pooled, generalized Jaccard "
                       "to the mean target", "jaccard", build=_mona),
    "neurons": MethodSpec("raw gated-MLP activations TopK(SiLU(W_gate x)) with the SAE's K, mean-pooled, "
                          "generalized Jaccard (the paper's polysemantic ablation)", "jaccard", build=_neurons),
    "hidden": MethodSpec("raw hidden states of the selection layer, mean-pooled, cosine (DLRDS-LLM)", "cosine",
                         build=_hidden),
    "random": MethodSpec("seeded uniform sample", text_scorer=_random),
}


def get_method(name: str) -> MethodSpec:
    """Look a method up, with a clear error for an unknown name."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}") from None
