"""LESS (Xia et al. 2024, "LESS: Selecting Influential Data for Targeted Instruction Tuning"), scaled to a CPU.

1. Warm-up: LoRA (q_proj, v_proj; rank 8) on the full selection model (LM head included: LESS needs the loss),
   trained for one epoch with AdamW on a small seeded random part of the pool (5 % of it, at most 64 rows, unless
   `less_warmup_samples` says otherwise). The loss covers the assistant turns of a sample when it has one, else
   all of its content tokens; inputs are rendered like every other LM method (`LMRunner.render`, chat template).
   The adapter and AdamW's first/second moments are saved under `<cache>/less/` keyed by everything they depend
   on (model, rendering, warm-up rows' hashes, seed, sizes, precision), so a second run does not redo it. The
   weights and moments are fp32; the forward runs under bf16 autocast where `--dtype auto` finds the CPU runs
   bf16 faster (mona.models.dtype; here and in step 2).
2. Per-sample gradients of the LoRA weights, computed for a whole padded batch with one backward pass (each LoRA
   matrix is a bias-free linear map, so a sample's gradient is the sum over its tokens of grad_output x input).
   Pool rows get LESS's Adam gradient Gamma = m_hat / (sqrt(v_hat) + eps), with m, v the warm-up moments updated
   by the sample's gradient and bias-corrected at step t + 1 (the paper's formula); target rows keep the plain
   (SGD) gradient, as LESS does for its validation examples.
3. A seeded Rademacher random projection (entries +-1/sqrt(d), `less_proj_dim` d = 1024 by default) reduces
   each gradient; the matrix is generated chunk by chunk from the seed, so it never has to be held as floats.
   The projected gradient is the per-sample vector, cached through the ordinary feature cache.
4. Score = cosine of a pool vector to each target vector, maximum over the targets (`max_cosine`).

Scaled down from the paper: one warm-up checkpoint instead of four epoch checkpoints weighted by their learning
rates, rank 8 on q/v instead of rank 128 on q/k/v/o, d = 1024 instead of 8192; and LESS averages the validation
gradients' scores within each subtask before the max over subtasks, where here every target row counts alone.

Its cost on this project's machines (warm-up, gradient featurization, a whole selection) is in docs/methods.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from mona.atomic import atomic_path
from mona.data.formats import Sample
from mona.data.render import Rendered
from mona.errors import ConfigError
from mona.features.base import FeatureBlock, Featurizer, Matrix
from mona.features.cache import config_key, text_hash
from mona.features.lm import LMRunner
from mona.features.options import LessOptions, MethodSettings
from mona.models import DtypeChoice, model_fingerprint, resolve_dtype
from mona.models.answer_loss import attention_mask, pad_batch, row_losses
from mona.models.dtype import autocast, parse_dtype
from mona.models.truncated import first_and_pad_ids, length_batches
from mona.progress import Progress, progress_step

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # AdamW's defaults, also used for the Adam gradient
KEY_VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# What the loss covers


def loss_spans(sample: Sample, rendered: Rendered) -> tuple[tuple[int, int], ...]:
    """Character spans of `rendered.text` the LM loss covers: the assistant turns if the sample has a non-empty
    one, else every content span."""
    messages = sample.messages
    if not messages or not any(role == "assistant" and content for role, content in messages):
        return rendered.spans
    nonempty = [(role, content) for role, content in messages if content]
    if len(rendered.spans) == len(nonempty) and all(
            rendered.text[a:b] == content for (a, b), (_, content) in zip(rendered.spans, nonempty, strict=True)):
        return tuple(span for span, (role, _) in zip(rendered.spans, nonempty, strict=True) if role == "assistant")
    if rendered.text == sample.plain_text():  # plain rendering: turns joined by blank lines
        spans, cursor = [], 0
        for role, content in messages:
            if role == "assistant" and content:
                spans.append((cursor, cursor + len(content)))
            cursor += len(content) + 2
        return tuple(spans)
    return rendered.spans  # a template that rewrote the content: fall back to all of it


@dataclass
class Encoded:
    ids: list[int]
    loss: list[bool]  # loss[t]: token t is predicted (from tokens < t) and counted
    truncated: bool


def encode(tokenizer, rendered: Rendered, spans: Sequence[tuple[int, int]], max_length: int,
           first_token: int) -> Encoded:
    """Token ids with a fixed first token (as the other LM methods) and the mask of tokens the loss covers:
    inside `spans`, not special tokens."""
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    special = set(tokenizer.all_special_ids)
    ids = list(enc["input_ids"])
    loss = [tid not in special and a < b and any(a < end and b > start for start, end in spans)
            for tid, (a, b) in zip(ids, enc["offset_mapping"], strict=True)]
    if not ids or ids[0] != first_token:
        ids, loss = [first_token, *ids], [False, *loss]
    loss[0] = False
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], loss[:max_length], truncated)


def pad_encoded(encoded: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and loss mask of a batch, right-padded (the inputs of row_losses)."""
    rows = [e.ids for e in encoded]
    return pad_batch(rows, pad_id), attention_mask(rows), pad_batch([e.loss for e in encoded], 0).bool()


# ----------------------------------------------------------------------------------------------------------
# LoRA model, warm-up and its checkpoint


def add_lora(model: nn.Module, config: LessOptions, seed: int) -> nn.Module:
    """Wrap `model` (modified in place) with a LoRA adapter; A is initialised from `seed`, B at zero."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.alpha, target_modules=list(config.lora_targets),
                      lora_dropout=0.0, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            peft_model = get_peft_model(model, lora)
        except ValueError as exc:
            raise ConfigError(f"LESS cannot put LoRA on {list(config.lora_targets)} of this model: {exc}") from None
    peft_model.eval()
    return peft_model


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable (LoRA) parameters by name, in a fixed (sorted) order."""
    return {n: p for n, p in sorted(model.named_parameters()) if p.requires_grad}


@dataclass
class WarmupState:
    """The warm-up's result: LoRA weights and AdamW's moments after `step` steps (all keyed by parameter
    name)."""

    lora: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    step: int

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        tensors = {f"{kind}:{n}": t.detach().contiguous() for kind, group in
                   (("lora", self.lora), ("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq))
                   for n, t in group.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"step": str(self.step),
                                                   "config": json.dumps(meta, sort_keys=True)})

    @classmethod
    def load(cls, path: Path) -> WarmupState | None:
        from safetensors import SafetensorError, safe_open

        try:
            groups: dict[str, dict[str, torch.Tensor]] = {"lora": {}, "exp_avg": {}, "exp_avg_sq": {}}
            with safe_open(str(path), framework="pt") as fh:
                step = int((fh.metadata() or {})["step"])
                for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                    kind, name = key.split(":", 1)
                    groups[kind][name] = fh.get_tensor(key)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError):
            return None  # corrupt or partial: train again
        return cls(groups["lora"], groups["exp_avg"], groups["exp_avg_sq"], step)


def train_warmup(model: nn.Module, encoded: Sequence[Encoded], config: LessOptions, seed: int, pad_id: int,
                 dtype: str = "fp32", progress: Progress | None = None) -> WarmupState:
    """LoRA warm-up: `config.epochs` passes of AdamW over `encoded` in seeded random order, `batch_size` rows per
    step, loss = mean over the batch's rows of each row's mean token loss; the forward under `dtype` autocast
    (fp32 weights and moments). `progress` counts the optimizer steps."""
    params = lora_parameters(model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, betas=(BETA1, BETA2), eps=EPS,
                                  weight_decay=0.0)
    rng = random.Random(seed)
    usable = [e for e in encoded if any(e.loss)]
    steps, tokens = 0, 0
    with progress_step(progress, f"less: LoRA warm-up on {len(usable)} rows (optimizer steps; cached after this run)",
              config.epochs * -(-len(usable) // config.batch_size)) as stepped:
        for _ in range(config.epochs):
            order = list(range(len(usable)))
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                batch = [usable[i] for i in order[start: start + config.batch_size]]
                ids, attn, loss_mask = pad_encoded(batch, pad_id)
                with autocast(dtype, "cpu"):
                    loss = row_losses(model, ids, attn, loss_mask).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                tokens += int(attn.sum())
                stepped(steps, tokens)
    optimizer.zero_grad(set_to_none=True)
    state = {n: optimizer.state.get(p, {}) for n, p in params.items()}
    zeros = {n: torch.zeros_like(p) for n, p in params.items()}
    return WarmupState(lora={n: p.detach().clone() for n, p in params.items()},
                       exp_avg={n: state[n].get("exp_avg", zeros[n]).clone() for n in params},
                       exp_avg_sq={n: state[n].get("exp_avg_sq", zeros[n]).clone() for n in params},
                       step=steps)


# ----------------------------------------------------------------------------------------------------------
# Per-sample gradients


class PerSampleGrads:
    """Per-sample gradients of every LoRA matrix from one batched backward pass. Each LoRA matrix W is a
    bias-free nn.Linear, y = x W^T, so d loss_i / dW = sum_t dy[i, t]^T x[i, t]; the sum of the per-sample losses
    is backpropagated once and hooks collect dy and x. Exact as long as rows do not interact (no batch norm; a
    row attends only to its own tokens; right padding is never attended by real tokens). The forward runs under
    `dtype` autocast; the gradients are collected in fp32."""

    def __init__(self, model: nn.Module, dtype: str = "fp32") -> None:
        self.model, self.dtype = model, dtype
        self.params = lora_parameters(model)
        modules = dict(model.named_modules())
        self.modules: dict[str, nn.Linear] = {}
        for name in self.params:
            module = modules.get(name.rsplit(".", 1)[0])
            if not (isinstance(module, nn.Linear) and module.bias is None and name.endswith(".weight")):
                raise ConfigError(f"LESS per-sample gradients need bias-free linear LoRA weights, not {name}")
            self.modules[name] = module
        self.dim = sum(p.numel() for p in self.params.values())
        self._grads: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def forward_hook(_module, inputs, output):
            if not output.requires_grad:
                return
            x = inputs[0].detach()

            def grad_hook(grad):
                self._grads[name] = torch.einsum("bto,bti->boi", grad.float(), x.float())

            output.register_hook(grad_hook)
        return forward_hook

    def __call__(self, encoded: Sequence[Encoded], pad_id: int) -> torch.Tensor:
        """[B, dim] flattened per-sample gradients (parameter order: sorted names)."""
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        try:
            self._grads.clear()
            ids, attn, loss_mask = pad_encoded(encoded, pad_id)
            with autocast(self.dtype, "cpu"):
                losses = row_losses(self.model, ids, attn, loss_mask)
            if losses.requires_grad:
                losses.sum().backward()
            out = torch.zeros((len(encoded), self.dim), dtype=torch.float32)
            offset = 0
            for name, p in self.params.items():
                grad = self._grads.get(name)
                if grad is not None:
                    out[:, offset: offset + p.numel()] = grad.reshape(len(encoded), -1)
                offset += p.numel()
                p.grad = None
            return out
        finally:
            for h in handles:
                h.remove()
            self._grads.clear()


def adam_gradient(grads: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int
                  ) -> torch.Tensor:
    """LESS's Adam gradient of each row of `grads` [B, D]: the moments after one more AdamW update with that
    gradient, bias-corrected at step t = `step` + 1, and m_hat / (sqrt(v_hat) + eps)."""
    t = step + 1
    m = (BETA1 * exp_avg + (1 - BETA1) * grads) / (1 - BETA1 ** t)
    v = (BETA2 * exp_avg_sq + (1 - BETA2) * grads.square()) / (1 - BETA2 ** t)
    return m / (v.sqrt() + EPS)


# ----------------------------------------------------------------------------------------------------------
# Random projection


class RademacherProjection:
    """x -> x R with R [dim_in, dim_out] of i.i.d. +-1/sqrt(dim_out) entries, so E[<xR, yR>] = <x, y> (JL).
    R is defined chunk by chunk (CHUNK rows each, chunk c drawn from a generator seeded by (seed, c)), so it is
    the same whatever the batch, and never needs to exist as floats at once: the chunks are kept as int8 if they
    fit in `max_cached_bytes`, else regenerated on every call."""

    CHUNK = 8192  # part of R's definition: changing it changes R

    def __init__(self, dim_in: int, dim_out: int, seed: int, *, max_cached_bytes: int = 1 << 30) -> None:
        self.dim_in, self.dim_out, self.seed = dim_in, dim_out, seed
        self.keep = dim_in * dim_out <= max_cached_bytes
        self._chunks: dict[int, torch.Tensor] = {}
        self.scale = 1.0 / math.sqrt(dim_out)

    def _chunk(self, c: int) -> torch.Tensor:
        cached = self._chunks.get(c)
        if cached is not None:
            return cached
        digest = hashlib.sha256(f"mona-less-projection:{self.seed}:{c}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
        rows = min(self.CHUNK, self.dim_in - c * self.CHUNK)
        signs = torch.randint(0, 2, (rows, self.dim_out), generator=gen, dtype=torch.int8).mul_(2).sub_(1)
        if self.keep:
            self._chunks[c] = signs
        return signs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim_in:
            raise ValueError(f"expected vectors of size {self.dim_in}, got {x.shape[-1]}")
        x = x.float()
        out = torch.zeros((x.shape[0], self.dim_out), dtype=torch.float32)
        for c in range(math.ceil(self.dim_in / self.CHUNK)):
            start = c * self.CHUNK
            out += x[:, start: start + self.CHUNK] @ self._chunk(c).float()
        return out * self.scale


# ----------------------------------------------------------------------------------------------------------
# The featurizer and the scorer


def _digest(hashes: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:32]


def content_hash(sample: Sample) -> str:
    """Hash of a sample's content and roles (cheap: no rendering)."""
    return text_hash(json.dumps([sample.messages, sample.text]))


def _seeded_rank(seed: int, key_hash: str) -> str:
    return hashlib.sha256(f"{seed}:{key_hash}".encode()).hexdigest()


class LessFeaturizer(Featurizer):
    """Projected LoRA gradients: Adam-preconditioned for pool rows, plain for target rows (`role`). Needs
    `prepare(pool, cache_dir)` first (it picks the warm-up rows; the warm-up itself runs only when some
    vector is not cached)."""

    name = "less"

    def __init__(self, runner: LMRunner, config: LessOptions | None = None, *, seed: int = 0) -> None:
        self.runner = runner
        self.config = config or LessOptions()
        self.config.check()
        self.seed = seed
        self.cache_dir: Path | None = None
        self._progress: Progress | None = None  # where the warm-up reports its steps (set by prepare)
        self._warmup_rows: list[Sample] | None = None
        self._warmup_hashes: list[str] = []
        self._model: nn.Module | None = None
        self._state: WarmupState | None = None
        self._grads: PerSampleGrads | None = None
        self._projection: RademacherProjection | None = None
        self._flat_moments: tuple[torch.Tensor, torch.Tensor] | None = None
        self.warmup_source: str | None = None  # "trained" or "loaded" once the warm-up state is needed
        self._dtype: DtypeChoice | None = None

    @classmethod
    def from_options(cls, options: MethodSettings, runner: LMRunner) -> LessFeaturizer:
        """LESS with the options' sizes and seed."""
        return cls(runner, options.params, seed=options.seed)

    # -- set-up ------------------------------------------------------------------------------------------------

    def prepare(self, pool: Sequence[Sample], cache_dir: Path | None, progress: Progress | None = None) -> None:
        """Pick the warm-up rows: the n pool rows whose seeded hash is smallest (a seeded random sample that does
        not depend on the pool's order, and changes little when rows are added). The warm-up itself is trained
        when first needed, reporting its steps to `progress`."""
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._progress = progress
        n = self.config.n_warmup(len(pool))
        hashes = [content_hash(s) for s in pool]
        keyed = sorted((_seeded_rank(self.seed, h), i) for i, h in enumerate(hashes))
        chosen = sorted((hashes[i], i) for _, i in keyed[:n])  # by content: the training order ignores pool order
        self._warmup_rows = [pool[i] for _, i in chosen]
        self._warmup_hashes = [h for h, _ in chosen]

    def dtype_choice(self) -> DtypeChoice:
        """The precision of the warm-up and the gradients (autocast; weights stay fp32) and why: the selection
        model's dtype resolved for the CPU, where LESS runs."""
        if self._dtype is None:
            self._dtype = resolve_dtype(self.runner.config.dtype, "cpu")
            parse_dtype(self._dtype.dtype)  # int8 has no backward: refused here
        return self._dtype

    def _lm_key(self) -> dict[str, Any]:
        c = self.runner.config
        return {"model": model_fingerprint(c.model), "render": c.render, "max_length": c.max_length,
                "dtype": self.dtype_choice().dtype}

    def warmup_key(self) -> dict[str, Any]:
        """Everything the warm-up checkpoint depends on."""
        if self._warmup_rows is None:
            raise RuntimeError("LessFeaturizer.prepare(pool, cache_dir) must run first")
        c = self.config
        return {"method": "less-warmup", "version": KEY_VERSION, **self._lm_key(), "seed": self.seed,
                "warmup_rows": len(self._warmup_hashes), "warmup_hashes": _digest(self._warmup_hashes),
                "epochs": c.epochs, "batch_size": c.batch_size, "lr": c.lr, "lora_rank": c.lora_rank,
                "lora_alpha": c.alpha, "lora_targets": list(c.lora_targets), "betas": [BETA1, BETA2], "eps": EPS}

    def key_config(self) -> dict[str, Any]:
        return {**self.warmup_key(), "method": self.name, "role": self.role,
                "gradient": "adam" if self.role == "pool" else "sgd", "projection": "rademacher-chunked",
                "proj_dim": self.config.proj_dim, "proj_seed": self.seed,
                "proj_chunk": RademacherProjection.CHUNK}

    def text_key(self, sample: Sample) -> str:
        rendered = self.runner.render(sample)
        spans = loss_spans(sample, rendered)
        return rendered.text + "\x00" + ",".join(f"{a}-{b}" for a, b in spans)

    def warmup_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / "less" / f"warmup-{config_key(self.warmup_key())}.safetensors"

    # -- model -------------------------------------------------------------------------------------------------

    def _tokens(self) -> tuple[int, int]:
        return first_and_pad_ids(self.runner.tokenizer)

    def _encode(self, samples: Sequence[Sample]) -> list[Encoded]:
        first, _ = self._tokens()
        out = []
        for s in samples:
            rendered = self.runner.render(s)
            out.append(encode(self.runner.tokenizer, rendered, loss_spans(s, rendered),
                              self.runner.config.max_length, first))
        return out

    def _ensure_model(self) -> None:
        if self._model is not None:
            return
        if self._warmup_rows is None:
            raise RuntimeError("LessFeaturizer.prepare(pool, cache_dir) must run first")
        from mona.models.loader import load_lm

        model, _tokenizer = load_lm(self.runner.config.model, "fp32")  # fp32 master weights; autocast for speed
        model = add_lora(model, self.config, self.seed)
        params = lora_parameters(model)
        path = self.warmup_path()
        state = WarmupState.load(path) if path is not None and path.exists() else None
        if state is not None and set(state.lora) == set(params):
            self.warmup_source = "loaded"
        else:
            state = train_warmup(model, self._encode(self._warmup_rows), self.config, self.seed, self._tokens()[1],
                                 self.dtype_choice().dtype, self._progress)
            self.warmup_source = "trained"
            if path is not None:
                state.save(path, self.warmup_key())
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state.lora[name])
        self._model, self._state = model, state
        self._grads = PerSampleGrads(model, self.dtype_choice().dtype)
        self._flat_moments = (torch.cat([state.exp_avg[n].reshape(-1).float() for n in params]),
                              torch.cat([state.exp_avg_sq[n].reshape(-1).float() for n in params]))
        self._projection = RademacherProjection(self._grads.dim, self.config.proj_dim, self.seed)

    def ensure_warm(self) -> WarmupState:
        """Load or train the warm-up (normally done lazily by `featurize`)."""
        self._ensure_model()
        assert self._state is not None
        return self._state

    # -- featurization -----------------------------------------------------------------------------------------

    def _plan(self, encoded: Sequence[Encoded]) -> list[list[int]]:
        return length_batches([len(e.ids) for e in encoded], self.config.batch_tokens, self.config.max_batch_size)

    def gradients(self, samples: Sequence[Sample]) -> torch.Tensor:
        """Unprojected per-sample gradients [N, D] for the current role (Adam for pool, SGD for target)."""
        encoded = self._encode(samples)
        out = [torch.empty(0)] * len(samples)
        for positions in self._plan(encoded):
            for i, row in zip(positions, self._batch_grads([encoded[i] for i in positions]), strict=True):
                out[i] = row
        return torch.stack(out)

    def _batch_grads(self, encoded: Sequence[Encoded]) -> torch.Tensor:
        self._ensure_model()
        assert self._grads is not None and self._state is not None and self._flat_moments is not None
        grads = self._grads(encoded, self._tokens()[1])
        if self.role == "pool":
            has_loss = torch.tensor([any(e.loss) for e in encoded])
            adam = adam_gradient(grads, *self._flat_moments, self._state.step)
            grads = torch.where(has_loss[:, None], adam, torch.zeros_like(adam))
        return grads

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        self._ensure_model()
        assert self._projection is not None
        encoded = self._encode(samples)
        self.runner.truncated += sum(e.truncated for e in encoded)
        pending: list[int] = []
        grads: list[torch.Tensor] = []
        plan = self._plan(encoded)
        for n, positions in enumerate(plan):
            pending += positions
            grads.append(self._batch_grads([encoded[i] for i in positions]))
            if len(pending) >= self.config.project_rows or n == len(plan) - 1:
                projected = self._projection(torch.cat(grads))
                yield FeatureBlock(pending, projected.numpy().astype(np.float32),
                                   sum(len(encoded[i].ids) for i in pending))
                pending, grads = [], []


def max_cosine(pool: Matrix, targets: Matrix) -> np.ndarray:
    """For each pool row, the largest cosine similarity to any target row (0 against all-zero vectors)."""
    p = np.asarray(pool.toarray() if sp.issparse(pool) else pool, dtype=np.float64)
    t = np.asarray(targets.toarray() if sp.issparse(targets) else targets, dtype=np.float64)
    if p.shape[0] == 0:
        return np.zeros(0)
    if t.shape[0] == 0:
        return np.zeros(p.shape[0])
    pn, tn = np.linalg.norm(p, axis=1, keepdims=True), np.linalg.norm(t, axis=1, keepdims=True)
    p = np.divide(p, pn, out=np.zeros_like(p), where=pn > 0)
    t = np.divide(t, tn, out=np.zeros_like(t), where=tn > 0)
    return (p @ t.T).max(axis=1)


def less_scorer(pool: Matrix, targets: Matrix, options: MethodSettings) -> np.ndarray:
    """Registry matrix scorer: cosine of each pool gradient to each target gradient, max over the targets."""
    if options.similarity not in (None, "cosine"):
        raise ConfigError(f"less scores by cosine (max over targets); --similarity {options.similarity} does not "
                          "apply")
    return max_cosine(pool, targets)
