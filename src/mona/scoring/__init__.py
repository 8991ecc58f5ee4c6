"""Scoring layer: similarity of pool vectors to a target prototype."""

from mona.scoring.similarity import SIMILARITIES, cosine, euclidean, generalized_jaccard, prototype, score

__all__ = ["SIMILARITIES", "cosine", "euclidean", "generalized_jaccard", "prototype", "score"]
