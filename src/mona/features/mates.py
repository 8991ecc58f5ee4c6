"""MATES (Yu et al. 2024, "MATES: Model-Aware Data Selection for Efficient Pretraining with Data Influence
Models", github cxcscmu/MATES), adapted to instruction tuning on one target task at a CPU's scale.

What this follows in cxcscmu/MATES (read, not copied):
- `src/select_data/probe_oracle_data_influence.py`: for each probed example, reload the fixed checkpoint (model
  and optimizer state), take one optimizer step on that example alone (batch size 1), and record the loss on the
  reference task. Here the fixed state is LESS's LoRA warm-up (the same cached checkpoint `--method less` uses,
  mona.features.less), its AdamW moments kept; one AdamW step on row i moves the LoRA weights by
  -lr * m_hat / (sqrt(v_hat) + eps) with the moments updated by row i's gradient, which is exactly LESS's Adam
  gradient (`adam_gradient`), so the probes' steps come from one batched per-sample gradient pass and no
  optimizer is rebuilt. The oracle influence is the drop of the mean loss on the reference rows (a seeded
  sample of `reference_rows` target rows, their assistant turns as in LESS): positive helps.
- `src/select_data/train_data_influence_model.py`: the influence model is fitted to z-scored oracle scores and
  chosen by Spearman on a held-out tenth (MATES fine-tunes BERT-base; here a ridge regression on the `hidden`
  method's vectors, pooled hidden states of the selection layer, standardised, its penalty chosen by that
  Spearman, then refitted on every probe). That Spearman is reported in the run's summary.
- `src/select_data/select_data.py`: selection by the predicted influence; with `--mates-gumbel`, Gumbel top-k on
  prediction / temperature (MATES' default temperature 0.5), seeded by `--seed`.

Scaled down from the paper: a few hundred probes instead of 10,000 per checkpoint, one fixed state instead of
re-probing as training goes, LoRA on q/v instead of full weights, no gradient clipping, a linear model instead of
BERT-base.

Cost: LESS's warm-up (cached), one per-sample gradient pass over the probes (kept in memory for the next
target of the same pool), then per probe one forward over the reference rows; the oracle influences are cached
per (warm-up, probes, reference rows, dtype), so a rerun refits only. The warm-up and the gradients run under
LESS's autocast (bf16 where `--dtype auto` finds the CPU runs it faster, mona.models.dtype), the reference losses
always in fp32: an influence is the difference of two nearly equal losses, often finer than bf16's 8-bit
mantissa (a relative step of 2^-8) resolves
(tests/test_mates.py::test_bf16_gradients_keep_the_influences_and_are_cached_apart checks the bf16 gradients).
The pool itself goes through one forward pass of the `hidden` method (cached, shared with it)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mona.atomic import atomic_path
from mona.data.formats import Sample
from mona.features.base import MethodScores
from mona.features.cache import config_key, text_hash
from mona.features.cached import featurize_cached
from mona.features.hidden import HiddenFeaturizer
from mona.features.less import Encoded, LessFeaturizer, lora_parameters, pad_encoded
from mona.features.lm import LMRunner
from mona.features.options import HiddenOptions, LessOptions, MatesOptions, MethodSettings
from mona.models.answer_loss import row_losses
from mona.progress import Progress, progress_step

KEY_VERSION = 1


def _seeded_sample(n: int, size: int, seed: int, salt: str) -> np.ndarray:
    """`size` of range(n), sorted, drawn with a generator seeded by (seed, salt)."""
    digest = hashlib.sha256(f"mona-mates:{salt}:{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


class InfluenceProbe(LessFeaturizer):
    """LESS's warm-up and per-sample Adam gradients, used as MATES's fixed state and its one-step updates: the
    oracle influence of pool rows on the loss of reference rows."""

    def _reference_loss(self, references: Sequence[Encoded]) -> float:
        """Mean per-row loss over the reference rows under the current LoRA weights."""
        assert self._model is not None
        _, pad = self._tokens()
        total, rows = 0.0, 0
        with torch.no_grad():
            for positions in self._plan(references):
                batch = [references[i] for i in positions]
                losses = row_losses(self._model, *pad_encoded(batch, pad))
                has_loss = torch.tensor([any(e.loss) for e in batch])
                total += float(losses[has_loss].sum())
                rows += int(has_loss.sum())
        return total / max(rows, 1)

    def oracle_influence(self, probes: Sequence[Sample], references: Sequence[Sample],
                         progress: Progress | None = None) -> np.ndarray:
        """For each probe row: reference loss at the warm-up state minus after one AdamW step on that row alone.
        `progress` sees each probe (and the warm-up, given to `prepare`, when it is trained)."""
        self.ensure_warm()
        assert self._model is not None
        params = lora_parameters(self._model)
        warm = {n: p.detach().clone() for n, p in params.items()}
        refs = self._encode(references)
        before = self._reference_loss(refs)
        lr = self.config.lr
        out = np.zeros(len(probes))
        key = self.updates_key(probes)
        memo = _UPDATES.get(key)
        computed: list[torch.Tensor] = []
        try:
            with progress_step(progress, "mates: probing the oracle influence", len(probes)) as probed:
                # the updates a chunk at a time: each is as large as the LoRA weights
                for start in range(0, len(probes), self.config.max_batch_size):
                    chunk = list(range(start, min(start + self.config.max_batch_size, len(probes))))
                    # Adam gradients (the role is "pool"); the same for every reference set: kept from the last call
                    if memo is not None:
                        updates = memo[chunk[0]: chunk[-1] + 1]
                    else:
                        updates = self.gradients([probes[i] for i in chunk])
                        computed.append(updates)
                    for i, update in zip(chunk, updates, strict=True):
                        offset = 0
                        with torch.no_grad():
                            for name, p in params.items():
                                delta = update[offset: offset + p.numel()].view_as(p)
                                p.copy_(warm[name] - lr * delta.to(p.dtype))
                                offset += p.numel()
                        out[i] = before - self._reference_loss(refs)
                        probed(i + 1, 0)
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(warm[name])
        if computed:
            _UPDATES.clear()  # one probe set at a time: the updates take probes x LoRA size of memory
            _UPDATES[key] = torch.cat(computed)
        return out

    def updates_key(self, probes: Sequence[Sample]) -> str:
        """Everything the probes' one-step updates depend on (not the reference rows)."""
        return config_key({"method": "mates-updates", "version": KEY_VERSION, **self.warmup_key(),
                           "probes": _digest_texts(self, probes)})

    def answer_tokens(self, references: Sequence[Sample]) -> int:
        """Tokens of the reference rows the loss counts within max_length (0: their answers are cut off)."""
        return sum(sum(e.loss) for e in self._encode(references))

    def influence_key(self, probes: Sequence[Sample], references: Sequence[Sample]) -> dict:
        """Everything the oracle influences depend on."""
        return {"method": "mates-oracle", "version": KEY_VERSION, **self.warmup_key(),
                "probes": _digest_texts(self, probes), "references": _digest_texts(self, references),
                "step_lr": self.config.lr}


def _digest_texts(probe: InfluenceProbe, samples: Sequence[Sample]) -> str:
    return hashlib.sha256("\n".join(text_hash(probe.text_key(s)) for s in samples).encode()).hexdigest()


# The last probe set's one-step updates (InfluenceProbe.updates_key -> [probes, LoRA size]): a benchmark probes the
# same pool rows for every target, and their per-sample gradient pass is a large share of a target's probing.
_UPDATES: dict[str, torch.Tensor] = {}


def oracle_path(probe: InfluenceProbe, probes: Sequence[Sample], references: Sequence[Sample],
                cache_dir: Path | str) -> Path:
    """Where the oracle influences of `probes` on `references` are cached."""
    return Path(cache_dir) / "mates" / f"oracle-{config_key(probe.influence_key(probes, references))}.npy"


def cached_influence(probe: InfluenceProbe, probes: Sequence[Sample], references: Sequence[Sample],
                     cache_dir: Path | None, progress: Progress | None = None) -> np.ndarray:
    """`probe.oracle_influence`, read from `<cache>/mates/` when it was computed before."""
    if cache_dir is None:
        return probe.oracle_influence(probes, references, progress)
    path = oracle_path(probe, probes, references, cache_dir)
    if path.exists():
        try:
            values = np.load(path)
            if values.shape == (len(probes),):
                return values
        except (OSError, ValueError):
            pass  # corrupt or partial: probe again
    values = probe.oracle_influence(probes, references, progress)
    with atomic_path(path) as tmp:
        np.save(tmp, values)
    return values


def fit_influence_model(x: np.ndarray, influence: np.ndarray, params: MatesOptions, seed: int):
    """(ridge model refitted on every probe, its held-out Spearman, the penalty chosen, the rows held out):
    z-scored influences,
    the penalty of `params.alphas` with the best Spearman on a seeded held-out share (`params.holdout`)."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    held = _seeded_sample(len(x), max(2, round(params.holdout * len(x))), seed, "holdout")
    train = np.setdiff1d(np.arange(len(x)), held)

    def zscore(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
        std = ref.std()
        return (values - ref.mean()) / (std if std > 0 else 1.0)

    best = (-np.inf, params.alphas[0])
    for alpha in params.alphas:
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[train], zscore(influence[train],
                                                                                         influence[train]))
        rho = spearmanr(model.predict(x[held]), influence[held]).statistic
        rho = float(rho) if np.isfinite(rho) else -np.inf  # constant predictions or labels: no ranking
        if rho > best[0]:
            best = (rho, alpha)
    rho, alpha = best
    rho = rho if np.isfinite(rho) else float("nan")  # no penalty ranked the held-out rows: undefined
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, zscore(influence, influence))
    return model, rho, alpha, len(held)


def mates_scores(pool: Sequence[Sample], targets: Sequence[Sample], options: MethodSettings,
                 cache_dir: Path | None, progress: Progress | None = None) -> MethodScores:
    """Registry text scorer: each pool row's influence predicted by a model fitted to probed oracle influences
    (with `gumbel`, plus seeded Gumbel noise at `temperature`). `progress` sees the pool's hidden states, the
    warm-up and the probes."""
    params: MatesOptions = options.params
    runner = LMRunner(options.lm)
    hidden = HiddenFeaturizer(runner, pooling=HiddenOptions().pooling)
    with progress_step(progress, "mates: hidden states of the pool", len(pool)) as update:
        x = np.asarray(featurize_cached(hidden, pool, Path(cache_dir) if cache_dir else None, update, role="pool"),
                       dtype=np.float64)
    probe_at = _seeded_sample(len(pool), params.probes, options.seed, "probes")
    refs_at = _seeded_sample(len(targets), params.reference_rows, options.seed, "references")
    probe = InfluenceProbe(runner, LessOptions(), seed=options.seed)
    probe.prepare(pool, cache_dir, progress)
    references = [targets[int(i)] for i in refs_at]
    influence = cached_influence(probe, [pool[int(i)] for i in probe_at], references, cache_dir, progress)
    model, rho, alpha, n_held = fit_influence_model(x[probe_at], influence, params, options.seed)
    scores = model.predict(x)
    if params.gumbel:
        scores = scores / params.temperature + np.random.default_rng(options.seed).gumbel(size=len(scores))
    notes = [f"mates: influence model held-out Spearman {rho:.3f} ({len(probe_at)} probes, {n_held} held out, "
             f"ridge alpha {alpha:g})"]
    if not np.any(influence):
        reason = (f"no reference row has an answer token within --max-length {runner.config.max_length} (their "
                  f"prompts are longer; raise it or give shorter target rows)"
                  if not probe.answer_tokens(references) else "no probe's step moved the reference loss")
        notes.append(f"mates: every oracle influence is 0: {reason}, so the scores are constant and the ranking "
                     f"is by id")
    return MethodScores(scores, tuple(notes), {"influence_spearman": rho})
