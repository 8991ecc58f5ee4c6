"""Pool per-token sparse codes into one sparse vector per sample, without ever forming a dense
tokens x latents matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from mona.features.options import POOLINGS


def pool_sparse_codes(rows: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, n_rows: int,
                      n_latents: int, pooling: str = "mean") -> sp.csr_matrix:
    """rows [N] (sample of each token), values/indices [N, k] (its TopK codes) -> CSR [n_rows, n_latents].
    mean divides by the sample's number of pooled tokens (the paper's choice: sum has a length bias)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    keys = (rows.long().unsqueeze(1) * n_latents + indices.long()).flatten()
    vals = values.float().flatten()
    keep = vals > 0
    keys, vals = keys[keep], vals[keep]
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    if pooling == "max":
        pooled = torch.zeros(len(uniq)).scatter_reduce_(0, inverse, vals, reduce="amax", include_self=False)
    else:
        pooled = torch.zeros(len(uniq)).index_add_(0, inverse, vals)
        if pooling == "mean":
            counts = torch.bincount(rows.long(), minlength=n_rows).clamp(min=1).float()
            pooled /= counts[uniq // n_latents]
    row_ids = (uniq // n_latents).numpy()
    cols = (uniq % n_latents).numpy().astype(np.int32)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(indptr, row_ids + 1, 1)
    return sp.csr_matrix((pooled.numpy().astype(np.float32), cols, np.cumsum(indptr)),
                         shape=(n_rows, n_latents))


def pool_dense(rows: torch.Tensor, x: torch.Tensor, n_rows: int, pooling: str = "mean") -> np.ndarray:
    """rows [N], x [N, d] -> [n_rows, d] pooled dense vectors (for raw hidden states)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    out = torch.zeros(n_rows, x.shape[1])
    if pooling == "max":
        index = rows.long().unsqueeze(1).expand(-1, x.shape[1])
        return out.scatter_reduce_(0, index, x.float(), reduce="amax", include_self=False).numpy()
    out.index_add_(0, rows.long(), x.float())
    if pooling == "mean":
        out /= torch.bincount(rows.long(), minlength=n_rows).clamp(min=1).float().unsqueeze(1)
    return out.numpy()


def keep_top_m(pooled: sp.csr_matrix, m: int | None) -> sp.csr_matrix:
    """Compact storage: each row's m largest entries plus one extra last column holding the mass left out
    (|z|_1 minus the kept entries), so the row's exact L1 norm survives. Against a prototype that is 0 in that
    column, generalized Jaccard then sees S_kept / (|z|_1 + |p|_1 - S_kept): an under-estimate by at most what
    the left-out mass could have shared (see scoring.similarity.jaccard_upper_bound). Ties keep the lower
    latent index. `m=None` only appends the (zero) column, for vectors that are never truncated (targets)."""
    csr = sp.csr_matrix(pooled)
    n_rows, width = csr.shape
    data, indices, counts = [], [], np.zeros(n_rows, dtype=np.int64)
    residual = np.zeros(n_rows, dtype=np.float64)
    for r in range(n_rows):
        lo, hi = csr.indptr[r], csr.indptr[r + 1]
        vals, cols = csr.data[lo:hi], csr.indices[lo:hi]
        if m is not None and len(vals) > m:
            keep = np.sort(np.lexsort((cols, -vals))[:m])  # largest first, lower index on ties
            residual[r] = float(vals.astype(np.float64).sum() - vals[keep].astype(np.float64).sum())
            vals, cols = vals[keep], cols[keep]
        if residual[r] > 0:
            vals, cols = np.append(vals, np.float32(residual[r])), np.append(cols, width)
        data.append(vals)
        indices.append(cols)
        counts[r] = len(vals)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((np.concatenate(data).astype(np.float32) if data else np.zeros(0, np.float32),
                          np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32), indptr),
                         shape=(n_rows, width + 1))


def keep_row_top(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Each row's n largest entries (ties: the lower latent index). Applied to every sample vector, short and
    long rows then carry the same number of latents, which removes max pooling's length bias (a long row fires
    more latents and so shares more with any prototype)."""
    csr = sp.csr_matrix(matrix, copy=True)
    for r in range(csr.shape[0]):
        lo, hi = csr.indptr[r], csr.indptr[r + 1]
        if hi - lo > n:
            vals = csr.data[lo:hi]
            vals[np.lexsort((csr.indices[lo:hi], -vals))[n:]] = 0
    csr.eliminate_zeros()
    return csr
