"""Features layer: one featurizer per representation (mona, neurons, hidden, dense, dsir, less, llm2vec) and the
text scorers (bm25, random), their typed options (options.py), pooling, and the content-addressed feature cache."""
