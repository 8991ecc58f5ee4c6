"""Fault injection: `mona select` killed (SIGKILL) at random points of featurization, several times, then run
to the end, gives the selection of an uninterrupted run; a killed run leaves no OUT or SCORES behind."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

import numpy as np

from conftest import sentences, write_jsonl
from test_cli import MONA


def _env(cache):
    return {**os.environ, "MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _shards(cache) -> int:
    return len(list(cache.glob("features/*/shard-*.npz")))


def test_killed_featurization_resumes_to_the_same_selection(tmp_path, model_dir, sae_dir):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i:03d}", "text": t}
                                                 for i, t in enumerate(sentences(240, seed=11))])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in sentences(4, seed=12)])

    def args(name):
        return [str(MONA), "select", "--pool", str(pool), "--target", str(target), "--budget", "24",
                "--model", str(model_dir), "--sae", str(sae_dir), "--batch-tokens", "48", "-q",
                "--out", str(tmp_path / f"{name}.jsonl"), "--scores", str(tmp_path / f"{name}.scores.jsonl")]

    ref = subprocess.run(args("ref"), env=_env(tmp_path / "ref-cache"), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    total = _shards(tmp_path / "ref-cache")
    assert total > 20  # enough batches to be killed in between

    cache = tmp_path / "cache"
    rng = random.Random(0)
    kills = 0
    for _ in range(4):
        goal = min(total - 1, _shards(cache) + rng.randint(1, total // 4))
        proc = subprocess.Popen(args("sel"), env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and _shards(cache) < goal and time.time() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        assert not (tmp_path / "sel.jsonl").exists() and not (tmp_path / "sel.scores.jsonl").exists()
        assert not list(tmp_path.glob(".sel*.tmp"))
    assert kills >= 3 and 0 < _shards(cache) < total

    final = subprocess.run(args("sel"), env=_env(cache), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert (tmp_path / "sel.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    scores = [[json.loads(x)["score"] for x in (tmp_path / f"{n}.scores.jsonl").read_text().splitlines()]
              for n in ("ref", "sel")]
    np.testing.assert_allclose(scores[1], scores[0], rtol=0, atol=1e-6)
