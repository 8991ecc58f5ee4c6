"""The per-sample feature cache and featurize_cached."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import scipy.sparse as sp

from mona.data.formats import Record, Sample
from mona.features.base import FeatureBlock, Featurizer
from mona.features.cache import FeatureCache, text_hash
from mona.features.cached import FeaturizeStats, featurize_cached


def _vector(text: str) -> np.ndarray:
    """A deterministic vector of a text (some entries zero, so the sparse form is really sparse)."""
    return np.array([len(text), text.count("a"), 0.0, text.count(" ") + 0.5, 0.0], dtype=np.float32)


class CountingFeaturizer(Featurizer):
    """Vectors from _vector, in blocks of `block` samples; remembers which samples it computed."""

    name = "fake"

    def __init__(self, *, dense: bool = False, block: int = 2, version: int = 1) -> None:
        self.dense = dense
        self.block = block
        self.version = version
        self.calls = 0
        self.computed: list[str] = []

    def key_config(self):
        return {"version": self.version, "dense": self.dense}

    def text_key(self, sample: Sample) -> str:
        return sample.text or ""

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        self.calls += 1
        for start in range(0, len(samples), self.block):
            chunk = samples[start:start + self.block]
            self.computed += [s.id for s in chunk]
            matrix = np.stack([_vector(s.text or "") for s in chunk])
            yield FeatureBlock(list(range(start, start + len(chunk))),
                               matrix if self.dense else sp.csr_matrix(matrix), tokens=len(chunk) * 3)


def _samples(texts: Sequence[str], start: int = 0) -> list[Sample]:
    return [Sample(str(start + i), None, t, Record({"text": t}, start + i, start + i + 1))
            for i, t in enumerate(texts)]


TEXTS = ["a cat", "bake a cake", "add two numbers", "hello", "a banana bread"]


def _expected(samples):
    return np.stack([_vector(s.text) for s in samples])


def _dense(matrix):
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


@pytest.mark.parametrize("dense", [False, True])
def test_second_call_is_served_from_cache(tmp_path, dense):
    samples = _samples(TEXTS)
    first = CountingFeaturizer(dense=dense)
    stats = FeaturizeStats()
    out1 = featurize_cached(first, samples, tmp_path, stats=stats, role="pool")
    assert first.calls == 1 and first.computed == [s.id for s in samples]
    assert (stats.samples, stats.cache_hits, stats.computed, stats.tokens) == (5, 0, 5, 15)
    assert sp.issparse(out1) != dense
    np.testing.assert_allclose(_dense(out1), _expected(samples))
    shards = sorted(tmp_path.glob("features/fake-*/shard-*.npz"))
    assert len(shards) == 3  # one per block as it arrives

    second = CountingFeaturizer(dense=dense)
    stats2 = FeaturizeStats()
    out2 = featurize_cached(second, samples, tmp_path, stats=stats2, role="pool")
    assert second.calls == 0
    assert (stats2.cache_hits, stats2.computed) == (5, 0)
    np.testing.assert_allclose(_dense(out2), _dense(out1))
    assert sorted(tmp_path.glob("features/fake-*/shard-*.npz")) == shards


def test_only_misses_are_computed_and_order_is_kept(tmp_path):
    featurize_cached(CountingFeaturizer(), _samples(TEXTS[:3]), tmp_path, role="pool")
    samples = _samples([TEXTS[4], TEXTS[1], TEXTS[3], TEXTS[0]])
    fz = CountingFeaturizer()
    stats = FeaturizeStats()
    out = featurize_cached(fz, samples, tmp_path, stats=stats, role="pool")
    assert fz.computed == ["0", "2"]  # the two texts not seen before
    assert (stats.cache_hits, stats.computed) == (2, 2)
    np.testing.assert_allclose(_dense(out), _expected(samples))


def test_duplicate_texts_are_computed_once(tmp_path):
    samples = _samples(["hello", "a cat", "hello", "hello"])
    fz = CountingFeaturizer()
    out = featurize_cached(fz, samples, tmp_path, role="pool")
    assert fz.computed == ["0", "1"]
    np.testing.assert_allclose(_dense(out), _expected(samples))


def test_no_cache_dir_recomputes(tmp_path):
    samples = _samples(TEXTS)
    for _ in range(2):
        fz = CountingFeaturizer()
        featurize_cached(fz, samples, None, role="pool")
        assert fz.calls == 1 and len(fz.computed) == 5
    assert not (tmp_path / "features").exists()


def test_config_change_misses(tmp_path):
    samples = _samples(TEXTS)
    featurize_cached(CountingFeaturizer(version=1), samples, tmp_path, role="pool")
    fz = CountingFeaturizer(version=2)
    featurize_cached(fz, samples, tmp_path, role="pool")
    assert len(fz.computed) == 5
    assert len(list((tmp_path / "features").iterdir())) == 2


def _corrupt_garbage(path):
    path.write_bytes(b"this is not an npz file at all")


def _corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_flip_middle(path):
    data = bytearray(path.read_bytes())
    for i in range(60, len(data) - 200, 7):  # damage member contents, keep the zip directory
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_hashes_only(path):
    with np.load(path) as data:
        hashes = data["hashes"]
    with open(path, "wb") as fh:
        np.savez(fh, hashes=hashes)  # readable index, no matrix


@pytest.mark.parametrize("corrupt", [_corrupt_garbage, _corrupt_truncate, _corrupt_flip_middle,
                                     _corrupt_hashes_only])
def test_corrupt_shard_is_dropped_and_recomputed(tmp_path, corrupt):
    samples = _samples(TEXTS)
    featurize_cached(CountingFeaturizer(), samples, tmp_path, role="pool")
    shards = sorted(tmp_path.glob("features/fake-*/shard-*.npz"))
    bad = shards[1]  # holds samples 2 and 3
    corrupt(bad)
    fz = CountingFeaturizer()
    stats = FeaturizeStats()
    out = featurize_cached(fz, samples, tmp_path, stats=stats, role="pool")
    assert sorted(fz.computed) == ["2", "3"]
    assert (stats.cache_hits, stats.computed) == (3, 2)
    np.testing.assert_allclose(_dense(out), _expected(samples))
    # the rewritten cache is healthy: a third pass computes nothing
    again = CountingFeaturizer()
    np.testing.assert_allclose(_dense(featurize_cached(again, samples, tmp_path, role="pool")), _expected(samples))
    assert again.calls == 0


def test_cache_object_forgets_dropped_shard(tmp_path):
    """A FeatureCache that dropped a shard while reading must not serve that shard's old hashes from a
    new shard that reuses its name."""
    cache = FeatureCache(tmp_path, "fake", {"v": 1})
    old = ["a cat", "hello"]
    cache.write([text_hash(t) for t in old], sp.csr_matrix(np.stack([_vector(t) for t in old])))
    _corrupt_hashes_only(cache.dir / "shard-000000.npz")
    reader = FeatureCache(tmp_path, "fake", {"v": 1})
    assert reader.lookup([text_hash(t) for t in old]) == {}
    new = ["bake a cake", "add two numbers"]
    reader.write([text_hash(t) for t in new], sp.csr_matrix(np.stack([_vector(t) for t in new])))
    found = reader.lookup([text_hash(t) for t in old + new])
    assert sorted(found) == [2, 3]
    np.testing.assert_allclose(found[2].toarray()[0], _vector("bake a cake"))


def test_lookup_after_write_in_same_object(tmp_path):
    cache = FeatureCache(tmp_path, "fake", {"v": 1})
    assert cache.lookup([text_hash("x")]) == {}
    cache.write([text_hash("x"), text_hash("yy")], np.stack([_vector("x"), _vector("yy")]))
    found = cache.lookup([text_hash("yy"), text_hash("zzz"), text_hash("x")])
    assert sorted(found) == [0, 2]
    np.testing.assert_allclose(found[0], _vector("yy"))
    np.testing.assert_allclose(found[2], _vector("x"))
    assert (cache.dir / "config.json").exists()
    assert not list(cache.dir.glob(".tmp-*"))


class SidedFeaturizer(CountingFeaturizer):
    """Treats the sides differently, as LESS and mona's top-m storage do: the role is in its key and its vectors."""

    name = "sided"

    def key_config(self):
        return {**super().key_config(), "role": self.role}

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        for block in super().featurize(samples):
            scale = 2.0 if self.role == "target" else 1.0
            yield FeatureBlock(block.positions, block.matrix * scale, block.tokens)


def test_the_side_is_named_per_call_and_keys_the_cache(tmp_path):
    """The role given to featurize_cached reaches the featurizer for that call only (its attribute is back to
    what it was after), and pool and target vectors of the same text are cached apart."""
    fz = SidedFeaturizer()
    samples = _samples(TEXTS[:3])
    pool = _dense(featurize_cached(fz, samples, tmp_path, role="pool"))
    target = _dense(featurize_cached(fz, samples, tmp_path, role="target"))
    assert fz.role == "pool"
    np.testing.assert_allclose(target, 2 * pool)
    assert fz.calls == 2  # the target side missed the pool side's cache entries
    again = _dense(featurize_cached(fz, samples, tmp_path, role="target"))
    assert fz.calls == 2
    np.testing.assert_allclose(again, target)
    with pytest.raises(ValueError, match="role must be one of"):
        featurize_cached(fz, samples, tmp_path, role="targets")
    assert fz.role == "pool"


def test_two_writers_never_replace_each_others_shards(tmp_path, monkeypatch):
    # Two processes on one cache (parallel selects, executor workers): the first publishes its shard while the
    # second is still writing its own; the second must take the next free name, and each keeps its rows.
    import mona.features.cache as cache_module

    first, second = (FeatureCache(tmp_path, "fake", {"v": 1}) for _ in range(2))
    savez = np.savez
    interleaved = []

    def savez_with_a_rival(fh, **arrays):
        if not interleaved:  # the second writer's save: the first writer finishes meanwhile
            interleaved.append(True)
            first.write([text_hash("x")], np.stack([_vector("x")]))
        savez(fh, **arrays)

    monkeypatch.setattr(cache_module.np, "savez", savez_with_a_rival)
    second.write([text_hash("yy")], np.stack([_vector("yy")]))
    monkeypatch.undo()
    assert sorted(p.name for p in first.dir.glob("shard-*.npz")) == ["shard-000000.npz", "shard-000001.npz"]
    reader = FeatureCache(tmp_path, "fake", {"v": 1})
    found = reader.lookup([text_hash("x"), text_hash("yy")])
    np.testing.assert_allclose(found[0], _vector("x"))
    np.testing.assert_allclose(found[1], _vector("yy"))
    assert not list(first.dir.glob(".tmp-*"))


def test_a_file_system_without_hard_links_still_gets_its_shard(tmp_path, monkeypatch):
    import os

    def no_links(*_args):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    cache = FeatureCache(tmp_path, "fake", {"v": 1})
    cache.write([text_hash("x")], np.stack([_vector("x")]))
    cache.write([text_hash("yy")], np.stack([_vector("yy")]))
    assert len(list(cache.dir.glob("shard-*.npz"))) == 2 and not list(cache.dir.glob(".tmp-*"))
    np.testing.assert_allclose(FeatureCache(tmp_path, "fake", {"v": 1}).lookup([text_hash("yy")])[0], _vector("yy"))


class GatedFeaturizer(CountingFeaturizer):
    """A CountingFeaturizer that signals `started` when it begins computing, then waits for `release`."""

    def __init__(self, started, release) -> None:
        super().__init__()
        self.started, self.release = started, release

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        self.started.set()
        assert self.release.wait(10)
        yield from super().featurize(samples)


def test_a_second_caller_of_the_same_request_waits_and_reads_the_first_ones_rows(tmp_path):
    # One command started twice on one cache: the second must not compute what the first is computing.
    import threading

    started, release = threading.Event(), threading.Event()
    first = GatedFeaturizer(started, release)
    samples = _samples(TEXTS)
    worker = threading.Thread(target=featurize_cached, args=(first, samples, tmp_path), kwargs={"role": "pool"})
    worker.start()
    assert started.wait(10)  # the first caller holds the claim and is computing

    # a different request is not held up by it
    other = CountingFeaturizer()
    featurize_cached(other, _samples(["something else"]), tmp_path, role="pool")
    assert other.computed == ["0"] and worker.is_alive()

    second = CountingFeaturizer()
    stats = FeaturizeStats()
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault(
        "out", featurize_cached(second, samples, tmp_path, stats=stats, role="pool")))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # waiting on the first caller's claim
    release.set()
    worker.join(10)
    waiter.join(10)
    assert first.computed == [s.id for s in samples]
    assert second.calls == 0 and (stats.cache_hits, stats.computed) == (5, 0)
    np.testing.assert_allclose(_dense(result["out"]), _expected(samples))
