"""BM25 baseline (via `bm25s`): the pool is the corpus, every target example is a query, and each pool row's
score is the mean (default) or max of its BM25 scores over the target queries.

This is a text scorer, not a featurizer: a BM25 score depends on corpus-level statistics (document frequencies,
average document length) of the whole pool, so a vector cached per sample would be stale as soon as the pool
changes. Indexing is fast (sparse, vectorised) so nothing is cached."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.options import BM25_COMBINE, MethodSettings
from mona.progress import Progress


def bm25_scores(pool_texts: Sequence[str], queries: Sequence[str], combine: str = "mean", *,
                k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """BM25 (Lucene variant, English stopwords removed, no stemming) of every pool text against every query,
    combined over queries by `combine` ("mean" or "max"). Shape: (len(pool_texts),)."""
    if combine not in BM25_COMBINE:
        raise ConfigError(f"unknown BM25 combination {combine!r}; choose one of {', '.join(BM25_COMBINE)}")
    n = len(pool_texts)
    out = np.zeros(n, dtype=np.float64)
    if n == 0 or not queries:
        return out
    import bm25s

    corpus_tokens = bm25s.tokenize(list(pool_texts), stopwords="en", show_progress=False)
    if not corpus_tokens.vocab:  # nothing but stopwords/punctuation anywhere: every score is 0
        return out
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
    if combine == "max":
        out[:] = -np.inf
    for tokens in query_tokens:
        known = [t for t in tokens if t in retriever.vocab_dict]
        # a query with no word in the pool's vocabulary scores 0 everywhere (get_scores refuses empty queries)
        scores = (np.asarray(retriever.get_scores(known), dtype=np.float64) if known
                  else np.zeros(n, dtype=np.float64))
        if combine == "mean":
            out += scores
        else:
            np.maximum(out, scores, out=out)
    if combine == "mean":
        out /= len(query_tokens)
    return out


def bm25_text_scorer(pool: Sequence[Sample], targets: Sequence[Sample], options: MethodSettings,
                     _cache_dir: Path | None = None, _progress: Progress | None = None) -> np.ndarray:
    """Registry text scorer: Bm25Options.combine picks "mean" (default) or "max"."""
    return bm25_scores([s.plain_text() for s in pool], [t.plain_text() for t in targets], options.params.combine)
