"""The registry of representations: a method name -> how to build its featurizer and how to score it.
A new representation is one module in `features` and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mona.errors import ConfigError
from mona.features.base import Featurizer
from mona.features.lm import LMConfig, LMRunner


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


@dataclass(frozen=True)
class MethodSpec:
    """How a method featurizes (None: it needs no features, e.g. random) and its default similarity."""

    build: Callable[[MethodOptions, LMRunner], Featurizer] | None
    similarity: str
    help: str


def _mona(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.mona import MonaFeaturizer

    return MonaFeaturizer(runner, opts.sae, k=opts.k, pooling=opts.pooling)


METHODS: dict[str, MethodSpec] = {
    "mona": MethodSpec(_mona, "jaccard", "SAE (monosemantic) features, mean-pooled, generalized Jaccard"),
    "random": MethodSpec(None, "none", "seeded uniform sample"),
}


def get_method(name: str) -> MethodSpec:
    """Look a method up, with a clear error for an unknown name."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}") from None
