"""Similarities to the target prototype, on sparse and dense matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mona.scoring.similarity import cosine, euclidean, generalized_jaccard, prototype, score

Z = np.array([1.0, 0.0, 2.0])
P = np.array([0.5, 1.0, 1.0])


def test_jaccard_by_hand():
    # sum min = 0.5 + 0 + 1, sum max = 1 + 1 + 2
    np.testing.assert_allclose(generalized_jaccard(Z[None, :], P), [0.375])
    np.testing.assert_allclose(generalized_jaccard(sp.csr_matrix(Z[None, :]), P), [0.375])


def test_jaccard_identity_and_disjoint():
    pool = np.array([[0.5, 1.0, 1.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    proto = np.array([0.0, 1.0, 1.0])
    np.testing.assert_allclose(generalized_jaccard(pool[:1], pool[0]), [1.0])
    np.testing.assert_allclose(generalized_jaccard(pool, proto), [2 / 2.5, 0.0, 0.0])


def test_jaccard_sparse_equals_dense_with_empty_rows():
    rng = np.random.default_rng(0)
    dense = rng.random((9, 30)) * (rng.random((9, 30)) < 0.2)
    dense[[0, 4, 8]] = 0.0  # empty first, middle and last rows
    proto = rng.random(30) * (np.arange(30) % 3 > 0)  # some zeros, some shared nonzeros
    sparse_scores = generalized_jaccard(sp.csr_matrix(dense), proto)
    dense_scores = generalized_jaccard(dense, proto)
    np.testing.assert_allclose(sparse_scores, dense_scores, rtol=1e-12)
    assert sparse_scores[[0, 4, 8]].tolist() == [0.0, 0.0, 0.0]
    assert (sparse_scores[[1, 2, 3, 5, 6, 7]] > 0).all()
    # reference: the definition itself
    ref = np.minimum(dense, proto).sum(1) / np.maximum(dense, proto).sum(1)
    np.testing.assert_allclose(sparse_scores, ref, rtol=1e-12)


def test_jaccard_all_empty():
    out = generalized_jaccard(sp.csr_matrix((3, 4)), np.zeros(4))
    assert out.tolist() == [0.0, 0.0, 0.0]


def test_cosine_by_hand():
    expected = 2.5 / (1.5 * math.sqrt(5))
    pool = np.array([Z, [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(cosine(pool, P), [expected, 0.0])
    np.testing.assert_allclose(cosine(sp.csr_matrix(pool), P), [expected, 0.0])


def test_euclidean_by_hand():
    pool = np.array([Z, P])
    np.testing.assert_allclose(euclidean(pool, P), [-1.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(euclidean(sp.csr_matrix(pool), P), [-1.5, 0.0], atol=1e-7)


def test_prototype_is_mean():
    targets = np.array([[1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(prototype(targets), [0.5, 1.0, 1.0])
    np.testing.assert_allclose(prototype(sp.csr_matrix(targets)), [0.5, 1.0, 1.0])
    assert prototype(sp.csr_matrix(targets)).ndim == 1


def test_score_dispatch():
    pool = np.array([Z])
    assert score(pool, P, "jaccard")[0] == pytest.approx(0.375)
    assert score(pool, P, "cosine")[0] == pytest.approx(2.5 / (1.5 * math.sqrt(5)))
    assert score(pool, P, "euclidean")[0] == pytest.approx(-1.5)
    with pytest.raises(ValueError, match="unknown similarity"):
        score(pool, P, "manhattan")


def test_jaccard_in_row_blocks_equals_one_block(monkeypatch):
    import mona.scoring.similarity as similarity

    rng = np.random.default_rng(4)
    pool = sp.random(50, 30, density=0.2, format="csr", random_state=5)
    pool[7] = 0  # an empty row inside a block
    proto = rng.random(30)
    whole = similarity.generalized_jaccard(pool, proto)
    monkeypatch.setattr(similarity, "CHUNK_ROWS", 4)
    np.testing.assert_allclose(similarity.generalized_jaccard(pool, proto), whole, rtol=1e-12)
    assert whole[7] == 0 and (whole[np.arange(50) != 7] > 0).any()
