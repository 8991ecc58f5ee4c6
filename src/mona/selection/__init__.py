"""Selection layer: the options of a selection, the registry of methods, the pipeline (read, featurize, score,
rank, write) with its budgets, the result, and the Ray backend."""
