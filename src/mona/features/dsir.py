"""DSIR baseline (Xie et al. 2023, "Data Selection for Language Models via Importance Resampling") with the
defaults of its reference implementation (PyPI `data-selection` 1.0.3, p-lambda/dsir, `HashedNgramDSIR`):

- features: the lower-cased text split like nltk's `wordpunct_tokenize` (runs of word characters, or of other
  non-space characters), its unigrams and bigrams (DsirOptions.ngrams, default 2) hashed into 10,000 buckets
  (`buckets`). The hash is the reference's own bucket function, int(sha256(ngram)) mod buckets, so the features
  are the reference's exactly (with nltk 3.8.1; nltk 3.10 matches its pattern with the `regex` engine instead of
  `re`, which splits emoji sequences differently); `hashing="murmur3"` (--dsir-hash) uses scikit-learn's
  HashingVectorizer hash instead (same n-grams, other collisions). Each distinct n-gram is joined and hashed
  once in a featurizer's life (the reference hashes every occurrence): tokens and n-grams get stable numbers,
  and a block's n-grams are found and looked up with numpy and pyarrow (`DsirFeaturizer.counts`);
- two bag-of-n-grams models over the buckets, p_t fitted on all target n-grams and p_r on the raw data (the
  pool), both plain maximum-likelihood frequencies (no pseudo-counts; `smoothing` adds some);
- log importance weight of a pool row  sum_j count_j * (log(p_t[j] + eps) - log(p_r[j] + eps)),  eps = 1e-8
  (`epsilon`);
- selection: top-k by weight. With `gumbel`, seeded Gumbel noise is added to the log weights first: the
  top-k of the perturbed weights is a sample without replacement with probability proportional to the
  importance weights (DSIR's resampling, the reference's default).

The reference also drops rows shorter than 100 wordpunct tokens before selecting. On instruction data that
would discard most of a pool (97 % of the demo pool), so it is off by default; `min_length=N` ranks rows
shorter than N tokens after every other row.

The count rows depend only on the text and the hashing settings, so they are cached per sample; the two
distributions are refitted on every run (cheap: two column sums)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.base import FeatureBlock, Featurizer, Matrix
from mona.features.options import DSIR_HASHES, DsirOptions, MethodSettings

# nltk's WordPunctTokenizer pattern (the reference tokenizer), applied to lower-cased text. Single characters
# (digits, "a", "+") are tokens, unlike with scikit-learn's default pattern.
TOKEN_PATTERN = r"\w+|[^\w\s]+"
TOKEN_RE = re.compile(TOKEN_PATTERN)
N_FEATURES: int = DsirOptions.buckets
NGRAMS: int = DsirOptions.ngrams
EPSILON: float = DsirOptions.epsilon
HASHING: str = DsirOptions.hashing
BATCH = 1024
_MEMO_LIMIT = 1 << 20  # distinct n-grams a featurizer keeps numbered (then it starts afresh)


def sha256_bucket(ngram: str, n_features: int) -> int:
    """The reference's bucket of one (space-joined) n-gram."""
    return int.from_bytes(hashlib.sha256(ngram.encode("utf-8")).digest(), "big") % n_features


def sha256_buckets(ngrams: Sequence[str], n_features: int) -> np.ndarray:
    """`sha256_bucket` of many n-grams: Python computes the digests, numpy the 256-bit remainders (Horner's
    rule over the four 64-bit words: every intermediate stays below n_features**2 + n_features, so it fits in
    uint64 up to 2**32 buckets; more buckets take the Python integers)."""
    sha256 = hashlib.sha256
    if n_features >= 1 << 32:
        return np.array([sha256_bucket(g, n_features) for g in ngrams], dtype=np.int64)
    digests = b"".join([sha256(g.encode("utf-8")).digest() for g in ngrams])
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 4).astype(np.uint64)
    n, step = np.uint64(n_features), np.uint64(pow(2, 64, n_features))
    out = np.zeros(len(ngrams), dtype=np.uint64)
    for j in range(4):
        out = (out * step + words[:, j] % n) % n
    return out.astype(np.int64)


class _Ngrams:
    """The distinct n-grams of one order seen so far: a stable number for each, its string and its bucket. An
    n-gram of order m > 1 is keyed by (number of its first m-1 tokens, number of its last token), so a block's
    n-grams are looked up with numpy; only new ones are joined into strings and hashed."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)  # sorted keys
        self.numbers = np.zeros(0, dtype=np.int64)  # the number of each sorted key
        self.strings: list[str] = []
        self.buckets = np.zeros(0, dtype=np.int64)  # by number

    def add(self, strings: list[str], buckets: np.ndarray, keys: np.ndarray | None = None) -> None:
        """Number `strings` (with their buckets) after those seen; `keys` (sorted, new) for orders > 1."""
        first = len(self.strings)
        self.strings.extend(strings)
        self.buckets = np.concatenate([self.buckets, buckets])
        if keys is not None:
            at = np.searchsorted(self.keys, keys)
            self.keys = np.insert(self.keys, at, keys)
            self.numbers = np.insert(self.numbers, at, np.arange(first, first + len(keys)))


class DsirFeaturizer(Featurizer):
    """Hashed n-gram count rows (CSR, raw counts, one column per hash bucket)."""

    name = "dsir"

    def __init__(self, n_features: int = N_FEATURES, ngrams: int = NGRAMS, hashing: str = HASHING,
                 batch_size: int = BATCH) -> None:
        if int(n_features) < 1:
            raise ConfigError(f"dsir: the number of hash buckets must be at least 1, got {n_features}")
        if int(ngrams) < 1:
            raise ConfigError(f"dsir: the n-gram order must be at least 1, got {ngrams}")
        if hashing not in DSIR_HASHES:
            raise ConfigError(f"dsir: unknown hashing {hashing!r}; choose one of {', '.join(DSIR_HASHES)}")
        self.n_features = int(n_features)
        self.ngrams = int(ngrams)
        self.hashing = hashing
        self.batch_size = batch_size
        self._reset()

    def _reset(self) -> None:
        # n-grams recur from block to block (and the targets' in the pool): each is numbered and hashed once
        self._words: dict[str, int] = {}
        self._orders = [_Ngrams() for _ in range(self.ngrams)]

    @classmethod
    def from_options(cls, options: MethodSettings, _runner) -> DsirFeaturizer:
        """Count rows hashed as the options say."""
        p: DsirOptions = options.params
        return cls(n_features=p.buckets, ngrams=p.ngrams, hashing=p.hashing)

    def key_config(self) -> dict[str, Any]:
        hashing = "sklearn-murmur3" if self.hashing == "murmur3" else "sha256-mod"
        return {"method": self.name, "hashing": hashing, "n_features": self.n_features,
                "ngram_range": [1, self.ngrams], "lowercase": True, "token_pattern": TOKEN_PATTERN,
                "alternate_sign": False, "norm": None}

    def text_key(self, sample: Sample) -> str:
        return sample.plain_text()

    def _buckets(self, grams: list[str]) -> np.ndarray:
        """The bucket of each n-gram: scikit-learn's signed murmur3, |h| mod buckets (FeatureHasher's C loop,
        HashingVectorizer's own hash), or the reference's sha256 mod buckets."""
        if not grams:
            return np.zeros(0, dtype=np.int64)
        if self.hashing == "murmur3":
            from sklearn.feature_extraction import FeatureHasher

            hasher = FeatureHasher(self.n_features, input_type="string", alternate_sign=False)
            return hasher.transform([g] for g in grams).indices.astype(np.int64)
        return sha256_buckets(grams, self.n_features)

    def _numbers(self, keys: np.ndarray, m: int) -> np.ndarray:
        """The numbers of order-m n-grams given by their keys (prefix number * 2**32 + last word number); the
        new ones are numbered, joined and hashed first."""
        table, prefixes = self._orders[m - 1], self._orders[m - 2].strings
        distinct, inverse = np.unique(keys, return_inverse=True)  # sorted: a fast search, once per n-gram
        at = np.searchsorted(table.keys, distinct)
        known = at < len(table.keys)
        known[known] = table.keys[at[known]] == distinct[known]
        new = distinct[~known]
        if len(new):
            words = self._orders[0].strings
            strings = [prefixes[a] + " " + words[b]
                       for a, b in zip((new >> 32).tolist(), (new & 0xFFFFFFFF).tolist(), strict=True)]
            table.add(strings, self._buckets(strings), new)
            at = np.searchsorted(table.keys, distinct)
        return table.numbers[at][inverse]

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Count rows of raw texts: every n-gram of the lower-cased tokens (orders 1..ngrams, space-joined, as
        scikit-learn's analyzer and the reference build them) in its bucket. Python touches each token once (the
        regex and a dict lookup) and each distinct n-gram once in the featurizer's life (its string and hash)."""
        if sum(len(t.strings) for t in self._orders) > _MEMO_LIMIT:
            self._reset()
        tokens = [TOKEN_RE.findall(text.lower()) for text in texts]
        flat = list(chain.from_iterable(tokens))
        words, unigrams = self._words, self._orders[0]
        # pyarrow's C hash table finds the block's distinct tokens: Python touches each of those once, not every
        # token (about twice as fast as a dict lookup per token)
        encoded = pa.array(flat, type=pa.large_string()).dictionary_encode()
        local = encoded.dictionary.to_pylist()
        new = [w for w in local if w not in words]
        words.update(zip(new, range(len(words), len(words) + len(new)), strict=True))
        unigrams.add(new, self._buckets(new))
        ids = np.fromiter(map(words.__getitem__, local), dtype=np.int64, count=len(local))[
            encoded.indices.to_numpy(zero_copy_only=False)]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        text_of = np.repeat(np.arange(len(texts)), lengths)
        room = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(ids))  # tokens from here to the row's end
        rows, cols = [text_of], [unigrams.buckets[ids]]
        gram_of = ids  # the number of the order m-1 n-gram starting at each token
        for m in range(2, self.ngrams + 1):
            starts = np.flatnonzero(room >= m)
            numbers = self._numbers((gram_of[starts] << 32) | ids[starts + m - 1], m)
            rows.append(text_of[starts])
            cols.append(self._orders[m - 1].buckets[numbers])
            gram_of = np.zeros(len(ids), dtype=np.int64)
            gram_of[starts] = numbers
        # one sort of (row, bucket) keys gives the CSR matrix with its duplicates summed
        cells, counts = np.unique(np.concatenate(rows) * self.n_features + np.concatenate(cols), return_counts=True)
        indptr = np.searchsorted(cells, np.arange(len(texts) + 1) * self.n_features)
        return sp.csr_matrix((counts.astype(np.float32), cells % self.n_features, indptr),
                             shape=(len(texts), self.n_features))

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            yield FeatureBlock(list(range(start, start + len(chunk))), self.counts([s.plain_text() for s in chunk]))


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
    DsirOptions(smoothing=smoothing, epsilon=epsilon).check()
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


def dsir_scorer(pool: Matrix, targets: Matrix, options: MethodSettings) -> np.ndarray:
    """Registry matrix scorer: log importance weights (DsirOptions in options.params), plus Gumbel noise seeded by
    options.seed if `gumbel`; rows shorter than `min_length` tokens go after all others."""
    config: DsirOptions = options.params or DsirOptions()
    weights = dsir_log_weights(pool, targets, config.smoothing, config.epsilon)
    if config.gumbel:
        weights = weights + np.random.default_rng(options.seed).gumbel(size=weights.shape[0])
    if config.min_length > 0 and weights.size:
        short = token_lengths(pool, config.ngrams) < config.min_length
        if short.any() and not short.all():
            # a constant shift keeps the order among the short rows and puts all of them below every long one
            weights = np.where(short, weights - (weights.max() - weights.min() + 1.0), weights)
    return weights
