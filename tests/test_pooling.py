"""Pooling per-token codes into one vector per sample."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mona.features.pooling import pool_dense, pool_sparse_codes

# Three tokens: two of sample 0, one of sample 1; sample 2 has no token. k = 2, 4 latents.
ROWS = torch.tensor([0, 0, 1])
VALUES = torch.tensor([[2.0, 1.0], [3.0, 0.0], [4.0, 1.0]])
INDICES = torch.tensor([[0, 2], [0, 1], [3, 2]])


@pytest.mark.parametrize(("pooling", "expected"), [
    ("mean", [[2.5, 0, 0.5, 0], [0, 0, 1, 4], [0, 0, 0, 0]]),
    ("sum", [[5, 0, 1, 0], [0, 0, 1, 4], [0, 0, 0, 0]]),
    ("max", [[3, 0, 1, 0], [0, 0, 1, 4], [0, 0, 0, 0]]),
])
def test_pool_sparse_codes(pooling, expected):
    out = pool_sparse_codes(ROWS, VALUES, INDICES, 3, 4, pooling)
    assert sp.issparse(out) and out.shape == (3, 4)
    np.testing.assert_allclose(out.toarray(), np.array(expected, dtype=np.float32))
    assert out.nnz == 4  # zero codes are not stored
    assert out.has_sorted_indices or out.copy().has_sorted_indices


def test_pool_sparse_codes_mean_divides_by_all_pooled_tokens():
    # latent 1 fires in only one of sample 0's two tokens: the mean still divides by 2
    rows = torch.tensor([0, 0])
    out = pool_sparse_codes(rows, torch.tensor([[6.0], [2.0]]), torch.tensor([[1], [0]]), 1, 2, "mean")
    np.testing.assert_allclose(out.toarray(), [[1.0, 3.0]])


def test_pool_sparse_codes_no_tokens():
    out = pool_sparse_codes(torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), torch.zeros(0, 2, dtype=torch.long),
                            2, 5, "mean")
    assert out.shape == (2, 5) and out.nnz == 0


def test_pool_sparse_codes_matches_dense_reference():
    gen = torch.Generator().manual_seed(0)
    n_tok, k, n_lat, n_rows = 40, 3, 12, 5
    rows = torch.randint(0, n_rows, (n_tok,), generator=gen)
    values = torch.rand(n_tok, k, generator=gen)
    indices = torch.stack([torch.randperm(n_lat, generator=gen)[:k] for _ in range(n_tok)])
    dense = torch.zeros(n_tok, n_lat).scatter_(1, indices, values)
    for pooling in ("mean", "sum", "max"):
        ref = pool_dense(rows, dense, n_rows, pooling)
        out = pool_sparse_codes(rows, values, indices, n_rows, n_lat, pooling)
        np.testing.assert_allclose(out.toarray(), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("pooling", "expected"), [
    ("mean", [[2, -1], [0, 0], [5, 6]]),
    ("sum", [[4, -2], [0, 0], [5, 6]]),
    ("max", [[3, 2], [0, 0], [5, 6]]),
])
def test_pool_dense(pooling, expected):
    rows = torch.tensor([0, 0, 2])
    x = torch.tensor([[1.0, 2.0], [3.0, -4.0], [5.0, 6.0]])
    np.testing.assert_allclose(pool_dense(rows, x, 3, pooling), np.array(expected, dtype=np.float32))


def test_unknown_pooling():
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_sparse_codes(ROWS, VALUES, INDICES, 3, 4, "median")
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_dense(ROWS, VALUES, 3, "median")
