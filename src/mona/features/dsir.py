"""DSIR baseline (Xie et al. 2023, "Data Selection for Language Models via Importance Resampling") with the
defaults of its reference implementation (PyPI `data-selection` 1.0.3, p-lambda/dsir, `HashedNgramDSIR`):

- features: the lower-cased text split like nltk's `wordpunct_tokenize` (runs of word characters, or of other
  non-space characters), its unigrams and bigrams (`dsir_ngrams`, default 2) hashed into 10,000 buckets
  (`dsir_buckets`). The hash is scikit-learn's murmur3 (HashingVectorizer) by default; `dsir_hash="sha256"`
  uses the reference's own bucket function, int(sha256(ngram)) mod buckets, and then reproduces its features
  exactly (with nltk 3.8.1; nltk 3.10 matches its pattern with the `regex` engine instead of `re`, which splits
  emoji sequences differently);
- two bag-of-n-grams models over the buckets, p_t fitted on all target n-grams and p_r on the raw data (the
  pool), both plain maximum-likelihood frequencies (no pseudo-counts; `dsir_smoothing` adds some);
- log importance weight of a pool row  sum_j count_j * (log(p_t[j] + eps) - log(p_r[j] + eps)),  eps = 1e-8
  (`dsir_epsilon`);
- selection: top-k by weight. With `dsir_gumbel`, seeded Gumbel noise is added to the log weights first: the
  top-k of the perturbed weights is a sample without replacement with probability proportional to the
  importance weights (DSIR's resampling, the reference's default).

The reference also drops rows shorter than 100 wordpunct tokens before selecting. On instruction data that
would discard most of a pool (97 % of the demo pool), so it is off by default; `dsir_min_length=N` ranks rows
shorter than N tokens after every other row.

The count rows depend only on the text and the hashing settings, so they are cached per sample; the two
distributions are refitted on every run (cheap: two column sums)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.base import FeatureBlock, Featurizer, Matrix

# nltk's WordPunctTokenizer pattern (the reference tokenizer), applied to lower-cased text. Single characters
# (digits, "a", "+") are tokens, unlike with scikit-learn's default pattern.
TOKEN_PATTERN = r"\w+|[^\w\s]+"
N_FEATURES = 10_000
NGRAMS = 2
EPSILON = 1e-8
HASHES = ("murmur3", "sha256")
BATCH = 1024
_MEMO_LIMIT = 1 << 20  # n-gram -> bucket entries kept by the sha256 hasher


def sha256_bucket(ngram: str, n_features: int) -> int:
    """The reference's bucket of one (space-joined) n-gram."""
    return int.from_bytes(hashlib.sha256(ngram.encode("utf-8")).digest(), "big") % n_features


class DsirFeaturizer(Featurizer):
    """Hashed n-gram count rows (CSR, raw counts, one column per hash bucket)."""

    name = "dsir"

    def __init__(self, n_features: int = N_FEATURES, ngrams: int = NGRAMS, hashing: str = "murmur3",
                 batch_size: int = BATCH) -> None:
        if int(n_features) < 1:
            raise ConfigError(f"dsir: the number of hash buckets must be at least 1, got {n_features}")
        if int(ngrams) < 1:
            raise ConfigError(f"dsir: the n-gram order must be at least 1, got {ngrams}")
        if hashing not in HASHES:
            raise ConfigError(f"dsir: unknown hashing {hashing!r}; choose one of {', '.join(HASHES)}")
        self.n_features = int(n_features)
        self.ngrams = int(ngrams)
        self.hashing = hashing
        self.batch_size = batch_size
        self._vectorizer = None
        self._memo: dict[str, int] = {}

    @property
    def vectorizer(self):
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                n_features=self.n_features, ngram_range=(1, self.ngrams), lowercase=True, analyzer="word",
                token_pattern=TOKEN_PATTERN, alternate_sign=False, norm=None, dtype=np.float32)
        return self._vectorizer

    def key_config(self) -> dict[str, Any]:
        hashing = "sklearn-murmur3" if self.hashing == "murmur3" else "sha256-mod"
        return {"method": self.name, "hashing": hashing, "n_features": self.n_features,
                "ngram_range": [1, self.ngrams], "lowercase": True, "token_pattern": TOKEN_PATTERN,
                "alternate_sign": False, "norm": None}

    def text_key(self, sample: Sample) -> str:
        return sample.plain_text()

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Count rows of raw texts."""
        if self.hashing == "murmur3":
            return sp.csr_matrix(self.vectorizer.transform(texts))
        # the same n-grams as the vectorizer's (its analyzer), bucketed by sha256, each n-gram hashed once
        analyze = self.vectorizer.build_analyzer()
        memo, n = self._memo, self.n_features
        indices: list[int] = []
        indptr = [0]
        for text in texts:
            for gram in analyze(text):
                bucket = memo.get(gram)
                if bucket is None:
                    if len(memo) >= _MEMO_LIMIT:
                        memo.clear()
                    bucket = memo[gram] = sha256_bucket(gram, n)
                indices.append(bucket)
            indptr.append(len(indices))
        matrix = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int64),
                                np.asarray(indptr, dtype=np.int64)), shape=(len(texts), n))
        matrix.sum_duplicates()
        return matrix

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            yield FeatureBlock(list(range(start, start + len(chunk))), self.counts([s.plain_text() for s in chunk]))


@dataclass(frozen=True)
class DsirConfig:
    """The knobs of DSIR, read from MethodOptions.extra (`dsir_*` keys; None or missing: the default)."""

    buckets: int = N_FEATURES
    ngrams: int = NGRAMS
    hashing: str = "murmur3"
    smoothing: float = 0.0
    epsilon: float = EPSILON
    min_length: int = 0
    gumbel: bool = False

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> DsirConfig:
        def get(key: str, default, kind):
            value = extra.get(f"dsir_{key}")
            return default if value is None else kind(value)

        d = cls()
        config = cls(buckets=get("buckets", d.buckets, int), ngrams=get("ngrams", d.ngrams, int),
                     hashing=get("hash", d.hashing, str), smoothing=get("smoothing", d.smoothing, float),
                     epsilon=get("epsilon", d.epsilon, float), min_length=get("min_length", d.min_length, int),
                     gumbel=bool(extra.get("dsir_gumbel")))
        config.validate()
        return config

    def validate(self) -> None:
        if self.hashing not in HASHES:
            raise ConfigError(f"dsir: unknown hashing {self.hashing!r}; choose one of {', '.join(HASHES)}")
        if self.buckets < 1 or self.ngrams < 1:
            raise ConfigError(f"dsir: buckets and n-gram order must be at least 1, got {self.buckets} and "
                              f"{self.ngrams}")
        _check_smoothing(self.smoothing, self.epsilon)
        if self.min_length < 0:
            raise ConfigError(f"dsir: the minimum length must be >= 0, got {self.min_length}")

    def featurizer(self) -> DsirFeaturizer:
        return DsirFeaturizer(n_features=self.buckets, ngrams=self.ngrams, hashing=self.hashing)


def _check_smoothing(smoothing: float, epsilon: float) -> None:
    if not (smoothing >= 0 and epsilon >= 0):
        raise ConfigError(f"dsir: smoothing and epsilon must be >= 0, got {smoothing} and {epsilon}")
    if not smoothing + epsilon > 0:
        raise ConfigError("dsir: smoothing and epsilon cannot both be 0 (the log of an unseen bucket's "
                          "probability would be -inf)")


def _log_probs(counts: Matrix, n_features: int, smoothing: float, epsilon: float, what: str) -> np.ndarray:
    """log(p + epsilon) of the bucket distribution p of the summed count rows, p smoothed by `smoothing`
    pseudo-counts per bucket."""
    total = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()
    if total.shape[0] != n_features:
        raise ValueError(f"expected {n_features} columns, got {total.shape[0]}")
    denominator = total.sum() + smoothing * n_features
    if not denominator > 0:
        raise ConfigError(f"dsir: the {what} contain no word tokens, so there is no n-gram model to fit")
    return np.log((total + smoothing) / denominator + epsilon)


def dsir_log_weights(pool: Matrix, targets: Matrix, smoothing: float = 0.0, epsilon: float = EPSILON
                     ) -> np.ndarray:
    """Log importance weight of every pool row: counts @ (log(p_t + eps) - log(p_r + eps)), p_t fitted on the
    targets, p_r on the pool itself, each with `smoothing` pseudo-counts per bucket (the reference: 0 and 1e-8;
    smoothing=1, epsilon=0 is add-one smoothing)."""
    _check_smoothing(smoothing, epsilon)
    n_features = pool.shape[1]
    if pool.shape[0] == 0 or pool.sum() == 0:
        return np.zeros(pool.shape[0])  # no n-gram in the pool: every row weighs 0
    log_ratio = (_log_probs(targets, n_features, smoothing, epsilon, "targets")
                 - _log_probs(pool, n_features, smoothing, epsilon, "pool"))
    if sp.issparse(pool):
        return np.asarray(sp.csr_matrix(pool, dtype=np.float64) @ log_ratio, dtype=np.float64).ravel()
    return np.asarray(pool, dtype=np.float64) @ log_ratio


def token_lengths(counts: Matrix, ngrams: int) -> np.ndarray:
    """Tokens per row recovered from its n-gram count (orders 1..ngrams), as the reference computes it:
    (sum of counts + n(n-1)/2) // n, exact for rows of at least n-1 tokens."""
    total = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    return np.floor((np.rint(total) + ngrams * (ngrams - 1) / 2) / ngrams).astype(np.int64)


def dsir_scorer(pool: Matrix, targets: Matrix, options) -> np.ndarray:
    """Registry matrix scorer: log importance weights (DsirConfig knobs from options.extra), plus Gumbel noise
    seeded by options.seed if `dsir_gumbel`; rows shorter than `dsir_min_length` tokens go after all others."""
    config = DsirConfig.from_extra(options.extra)
    weights = dsir_log_weights(pool, targets, config.smoothing, config.epsilon)
    if config.gumbel:
        weights = weights + np.random.default_rng(options.seed).gumbel(size=weights.shape[0])
    if config.min_length > 0 and weights.size:
        short = token_lengths(pool, config.ngrams) < config.min_length
        if short.any() and not short.all():
            # a constant shift keeps the order among the short rows and puts all of them below every long one
            weights = np.where(short, weights - (weights.max() - weights.min() + 1.0), weights)
    return weights
