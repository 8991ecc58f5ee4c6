"""bench scoring: vectors written as cache shards and scored by streaming them, with one or more threads."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mona.bench.scoring import score_shards, write_vectors
from mona.features.cache import FeatureCache
from mona.scoring.similarity import generalized_jaccard


def test_streamed_scores_match_scoring_the_whole_matrix(tmp_path, monkeypatch):
    monkeypatch.setattr("mona.bench.scoring.SHARD_ROWS", 7)  # several shards, the last one short
    rng = np.random.default_rng(0)
    source = sp.random(5, 40, density=0.3, format="csr", random_state=1, dtype=np.float32)
    info = write_vectors(source, 30, tmp_path, top_m=None)
    shards = sorted(tmp_path.rglob("shard-*.npz"))
    assert len(shards) == 5 and info["rows"] == 30
    whole = sp.vstack([FeatureCache._load_matrix(p) for p in shards], format="csr")
    proto = rng.random(40)
    expected = generalized_jaccard(whole, proto)
    for threads in (1, 2):
        result = score_shards(shards[0].parent, proto, 3, threads)
        assert result["rows"] == 30
        assert result["best"] == expected.max()
    # top-m storage adds the left-out-mass column and keeps each row's L1 mass
    info_m = write_vectors(source, 30, tmp_path / "m", top_m=2)
    assert info_m["stored_per_row"] <= 3
