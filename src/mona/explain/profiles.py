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
from mona.data.formats import Record, Sample, to_sample
from mona.data.readers import read_samples
from mona.errors import ConfigError, InputError, MissingFileError
from mona.explain.options import ProfilesConfig
from mona.features.cached import featurize_cached
from mona.features.lm import LMConfig, LMRunner
from mona.features.mona import MonaFeaturizer
from mona.features.neurons import NeuronFeaturizer
from mona.outputs import check_outputs, local_path
from mona.scoring.similarity import generalized_jaccard

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def figure_paths(out: Path) -> list[Path]:
    """The two files a figure command writes for OUT: OUT.png and OUT.svg."""
    return [out.with_suffix(".png"), out.with_suffix(".svg")]


def read_set(spec: str, n: int, seed: int) -> list[Sample]:
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


def plot_profile_sets(specs: Sequence[str], out: Path, config: ProfilesConfig | None = None, *,
                      lm: LMConfig | None = None, sae: str | None = None, cache_dir: Path | None = None) -> dict:
    """`mona plot profiles`: the figure for the sets named NAME=bigbench:TASK or NAME=FILE (two or more),
    `config.n` seeded samples each; returns plot_profiles' summary."""
    config = config or ProfilesConfig()
    named = []
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep or not name or not source:
            raise ConfigError(f"--set wants NAME=SOURCE, got {spec!r}")
        named.append((name, source))
    if len(named) < 2:
        raise ConfigError("give at least two --set")
    model = lm.model if lm else None
    check_outputs({"--set": [s for _, s in named if not s.startswith("bigbench:")], "--model": local_path(model),
                   "--sae": local_path(sae)}, {"--out": figure_paths(out)})
    sets = {name: read_set(source, config.n, config.seed) for name, source in named}
    return plot_profiles(sets, out, config=lm, sae=sae, n_units=config.units, cache_dir=cache_dir)


def plot_profiles(sets: dict[str, list[Sample]], out: Path, *, config: LMConfig | None = None,
                  sae: str | None = None, n_units: int, cache_dir: Path | None = None) -> dict:
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
        vectors = _dense(featurize_cached(featurizer, samples, cache_dir, role="pool"))
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
    for path in figure_paths(out):
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return summary


def plot_scores(scores: Sequence[Path], out: Path, names: Sequence[str] | None = None) -> None:
    """Histogram of SCORES files' scores, selected vs the rest, one panel per file (PNG and SVG). Every input is
    read and checked before anything is drawn or written."""
    if names is not None and len(names) != len(scores):
        raise ConfigError("give one --name per --scores")
    check_outputs({"--scores": scores}, {"--out": figure_paths(out)})
    panels = [read_scores_file(Path(p)) for p in scores]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scores), 1, figsize=(9, 3.2 * len(scores)), constrained_layout=True, squeeze=False)
    for ax, (chosen, rest), name in zip(axes[:, 0], panels, names or [Path(p).stem for p in scores], strict=True):
        bins = np.histogram_bin_edges(np.concatenate([chosen, rest]), bins=50)
        ax.hist(rest, bins=bins, color="#999999", label=f"rest ({len(rest)})")
        ax.hist(chosen, bins=bins, color=COLOURS[0], label=f"selected ({len(chosen)})")
        ax.set_title(name)
        ax.set_xlabel("score")
        ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in figure_paths(out):
        fig.savefig(path, dpi=120)
    plt.close(fig)


def read_scores_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(selected scores, other scores) of a SCORES file; InputError naming the line for anything else."""
    if not path.is_file():
        raise MissingFileError("no such file" if not path.exists() else "not a regular file", path=str(path))
    chosen: list[float] = []
    rest: list[float] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a SCORES file of `mona select --scores` (not UTF-8 text)", path=str(path)) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            score, selected = float(row["score"]), row["selected"]
        except (ValueError, KeyError, TypeError):
            raise InputError("not a SCORES line of `mona select --scores` (expected {id, score, rank, selected})",
                             path=str(path), line=lineno) from None
        (chosen if selected else rest).append(score)
    if not chosen and not rest:
        raise InputError("file has no rows", path=str(path))
    return np.array(chosen), np.array(rest)
