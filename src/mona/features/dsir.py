"""DSIR baseline (Xie et al. 2023, "Data Selection for Language Models via Importance Resampling"), as MoNA
ran it: hashed unigram+bigram counts of each sample's plain text; two bag-of-n-grams models, p_t fitted on the
targets and p_r on the raw data (the pool), both add-one smoothed over the hash buckets; each pool row scored
by its log importance weight  sum_j count_j * (log p_t[j] - log p_r[j]).

Top-k by weight is the default. With MethodOptions.extra["dsir_gumbel"] = True, Gumbel noise (seeded by
options.seed) is added to the log weights before ranking: the top-k of the perturbed weights is a sample
without replacement with probability proportional to the importance weights (DSIR's resampling step).

The count rows depend only on the text and the hashing settings, so they are cached per sample; the two
distributions are refitted on every run (cheap: two column sums)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from mona.data.formats import Sample
from mona.features.base import FeatureBlock, Featurizer, Matrix

# DSIR's tokenizer is nltk's wordpunct_tokenize on lower-cased text: runs of word characters, or of
# punctuation. Single characters (digits, "a", "+") are kept, unlike scikit-learn's default pattern.
TOKEN_PATTERN = r"\w+|[^\w\s]+"
N_FEATURES = 2**16
BATCH = 1024


class DsirFeaturizer(Featurizer):
    """Hashed n-gram count rows (CSR, raw counts, one column per hash bucket)."""

    name = "dsir"

    def __init__(self, n_features: int = N_FEATURES, ngram_range: tuple[int, int] = (1, 2),
                 batch_size: int = BATCH) -> None:
        self.n_features = int(n_features)
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.batch_size = batch_size
        self._vectorizer = None

    @property
    def vectorizer(self):
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                n_features=self.n_features, ngram_range=self.ngram_range, lowercase=True, analyzer="word",
                token_pattern=TOKEN_PATTERN, alternate_sign=False, norm=None, dtype=np.float32)
        return self._vectorizer

    def key_config(self) -> dict[str, Any]:
        return {"method": self.name, "hashing": "sklearn-murmur3", "n_features": self.n_features,
                "ngram_range": list(self.ngram_range), "lowercase": True, "token_pattern": TOKEN_PATTERN,
                "alternate_sign": False, "norm": None}

    def text_key(self, sample: Sample) -> str:
        return sample.plain_text()

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            matrix = sp.csr_matrix(self.vectorizer.transform([s.plain_text() for s in chunk]))
            yield FeatureBlock(list(range(start, start + len(chunk))), matrix)


def _smoothed_log_probs(counts: Matrix, n_features: int) -> np.ndarray:
    """log of the add-one smoothed distribution over hash buckets of the summed count rows."""
    total = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()
    if total.shape[0] != n_features:
        raise ValueError(f"expected {n_features} columns, got {total.shape[0]}")
    return np.log(total + 1.0) - np.log(total.sum() + n_features)


def dsir_log_weights(pool: Matrix, targets: Matrix) -> np.ndarray:
    """Log importance weight of every pool row: counts @ (log p_t - log p_r), p_r fitted on the pool itself."""
    n_features = pool.shape[1]
    log_ratio = _smoothed_log_probs(targets, n_features) - _smoothed_log_probs(pool, n_features)
    if sp.issparse(pool):
        return np.asarray(sp.csr_matrix(pool, dtype=np.float64) @ log_ratio, dtype=np.float64).ravel()
    return np.asarray(pool, dtype=np.float64) @ log_ratio


def dsir_scorer(pool: Matrix, targets: Matrix, options) -> np.ndarray:
    """Registry matrix scorer: log importance weights, plus seeded Gumbel noise if extra["dsir_gumbel"]."""
    weights = dsir_log_weights(pool, targets)
    if options.extra.get("dsir_gumbel"):
        weights = weights + np.random.default_rng(options.seed).gumbel(size=weights.shape[0])
    return weights
