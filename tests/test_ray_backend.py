"""`--backend ray`: featurization on a local Ray cluster started here (2 CPUs, 2 actors) gives the local backend's
selection and scores and fills the same cache; what it cannot run is refused with a clear message."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mona.errors import ConfigError
from mona.features.base import FeatureBlock
from mona.models import resolve_device
from mona.selection.ray_backend import from_columns, to_columns
from test_cli import _args, _invoke, make_files


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for this module (the backend joins it instead of starting its own)."""
    ray = pytest.importorskip("ray", reason="ray is not importable (pip install 'mona[ray]')", exc_type=ImportError)
    pytest.importorskip("ray.data", reason="Ray Data is not importable (pip install 'mona[ray]')",
                        exc_type=ImportError)
    # address="local": a fresh instance even if RAY_ADDRESS is set or a `ray start` cluster runs here
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024**2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def _scores(path) -> np.ndarray:
    return np.array([json.loads(line)["score"] for line in path.read_text().splitlines()])


def test_ray_selects_what_local_selects(ray_cluster, files, model_dir, sae_dir):
    # --top-m: pool rows are truncated and target rows are not, so the actors must know which they featurize
    extra = ["--model", str(model_dir), "--sae", str(sae_dir), "--top-m", "6"]
    runs, cache_dirs = {}, {}
    for backend in ("local", "ray"):
        cache = files["cache"].with_name(f"cache-{backend}")
        result = _invoke(_args(files, *extra, "--backend", backend, "--num-workers", "2"), cache)
        assert result.exit_code == 0, result.stderr
        assert "cache hits 0/15" in result.stderr
        runs[backend] = (files["out"].read_bytes(), _scores(files["scores"]))
        shards = sorted(cache.glob("features/mona-*/shard-*.npz"))
        assert shards
        cache_dirs[backend] = {p.parent.name for p in shards}
    assert cache_dirs["ray"] == cache_dirs["local"]  # the same cache keys: either backend reads the other's
    assert runs["ray"][0] == runs["local"][0]  # the same selection, rows and order
    # actors batch the samples differently, which moves float sums in the last bits (as tests/test_determinism.py)
    np.testing.assert_allclose(runs["ray"][1], runs["local"][1], rtol=0, atol=1e-6)

    # reruns on the ray run's cache, with either backend, compute nothing and give the same bytes
    out_before, scores_before = files["out"].read_bytes(), files["scores"].read_bytes()
    for backend in ("ray", "local"):
        result = _invoke(_args(files, *extra, "--backend", backend), files["cache"].with_name("cache-ray"))
        assert result.exit_code == 0, result.stderr
        assert "cache hits 15/15" in result.stderr
        assert (files["out"].read_bytes(), files["scores"].read_bytes()) == (out_before, scores_before)


def _blocks(kind: str) -> list[FeatureBlock]:
    rng = np.random.default_rng(0)
    if kind == "dense":
        return [FeatureBlock([2, 0], rng.random((2, 5), dtype=np.float32), 7),
                FeatureBlock([1], rng.random((1, 5), dtype=np.float32), 3)]
    if kind == "sparse-equal-rows":
        return [FeatureBlock([2, 0], sp.random(2, 9, 1.0, format="csr", dtype=np.float32, rng=rng), 7)]
    return [FeatureBlock([2, 0], sp.random(2, 9, 0.4, format="csr", dtype=np.float32, rng=rng), 7),
            FeatureBlock([1], sp.csr_matrix((1, 9), dtype=np.float32), 3)]  # a row without codes


@pytest.mark.parametrize("kind", ["sparse", "sparse-equal-rows", "dense"])
def test_columns_carry_vectors_bit_for_bit(kind):
    # what an actor returns, read back by the driver
    blocks = _blocks(kind)
    columns = to_columns(np.array([10, 11, 12]), iter(blocks))
    if kind == "sparse-equal-rows":  # Ray hands rows of equal length back as one 2-D array
        columns = {**columns, "values": np.stack(columns["values"]), "indices": np.stack(columns["indices"])}
    block = from_columns(columns)
    assert block.positions == [12, 10, 11][: len(block.positions)]
    assert block.tokens == sum(b.tokens for b in blocks)
    assert sp.issparse(block.matrix) == (kind != "dense")
    got = block.matrix.toarray() if sp.issparse(block.matrix) else block.matrix
    want = np.vstack([b.matrix.toarray() if sp.issparse(b.matrix) else b.matrix for b in blocks])
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_ray_refuses_a_pool_the_cluster_cannot_hold(ray_cluster, files, model_dir, sae_dir):
    extra = ["--model", str(model_dir), "--sae", str(sae_dir), "--backend", "ray"]
    result = _invoke(_args(files, *extra, "--num-workers", "3"), files["cache"])
    assert result.exit_code == ConfigError.exit_code
    assert "--num-workers 3 needs 3 CPUs" in result.stderr
    result = _invoke(_args(files, *extra, "--num-gpus", "1"), files["cache"])
    assert result.exit_code == ConfigError.exit_code
    assert "the Ray cluster has 0 GPUs" in result.stderr
    assert not files["out"].exists()


def test_an_actors_error_reads_as_a_local_one(ray_cluster, files, model_dir, tmp_path):
    # the driver reads the tokenizer and config; the weights are missing, which only an actor finds out
    broken = tmp_path / "no-weights"
    shutil.copytree(model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    result = _invoke(_args(files, "--method", "hidden", "--model", str(broken), "--backend", "ray"), files["cache"])
    assert result.exit_code == ConfigError.exit_code, result.stderr
    assert f"error: cannot load model '{broken}'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not files["out"].exists()


@pytest.mark.parametrize(("method", "message"), [
    ("bm25", "scores the pool as a whole"),
    ("random", "scores the pool as a whole"),
    ("less", "set-up over the whole pool"),
])
def test_ray_refuses_methods_it_cannot_split(files, model_dir, method, message):
    result = _invoke(_args(files, "--method", method, "--model", str(model_dir), "--backend", "ray"),
                     files["cache"])
    assert result.exit_code == ConfigError.exit_code, result.stderr
    assert message in result.stderr
    assert not files["out"].exists()


def test_missing_ray_says_how_to_install_it(files, model_dir, sae_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = _invoke(_args(files, "--model", str(model_dir), "--sae", str(sae_dir), "--backend", "ray"),
                     files["cache"])
    assert result.exit_code == 5, result.stderr  # DependencyError: a missing optional dependency
    assert "pip install 'mona[ray]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_device_auto_selection(monkeypatch):
    import torch

    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no Apple-silicon GPU"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # the choice only: nothing runs on it
    assert resolve_device("mps") == "mps"
    assert resolve_device("auto") == "cpu"  # auto does not pick mps while that path is unmeasured
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
