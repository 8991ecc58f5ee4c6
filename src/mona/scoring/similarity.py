"""Similarities between pool vectors and a target prototype, computed row-wise on sparse matrices: only
each row's own nonzeros are touched, never a dense pool x latents matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SIMILARITIES = ("jaccard", "cosine", "euclidean")
CHUNK_ROWS = 65536


def prototype(targets: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Mean of the target vectors, as a dense 1-D array (one entry per latent or dimension)."""
    return np.asarray(targets.mean(axis=0), dtype=np.float64).ravel()


def _shared_mass(pool: sp.csr_matrix | np.ndarray, proto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S = sum_k min(z_k, p_k), |z|_1) per row, touching only each row's own nonzeros."""
    if not sp.issparse(pool):
        dense = np.asarray(pool, dtype=np.float64)
        return np.minimum(dense, proto).sum(axis=1), dense.sum(axis=1)
    csr = sp.csr_matrix(pool)
    n = csr.shape[0]
    shared, z_l1 = np.zeros(n), np.zeros(n)
    # float32 rows (every cache) are compared in float32, other rows in float64
    data_all = csr.data if csr.data.dtype == np.float32 else csr.data.astype(np.float64)
    proto_typed = proto.astype(data_all.dtype)
    # Row blocks over views of the CSR arrays keep temporaries small whatever the pool's size; reduceat over each
    # row's own nonzeros (summed in float64) replaced a bincount over row ids with float64 copies of every block:
    # 0.78 s instead of 2.49 s for 65,536 random rows x 1,300 nonzeros (best of 3, idle machine).
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        lo, hi = csr.indptr[start], csr.indptr[stop]
        data = data_all[lo:hi]
        mins = np.minimum(data, proto_typed[csr.indices[lo:hi]])
        offsets = csr.indptr[start:stop] - lo
        rows = np.flatnonzero(np.diff(csr.indptr[start:stop + 1]) > 0)  # reduceat needs non-empty segments
        if len(rows):
            shared[start + rows] = np.add.reduceat(mins, offsets[rows], dtype=np.float64)
            z_l1[start + rows] = np.add.reduceat(data, offsets[rows], dtype=np.float64)
    return shared, z_l1


def _jaccard_from(shared: np.ndarray, z_l1: np.ndarray, p_l1: float) -> np.ndarray:
    denom = z_l1 + p_l1 - shared
    return np.divide(shared, denom, out=np.zeros_like(shared), where=denom > 0)


def generalized_jaccard(pool: sp.csr_matrix | np.ndarray, proto: np.ndarray) -> np.ndarray:
    """J(z, p) = sum_k min(z_k, p_k) / sum_k max(z_k, p_k) for non-negative vectors, computed as
    S / (|z|_1 + |p|_1 - S) with S = sum_k min(z_k, p_k): only the shared nonzeros matter."""
    proto = np.asarray(proto, dtype=np.float64)
    return _jaccard_from(*_shared_mass(pool, proto), float(proto.sum()))


def jaccard_upper_bound(pool: sp.csr_matrix, proto: np.ndarray) -> np.ndarray:
    """For rows stored by features.pooling.keep_top_m (last column = left-out mass r, prototype 0 there): the
    largest generalized Jaccard the full vector could have. The left-out entries share at most r with the
    prototype (and at most what the prototype has beyond the kept overlap), so S lies in [S_kept, S_kept + r]
    and J, increasing in S, in [J(S_kept), J(S_kept + r)]."""
    csr = sp.csr_matrix(pool)
    proto = np.asarray(proto, dtype=np.float64)
    p_l1 = float(proto.sum())
    shared, z_l1 = _shared_mass(csr, proto)
    residual = np.asarray(csr[:, -1].toarray(), dtype=np.float64).ravel()
    return _jaccard_from(shared + np.minimum(residual, p_l1 - shared), z_l1, p_l1)


def _row_norms(pool: sp.csr_matrix | np.ndarray) -> np.ndarray:
    if sp.issparse(pool):
        return np.sqrt(np.asarray(pool.multiply(pool).sum(axis=1), dtype=np.float64).ravel())
    return np.linalg.norm(np.asarray(pool, dtype=np.float64), axis=1)


def cosine(pool: sp.csr_matrix | np.ndarray, proto: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to the prototype (0 for an all-zero row)."""
    proto = np.asarray(proto, dtype=np.float64)
    dots = np.asarray(pool @ proto, dtype=np.float64).ravel()
    denom = _row_norms(pool) * np.linalg.norm(proto)
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)


def euclidean(pool: sp.csr_matrix | np.ndarray, proto: np.ndarray) -> np.ndarray:
    """Negative Euclidean distance to the prototype (higher is closer), via |z|^2 - 2 z.p + |p|^2."""
    proto = np.asarray(proto, dtype=np.float64)
    sq = _row_norms(pool) ** 2 - 2 * np.asarray(pool @ proto, dtype=np.float64).ravel() + proto @ proto
    return -np.sqrt(np.maximum(sq, 0.0))


def score(pool: sp.csr_matrix | np.ndarray, proto: np.ndarray, similarity: str = "jaccard") -> np.ndarray:
    """Score every pool row against the prototype."""
    if similarity == "jaccard":
        return generalized_jaccard(pool, proto)
    if similarity == "cosine":
        return cosine(pool, proto)
    if similarity == "euclidean":
        return euclidean(pool, proto)
    raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")


def prototype_scorer(pool: sp.csr_matrix | np.ndarray, targets: sp.csr_matrix | np.ndarray, options) -> np.ndarray:
    """The paper's scoring, the registry's default: similarity (`options.similarity`) of each pool vector to the
    mean target vector."""
    return score(pool, prototype(targets), options.similarity or "jaccard")
