"""The registry of methods: a name -> how to featurize and score. A new representation is one module in
`features` and one entry here; nothing else changes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.base import Featurizer, Matrix
from mona.features.lm import LMConfig, LMRunner
from mona.scoring.similarity import prototype, score

PROTOTYPES = ("single", "max", "per-subtask")


@dataclass
class MethodOptions:
    """Everything a method may need; each method reads the fields it uses."""

    method: str = "mona"
    lm: LMConfig = field(default_factory=LMConfig)
    sae: str | None = None
    k: int | None = None
    # None in the next four: the method's own default (MethodSpec.defaults, see with_defaults)
    pooling: str | None = None  # mean | sum | max over a sample's tokens
    similarity: str | None = None
    prototype: str | None = None  # single (the paper) | max (best target row) | per-subtask (round-robin)
    top_m: int | None = None  # mona with jaccard: store each pool vector's top-m latents + left-out mass; 0: all
    seed: int = 0
    group_field: str = "subtask"  # the target field naming subtasks, for per-subtask prototypes
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
    # a row's score depends only on that row and the targets, so the pool can be streamed in chunks; False for
    # methods with pool-level statistics (BM25's index, DSIR's pool n-gram model, LESS's warm-up on the pool)
    rowwise: bool = True
    # the method's values of MethodOptions fields left None (pooling, prototype, top_m); unnamed ones fall back to
    # FALLBACKS
    defaults: dict = field(default_factory=dict)


FALLBACKS = {"pooling": "mean", "prototype": "single", "top_m": 0}


def with_defaults(opts: MethodOptions) -> MethodOptions:
    """`opts` with every field left None set to the method's default."""
    spec = get_method(opts.method)
    values = {"similarity": spec.similarity, **FALLBACKS, **spec.defaults}
    return replace(opts, **{f: v for f, v in values.items() if getattr(opts, f) is None})


# mona's defaults, chosen on the relevance dev suite (docs/relevance.md): max pooling over the tokens, the 16
# largest SAE codes per token (of the shipped SAE's 32; an SAE with a smaller k keeps all of its own), compact
# storage of the 4,096 largest latents per pool vector (left every dev-suite selection unchanged)
MONA_DEFAULT_K = 16
MONA_DEFAULTS = {"pooling": "max", "prototype": "single", "top_m": 4096}


def _mona_featurizer(opts: MethodOptions, runner: LMRunner, default_k: int | None) -> Featurizer:
    from mona.features.mona import MonaFeaturizer

    opts = with_defaults(opts)
    k = opts.k if opts.k is not None or default_k is None else min(default_k, _sae_k(opts))
    # compact storage keeps Jaccard's |z|_1 exact (pooling.keep_top_m); other similarities get full vectors
    top_m = opts.top_m if opts.similarity == "jaccard" and opts.top_m != 0 else None
    return MonaFeaturizer(runner, opts.sae, k=k, pooling=opts.pooling, top_m=top_m)


def _mona(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    return _mona_featurizer(opts, runner, MONA_DEFAULT_K)


def _mona_paper(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    return _mona_featurizer(opts, runner, None)  # the SAE's own k


def _sae_k(opts: MethodOptions) -> int:
    """The SAE's k (the neuron ablation uses the same K), unless --k overrides it."""
    if opts.k is not None:
        return opts.k
    from mona.sae.topk import resolve_sae_path, sae_metadata

    meta = sae_metadata(resolve_sae_path(opts.sae))
    return int(meta.get("k") or (meta.get("activation_fn_kwargs") or {}).get("k", 32))


def _neurons(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.neurons import NeuronFeaturizer

    return NeuronFeaturizer(runner, k=_sae_k(opts), pooling=with_defaults(opts).pooling)


def _hidden(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.hidden import HiddenFeaturizer

    return HiddenFeaturizer(runner, pooling=with_defaults(opts).pooling)


def _dsir(opts: MethodOptions, _runner: LMRunner) -> Featurizer:
    from mona.features.dsir import DsirConfig

    return DsirConfig.from_extra(opts.extra).featurizer()


def _dsir_scorer(pool: Matrix, targets: Matrix, opts: MethodOptions) -> np.ndarray:
    from mona.features.dsir import dsir_scorer

    return dsir_scorer(pool, targets, opts)


def _dense(opts: MethodOptions, _runner: LMRunner) -> Featurizer:
    from mona.features.dense import DenseFeaturizer

    return DenseFeaturizer(opts.extra.get("embedder"))


def _bm25(pool: Sequence[Sample], targets: Sequence[Sample], opts: MethodOptions, cache: Path | None
          ) -> np.ndarray:
    # a text scorer: BM25 depends on corpus-level statistics of the whole pool, so no per-sample cache
    from mona.features.bm25 import bm25_text_scorer

    return bm25_text_scorer(pool, targets, opts, cache)


def _less(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.less import LessConfig, LessFeaturizer

    return LessFeaturizer(runner, LessConfig.from_extra(opts.extra), seed=opts.seed)


def _less_scorer(pool: Matrix, targets: Matrix, opts: MethodOptions) -> np.ndarray:
    # LESS: cosine of each pool gradient to each target gradient, max over the targets
    from mona.features.less import max_cosine

    if opts.similarity not in (None, "cosine"):
        raise ConfigError(f"less scores by cosine (max over targets); --similarity {opts.similarity} does not apply")
    return max_cosine(pool, targets)


def _llm2vec(opts: MethodOptions, runner: LMRunner) -> Featurizer:
    from mona.features.llm2vec import LLM2VecFeaturizer

    return LLM2VecFeaturizer(opts.extra.get("llm2vec_model"), max_length=runner.config.max_length)


def _random(pool: Sequence[Sample], _targets: Sequence[Sample], opts: MethodOptions, _cache: Path | None
            ) -> np.ndarray:
    # uniform in [0, 1) from a hash of (seed, id): a row's score depends on nothing else, so a streamed pool
    # gets the same scores in any chunking
    def draw(sample_id: str) -> float:
        digest = hashlib.blake2b(f"{opts.seed}\x00{sample_id}".encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)

    return np.fromiter((draw(s.id) for s in pool), dtype=np.float64, count=len(pool))


METHODS: dict[str, MethodSpec] = {
    "mona": MethodSpec("SAE (monosemantic) features of the selection model: the 16 largest codes per token, "
                       "max-pooled over the sample's tokens, generalized Jaccard to the mean target (defaults "
                       "chosen on the relevance dev suite; mona-paper is the published variant)", "jaccard",
                       build=_mona, defaults=MONA_DEFAULTS),
    "mona-paper": MethodSpec("MoNA exactly as published: mean pooling, generalized Jaccard to one mean-target "
                             "prototype, the SAE's k, whole vectors", "jaccard", build=_mona_paper,
                             defaults={"pooling": "mean", "prototype": "single", "top_m": 0}),
    "neurons": MethodSpec("raw gated-MLP activations TopK(SiLU(W_gate x)) with the SAE's K, mean-pooled, "
                          "generalized Jaccard (the paper's polysemantic ablation)", "jaccard", build=_neurons),
    "hidden": MethodSpec("raw hidden states of the selection layer, mean-pooled, cosine (DLRDS-LLM)", "cosine",
                         build=_hidden),
    "bm25": MethodSpec("BM25 (bm25s) of each pool row against every target example, combined by mean or max "
                       "(--bm25-combine)", text_scorer=_bm25, rowwise=False),
    "dsir": MethodSpec("DSIR: log importance weight of unigram+bigram counts hashed into 10,000 buckets under "
                       "target vs pool n-gram models, as data-selection's HashedNgramDSIR (--dsir-gumbel: "
                       "Gumbel-top-k resampling)", build=_dsir,
                       matrix_scorer=_dsir_scorer, rowwise=False),
    "dense": MethodSpec("sentence-transformers embeddings (default all-MiniLM-L6-v2, --embedder), long texts "
                        "chunked and averaged, cosine to the mean target", "cosine", build=_dense),
    "less": MethodSpec("LESS: LoRA warm-up on a seeded 5 % of the pool, per-sample LoRA gradients (Adam-"
                       "preconditioned for the pool) randomly projected (--less-dim), max cosine over the targets",
                       "cosine", build=_less, matrix_scorer=_less_scorer, rowwise=False),
    "llm2vec": MethodSpec("LLM2Vec embeddings (needs `pip install llm2vec` and a local model, --llm2vec-model), "
                          "cosine to the mean target", "cosine", build=_llm2vec),
    "random": MethodSpec("seeded uniform sample", text_scorer=_random),
}


def get_method(name: str) -> MethodSpec:
    """Look a method up, with a clear error for an unknown name."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}") from None
