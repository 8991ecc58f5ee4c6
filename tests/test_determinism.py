"""Determinism: the same inputs and settings give byte-identical OUT and SCORES run after run; other batch
sizes and thread counts give the same OUT and scores equal within 1e-6 (float sums change in the last bits
with the shapes of the matrix products; see docs/reliability.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_cli import _args, _invoke, make_files


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


@pytest.mark.parametrize("method", ["mona", "hidden"])
def test_outputs_across_runs_batches_and_threads(files, model_dir, sae_dir, method):
    threads = torch.get_num_threads()
    runs = []
    try:
        for i, (batch_tokens, n_threads) in enumerate([(8192, 1), (8192, 1), (16, 1), (8192, 2), (48, 2)]):
            # a fresh cache each time, so every run featurizes with its own batching and threads
            result = _invoke(_args(files, "--method", method, "--model", str(model_dir), "--sae", str(sae_dir),
                                   "--batch-tokens", str(batch_tokens), "--threads", str(n_threads)),
                             files["cache"].with_name(f"cache-{i}"))
            assert result.exit_code == 0, result.stderr
            runs.append((files["out"].read_bytes(), files["scores"].read_bytes()))
    finally:
        torch.set_num_threads(threads)
    assert runs[0] == runs[1]  # same settings: byte-identical
    assert len({out for out, _ in runs}) == 1  # any batching or thread count: the same selection
    scores = [np.array([json.loads(line)["score"] for line in s.splitlines()]) for _, s in runs]
    for other in scores[2:]:
        np.testing.assert_allclose(other, scores[0], rtol=0, atol=1e-6)


def test_cached_rerun_with_other_batching_is_byte_identical(files, model_dir, sae_dir):
    outputs = set()
    for batch_tokens in ("8192", "16"):
        result = _invoke(_args(files, "--model", str(model_dir), "--sae", str(sae_dir), "--batch-tokens",
                               batch_tokens), files["cache"])
        assert result.exit_code == 0, result.stderr
        outputs.add((files["out"].read_bytes(), files["scores"].read_bytes()))
    assert len(outputs) == 1
