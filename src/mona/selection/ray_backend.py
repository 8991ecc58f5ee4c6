"""`--backend ray`: featurize the samples the cache lacks on Ray Data, over an actor pool with one model per actor,
so a pool spreads over the CPUs or GPUs of a cluster. The driver still writes every block to the cache as it
arrives, exactly as the local backend does: only where the vectors are computed changes."""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from mona import errors
from mona.data.formats import Sample
from mona.errors import ConfigError, DependencyError, MonaError
from mona.features.base import FeatureBlock, Featurizer
from mona.features.cached import ComputeFn
from mona.features.lm import LMRunner
from mona.selection.registry import MethodOptions, get_method

BATCH_SIZE = 256  # samples per actor call: one cache block each, so a crash loses at most this many per worker


def import_ray() -> Any:
    """The `ray` module with Ray Data, or a DependencyError saying how to install it."""
    try:
        import ray
        import ray.data  # needs what the `data` extra of ray installs
    except ImportError:
        raise DependencyError("--backend ray needs Ray Data: pip install 'mona[ray]'") from None
    return ray


def build_featurizer(options: MethodOptions) -> Featurizer:
    """The method's featurizer, as each actor builds it (refusing methods without per-sample vectors)."""
    spec = get_method(options.method)
    if not spec.featurizes:
        raise ConfigError(f"--backend ray featurizes samples in parallel, but {options.method} scores the pool as a "
                          "whole and has no per-sample vectors; use --backend local")
    return spec.build(options, LMRunner(options.lm))


def check_splittable(featurizer: Featurizer, method: str) -> None:
    """Refuse a featurizer whose vectors need more than the sample itself (and its role, which the actors are
    given): the actors do not see the corpus-level set-up of `prepare`."""
    if type(featurizer).prepare is not Featurizer.prepare:
        raise ConfigError(f"--backend ray cannot split {method}: its vectors depend on set-up over the whole pool "
                          "(Featurizer.prepare); use --backend local")


def ray_compute(options: MethodOptions, *, num_workers: int, num_gpus: float,
                batch_size: int = BATCH_SIZE) -> ComputeFn:
    """A compute function for `featurize_cached` that runs on Ray: `num_workers` actors, each with `num_gpus`
    GPUs (0: CPU only) and its own copy of the model, featurize batches of at most `batch_size` samples. Ray is
    started (or joined: RAY_ADDRESS, or a cluster `ray start` left on this machine) only when some sample is not
    cached."""
    if num_workers < 1:
        raise ConfigError(f"--num-workers must be at least 1, got {num_workers}")
    if num_gpus < 0:
        raise ConfigError(f"--num-gpus must be at least 0, got {num_gpus}")
    if batch_size < 1:
        raise ConfigError(f"the Ray batch size must be at least 1, got {batch_size}")
    check_splittable(build_featurizer(options), options.method)  # fails here, before Ray starts
    ray = import_ray()
    # an actor with a GPU reserved runs on it (and fails clearly if it cannot); one without stays on its CPU even
    # where the node has a GPU, which other actors may hold. The actors run the dtype this process resolved, which
    # is the one in the cache key: an actor resolving `auto` on its own device could write bf16 vectors under an
    # fp32 key.
    dtype = LMRunner(options.lm).resolved_dtype().dtype
    actor_options = replace(options, lm=replace(options.lm, device="cuda" if num_gpus > 0 else "cpu", dtype=dtype))

    def compute(samples: Sequence[Sample], role: str) -> Iterator[FeatureBlock]:
        if not samples:
            return
        connect(ray)
        # small inputs are cut finer, so that every worker gets a share
        size = max(1, min(batch_size, math.ceil(len(samples) / num_workers)))
        workers = min(num_workers, math.ceil(len(samples) / size))
        check_resources(ray.cluster_resources(), workers, num_gpus)
        items = [{"position": i, "sample": pickle.dumps(s)} for i, s in enumerate(samples)]
        results = ray.data.from_items(items).map_batches(
            FeaturizeActor, fn_constructor_kwargs={"options": actor_options, "role": role}, batch_size=size,
            batch_format="numpy", num_gpus=num_gpus or None,
            # one batch at a time per actor: a batch queued behind a busy actor would wait while another idles
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1))
        try:
            for columns in results.iter_batches(batch_size=None, batch_format="numpy"):
                if len(columns["position"]):
                    yield from_columns(columns)
        except Exception as exc:
            error = _user_error(exc)
            if error is None:
                raise
            raise error from None

    return compute


def connect(ray: Any) -> None:
    """Join the cluster named by RAY_ADDRESS (failing if it is not there), else the one `ray start` left on this
    machine, else start a local one; do nothing if this process already joined one (a test, a notebook)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    # Ray's INFO lines and its workers' output would interleave with mona's progress bar, which it draws from the
    # blocks as they arrive; warnings and errors still show, and the workers' logs stay in Ray's session folder
    try:
        ray.init(address="auto" if address else None, ignore_reinit_error=True, log_to_driver=False,
                 logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {exc}") from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False


def check_resources(resources: Mapping[str, float], workers: int, num_gpus: float) -> None:
    """Refuse an actor pool the cluster cannot hold (Ray Data would wait for it instead)."""
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if cpus < workers:
        raise ConfigError(f"--num-workers {workers} needs {workers} CPUs (one per actor); the Ray cluster has "
                          f"{cpus:g}")
    if num_gpus > 0 and gpus < num_gpus:
        raise ConfigError(f"--num-gpus {num_gpus:g} per worker, but the Ray cluster has {gpus:g} GPUs")


# how a MonaError's last traceback line reads (its message is one line by contract)
_MONA_ERROR = re.compile(r"^mona\.errors\.(\w+): (.+)$", re.MULTILINE)


def _user_error(exc: BaseException) -> MonaError | None:
    """The MonaError an actor raised (a model that does not load on a worker node, say), so that it reads as it
    would locally. Ray Data keeps only the text of an actor's traceback, not the exception, hence the parsing."""
    match = _MONA_ERROR.search(str(exc))
    kind = getattr(errors, match.group(1), None) if match else None
    if isinstance(kind, type) and issubclass(kind, MonaError):
        return kind(match.group(2))
    return None


class FeaturizeActor:
    """One Ray actor: builds the featurizer once (the model loads with the first batch and then stays), and turns
    each batch of pickled samples into per-sample columns Ray can carry."""

    def __init__(self, options: MethodOptions, role: str) -> None:
        self.featurizer = build_featurizer(options)
        self.role = role  # pool and target vectors may differ (mona --top-m truncates pool rows only)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        samples = [pickle.loads(blob) for blob in batch["sample"]]
        with self.featurizer.acting_as(self.role):
            return to_columns(batch["position"], self.featurizer.featurize(samples))


def _ragged(rows: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def to_columns(positions: np.ndarray, blocks: Iterator[FeatureBlock]) -> dict[str, np.ndarray]:
    """Feature blocks as one row per sample: its position, the block's token count on the block's first row (so
    the sum over rows is exact), and the vector: `values`/`indices` (+ `width`) of a sparse row, else `dense`."""
    pos: list[int] = []
    tokens: list[int] = []
    values: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    dense: list[np.ndarray] = []
    width = 0
    for block in blocks:
        pos += [int(positions[p]) for p in block.positions]
        tokens += [block.tokens] + [0] * (len(block.positions) - 1)
        if sp.issparse(block.matrix):
            csr = sp.csr_matrix(block.matrix)
            width = csr.shape[1]
            for r in range(csr.shape[0]):
                lo, hi = csr.indptr[r], csr.indptr[r + 1]
                values.append(csr.data[lo:hi])
                indices.append(csr.indices[lo:hi])
        else:
            dense.append(np.asarray(block.matrix))
    columns = {"position": np.asarray(pos, dtype=np.int64), "tokens": np.asarray(tokens, dtype=np.int64)}
    if dense:
        return {**columns, "dense": np.vstack(dense)}
    return {**columns, "width": np.full(len(pos), width, dtype=np.int64), "values": _ragged(values),
            "indices": _ragged(indices)}


def from_columns(columns: Mapping[str, np.ndarray]) -> FeatureBlock:
    """Rows made by `to_columns` back into one FeatureBlock (the same vectors, bit for bit)."""
    positions = [int(p) for p in columns["position"]]
    tokens = int(np.sum(columns["tokens"]))
    if "dense" in columns:
        # a copy: a view would keep the whole result block pinned in Ray's object store until the run ends
        return FeatureBlock(positions, np.array(columns["dense"]), tokens)
    # Ray hands equal-length rows back as one 2-D array and unequal ones as an object array: both iterate by row
    values = [np.asarray(v) for v in columns["values"]]
    indices = [np.asarray(i) for i in columns["indices"]]
    indptr = np.concatenate([[0], np.cumsum([len(v) for v in values])])
    width = int(columns["width"][0]) if len(positions) else 0
    data = np.concatenate(values) if values else np.zeros(0, dtype=np.float32)
    cols = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32)
    return FeatureBlock(positions, sp.csr_matrix((data, cols, indptr), shape=(len(positions), width)), tokens)
