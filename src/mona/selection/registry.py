"""The registry of methods: a name -> its options class, and how it featurizes and scores. A new method is a
module in `features`, its options class in `features/options.py` and one line here (docs/architecture.md).

Featurizers and scorers are named as "module:attribute" and imported only when a method runs, so that reading
the registry (the command line does, to build its options) loads no model library."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from mona.errors import ConfigError
from mona.features.options import (
    Bm25Options,
    DenseOptions,
    DsirOptions,
    HiddenOptions,
    LessOptions,
    Llm2VecOptions,
    MatesOptions,
    MonaOptions,
    MonaPaperOptions,
    NeuronOptions,
    RandomOptions,
    RdsOptions,
)
from mona.selection.config import PROTOTYPES, SHARED, MethodOptions

if TYPE_CHECKING:
    from mona.features.base import Featurizer
    from mona.features.lm import LMRunner

__all__ = ["METHODS", "PROTOTYPES", "MethodOptions", "MethodSpec", "get_method", "with_defaults"]


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class MethodSpec:
    """A method: its options class (whose docstring is its description), and either a featurizer class (with
    `from_options`) plus a matrix scorer, or a text scorer that scores pool rows straight from the samples
    (methods with corpus-level state such as BM25, or none: random)."""

    options: type
    featurizer: str | None = None  # "module:Class" of a Featurizer
    # scores pool rows from their feature matrix and the targets' (default: similarity to the mean target)
    scorer: str = "mona.scoring.similarity:prototype_scorer"
    text: str | None = None  # "module:function" of a text scorer
    # a row's score depends only on that row and the targets, so the pool can be streamed in chunks; False for
    # methods with pool-level statistics (BM25's index, DSIR's pool n-gram model, LESS's warm-up on the pool)
    rowwise: bool = True

    @property
    def help(self) -> str:
        """One line on what the method does."""
        return " ".join((self.options.__doc__ or "").split())

    @property
    def featurizes(self) -> bool:
        """The method makes feature vectors (through the cache), rather than scoring text directly."""
        return self.featurizer is not None

    @property
    def similarity(self) -> str | None:
        """The method's default similarity (None: it scores in its own way)."""
        return getattr(self.options, "similarity", None)

    def defaults(self) -> dict[str, Any]:
        """The method's default for each shared knob and own option, by field name."""
        return {f.name: f.default for f in fields(self.options) if f.name != "similarity"}

    def build(self, options: MethodOptions, runner: LMRunner) -> Featurizer:
        """The method's featurizer for these options (their unset knobs take the method's defaults)."""
        assert self.featurizer is not None, "a text scorer has no featurizer"
        return _load(self.featurizer).from_options(with_defaults(options), runner)

    def matrix_scorer(self) -> Callable:
        """(pool matrix, target matrix, options) -> a score per pool row."""
        return _load(self.scorer)

    def text_scorer(self) -> Callable:
        """(pool samples, target samples, options, cache dir, progress) -> a score per pool row (or MethodScores);
        a long-running scorer reports its phases to the progress (a Progress, or None)."""
        assert self.text is not None, "a featurizing method has no text scorer"
        return _load(self.text)


METHODS: dict[str, MethodSpec] = {
    "mona": MethodSpec(MonaOptions, "mona.features.mona:MonaFeaturizer"),
    "mona-paper": MethodSpec(MonaPaperOptions, "mona.features.mona:MonaFeaturizer"),
    "neurons": MethodSpec(NeuronOptions, "mona.features.neurons:NeuronFeaturizer"),
    "hidden": MethodSpec(HiddenOptions, "mona.features.hidden:HiddenFeaturizer"),
    "bm25": MethodSpec(Bm25Options, text="mona.features.bm25:bm25_text_scorer", rowwise=False),
    "dsir": MethodSpec(DsirOptions, "mona.features.dsir:DsirFeaturizer", "mona.features.dsir:dsir_scorer",
                       rowwise=False),
    "dense": MethodSpec(DenseOptions, "mona.features.dense:DenseFeaturizer"),
    "less": MethodSpec(LessOptions, "mona.features.less:LessFeaturizer", "mona.features.less:less_scorer",
                       rowwise=False),
    "llm2vec": MethodSpec(Llm2VecOptions, "mona.features.llm2vec:LLM2VecFeaturizer"),
    "mates": MethodSpec(MatesOptions, text="mona.features.mates:mates_scores", rowwise=False),
    "rds": MethodSpec(RdsOptions, "mona.features.rds:RdsFeaturizer", "mona.features.rds:rds_scorer"),
    "random": MethodSpec(RandomOptions, text="mona.features.random:random_scores"),
}


def get_method(name: str) -> MethodSpec:
    """Look a method up, with a clear error for an unknown name."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}") from None


def with_defaults(options: MethodOptions) -> MethodOptions:
    """`options` with every shared knob left None set to the method's default (its options class's field of that
    name, when it has one), and `params` (the method's options; its defaults if None) carrying the final value
    of each shared knob it has, so that either can be read."""
    params = options.params if options.params is not None else get_method(options.method).options()
    names = {f.name for f in fields(params)}
    filled = {f: getattr(params, f) for f in SHARED if f in names and getattr(options, f) is None}
    given = {f: getattr(options, f) for f in SHARED if f in names and getattr(options, f) is not None}
    return replace(options, **filled, params=replace(params, **given), sae=_sae_of_release(options))


def _sae_of_release(options: MethodOptions) -> str | None:
    """`options.sae`, or where it is a release folder of many hookpoints, the one of `--layer` (refused in one
    line without a layer), so that every featurizer gets one SAE."""
    if options.sae is None:
        return None
    from pathlib import Path

    from mona.sae.release import is_release, pick_hookpoint

    path = Path(options.sae)
    return str(pick_hookpoint(path, options.lm.layer)) if is_release(path) else options.sae
