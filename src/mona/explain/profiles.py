"""Activation profiles (the paper's Figure 4): two sample sets, the most variant units of raw MLP neurons (top
panel) and of SAE latents (bottom panel), a faint line per sample and a bold line per set mean."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mona.data.bigbench import load_task, prepare_bigbench, task_index
from mona.data.formats import Sample, to_sample
from mona.data.readers import Record, read_samples
from mona.errors import InputError
from mona.features.cached import featurize_cached
from mona.features.lm import LMConfig, LMRunner
from mona.features.mona import MonaFeaturizer
from mona.features.neurons import NeuronFeaturizer
from mona.scoring.similarity import generalized_jaccard

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def read_set(spec: str, n: int, seed: int = 0) -> list[Sample]:
    """`bigbench:TASK` (every file of a BIG-bench task) or a pool-format file; at most `n` rows, seeded."""
    if spec.startswith("bigbench:"):
        task = spec.split(":", 1)[1]
        prepare_bigbench()
        names = [name for name in sorted(task_index()) if name == task or name.startswith(task + "__")]
        if not names:
            raise InputError(f"no BIG-bench task named {task!r}", path=spec)
        rows = [row for name in names for row in load_task(name)]
        rows = random.Random(seed).sample(rows, min(n, len(rows)))
        return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]
    samples = read_samples(spec)
    return random.Random(seed).sample(samples, min(n, len(samples)))


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)


def top_variant_units(vectors: np.ndarray, n_units: int) -> np.ndarray:
    """Indices of the `n_units` units whose value varies most across all samples (ties by index)."""
    variance = vectors.var(axis=0)
    return np.lexsort((np.arange(len(variance)), -variance))[:n_units]


def separation(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score (cosine) of the sets on these units: 1 = perfectly apart, 0 = mixed."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(vectors, labels, metric="cosine"))


def plot_profiles(sets: dict[str, list[Sample]], out: Path, *, config: LMConfig | None = None,
                  sae: str | None = None, n_units: int = 100, cache_dir: Path | None = None) -> dict:
    """Write `out`.png and `out`.svg; returns the units used and each panel's separation (silhouette)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runner = LMRunner(config or LMConfig())
    mona = MonaFeaturizer(runner, sae)
    neurons = NeuronFeaturizer(runner, k=mona.sae_k or 32)
    names = list(sets)
    samples = [s for name in names for s in sets[name]]
    labels = np.concatenate([[i] * len(sets[name]) for i, name in enumerate(names)])
    panels = [("raw MLP neurons (polysemantic)", neurons), ("SAE latents (monosemantic)", mona)]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7.5), constrained_layout=True)
    summary: dict = {"sets": {n: len(sets[n]) for n in names}, "panels": {}}
    for ax, (title, featurizer) in zip(axes, panels, strict=True):
        vectors = _dense(featurize_cached(featurizer, samples, cache_dir))
        units = top_variant_units(vectors, n_units)
        # order the units by which set they favour, so each set's units sit together
        means = np.stack([vectors[labels == i][:, units].mean(axis=0) for i in range(len(names))])
        units = units[np.lexsort((-means.max(axis=0), means.argmax(axis=0)))]
        x = np.arange(len(units))
        for i, name in enumerate(names):
            rows = vectors[labels == i][:, units]
            colour = COLOURS[i % len(COLOURS)]
            for row in rows:
                ax.plot(x, row, color=colour, alpha=0.08, linewidth=0.6)
            ax.plot(x, rows.mean(axis=0), color=colour, linewidth=2.2, label=f"{name} (mean of {len(rows)})")
        score = separation(vectors[:, units], labels)
        # how much the set means share, over all units (generalized Jaccard, MoNA's similarity): lower = apart
        set_means = [vectors[labels == i].mean(axis=0) for i in range(len(names))]
        shared = float(generalized_jaccard(set_means[0][None, :], set_means[1])[0]) if len(names) == 2 else None
        summary["panels"][featurizer.name] = {"units": units.tolist(), "silhouette": round(score, 4),
                                              "mean_jaccard": None if shared is None else round(shared, 4)}
        ax.set_title(f"{title}: the {len(units)} most variant units; silhouette {score:.2f}")
        ax.set_xlabel("unit (sorted by the set it favours)")
        ax.set_ylabel("mean activation over the sample's tokens")
        ax.legend(loc="upper right")
        ax.margins(x=0.01)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".svg"):
        fig.savefig(out.with_suffix(suffix), dpi=130)
    plt.close(fig)
    return summary


def plot_scores(scores: Sequence[Path], out: Path, names: Sequence[str] | None = None) -> None:
    """Histogram of SCORES files' scores, selected vs the rest, one panel per file (PNG and SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scores), 1, figsize=(9, 3.2 * len(scores)), constrained_layout=True, squeeze=False)
    for ax, path, name in zip(axes[:, 0], scores, names or [Path(p).stem for p in scores], strict=True):
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        chosen = np.array([r["score"] for r in rows if r["selected"]])
        rest = np.array([r["score"] for r in rows if not r["selected"]])
        bins = np.histogram_bin_edges(np.concatenate([chosen, rest]), bins=50)
        ax.hist(rest, bins=bins, color="#999999", label=f"rest ({len(rest)})")
        ax.hist(chosen, bins=bins, color=COLOURS[0], label=f"selected ({len(chosen)})")
        ax.set_title(name)
        ax.set_xlabel("score")
        ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".svg"):
        fig.savefig(out.with_suffix(suffix), dpi=120)
    plt.close(fig)
