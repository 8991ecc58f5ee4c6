"""Streaming selection (the pool read, featurized and scored chunk by chunk) and compact top-m storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import mona.selection.pipeline as pipeline
from mona.features.pooling import keep_top_m
from mona.scoring.similarity import generalized_jaccard, jaccard_upper_bound
from test_cli import _args, _check_outputs, _invoke, make_files


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


@pytest.mark.parametrize("method", ["mona", "random"])
def test_chunked_pool_gives_the_same_selection(files, model_dir, sae_dir, monkeypatch, method):
    """Chunks of 3 rows select exactly what one chunk does, and no chunk larger than asked is featurized."""
    seen: list[int] = []
    original = pipeline.featurize_cached

    def spy(featurizer, samples, *args, **kwargs):
        if kwargs["role"] == "pool":
            seen.append(len(samples))
        return original(featurizer, samples, *args, **kwargs)

    monkeypatch.setattr(pipeline, "featurize_cached", spy)
    outputs = []
    for i, rows in enumerate(("3", "100000")):
        seen.clear()
        result = _invoke(_args(files, "--method", method, "--model", str(model_dir), "--sae", str(sae_dir),
                               "--stream-rows", rows), files["cache"].with_name(f"cache-{i}"))
        assert result.exit_code == 0, result.stderr
        scores = _check_outputs(files, 4)
        outputs.append((files["out"].read_bytes(), [s["score"] for s in scores]))
        if method == "mona":
            assert max(seen) <= int(rows) and sum(seen) == len(scores)
    assert outputs[0][0] == outputs[1][0]
    np.testing.assert_allclose(outputs[0][1], outputs[1][1], rtol=0, atol=1e-6)


def test_bad_row_at_the_end_fails_before_any_featurization(files, model_dir, sae_dir):
    with files["pool"].open("a") as fh:
        fh.write('{"text": "fine"}\n{"text": broken\n')
    result = _invoke(_args(files, "--model", str(model_dir), "--sae", str(sae_dir)), files["cache"])
    assert result.exit_code == 2
    assert "broken JSON" in result.stderr
    assert not files["cache"].joinpath("features").exists()  # nothing was featurized
    assert not files["out"].exists()


def test_top_m_certified_selection_matches_full_vectors(files, model_dir, sae_dir):
    base = _args(files, "--model", str(model_dir), "--sae", str(sae_dir))
    assert _invoke([*base, "--top-m", "0"], files["cache"]).exit_code == 0  # whole vectors
    full = files["out"].read_bytes()
    full_scores = [json.loads(line)["score"] for line in files["scores"].read_text().splitlines()]
    # m larger than any row's nonzeros: nothing is cut, scores equal, selection certified
    result = _invoke([*base, "--top-m", "100000"], files["cache"])
    assert result.exit_code == 0, result.stderr
    assert "certified unchanged" in result.stderr
    assert files["out"].read_bytes() == full
    np.testing.assert_allclose([json.loads(x)["score"] for x in files["scores"].read_text().splitlines()],
                               full_scores, rtol=0, atol=1e-6)
    # m = 1 cuts almost everything: scores only go down, and the summary reports the gap
    result = _invoke([*base, "--top-m", "1"], files["cache"])
    assert result.exit_code == 0, result.stderr
    assert "top-m storage: scores low by at most" in result.stderr
    low = [json.loads(x)["score"] for x in files["scores"].read_text().splitlines()]
    assert all(a <= b + 1e-7 for a, b in zip(low, full_scores, strict=True))
    assert low != pytest.approx(full_scores)


def test_top_m_is_refused_below_one(files, model_dir, sae_dir):
    result = _invoke(_args(files, "--model", str(model_dir), "--sae", str(sae_dir), "--top-m", "-1"), files["cache"])
    assert result.exit_code == 4  # a configuration error
    assert "--top-m must be at least 1 (or 0" in result.stderr


def test_keep_top_m_keeps_the_largest_and_the_exact_mass():
    z = sp.csr_matrix(np.array([[0.0, 5.0, 1.0, 3.0, 0.5], [2.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    kept = keep_top_m(z, 2).toarray()
    assert kept.shape == (2, 6)
    np.testing.assert_allclose(kept[0], [0, 5, 0, 3, 0, 1.5])  # 1.0 + 0.5 left out, in the last column
    np.testing.assert_allclose(kept[1], [2, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(kept.sum(axis=1), z.toarray().sum(axis=1))
    np.testing.assert_allclose(keep_top_m(z, None).toarray()[:, :5], z.toarray())


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 12))
def test_truncated_scores_bracket_the_full_score(seed, m):
    rng = np.random.default_rng(seed)
    dense = rng.random((8, 20)) * (rng.random((8, 20)) < 0.5)
    proto = rng.random(20) * (rng.random(20) < 0.6)
    full = generalized_jaccard(sp.csr_matrix(dense), proto)
    stored = keep_top_m(sp.csr_matrix(dense.astype(np.float32)), m)
    proto_ext = np.append(proto, 0.0)
    lower = generalized_jaccard(stored, proto_ext)
    upper = jaccard_upper_bound(stored, proto_ext)
    assert np.all(lower <= full + 1e-6)
    assert np.all(full <= upper + 1e-6)
