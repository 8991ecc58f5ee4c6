"""Supervised fine-tuning of the selection model with LoRA, on a selected data set, resumable on a CPU.

Each row is rendered with the model's chat template and the loss is taken on the assistant answers only (their
content tokens and the end-of-turn token after each); with `text_field` the rows are plain text and every token
is learnt. LoRA sits on the attention projections (q/k/v/o_proj, those present); AdamW with a linear warm-up over
the first 5 % of the optimizer steps, then a linear decay; fp32 weights and optimizer, the forward under bf16
autocast where `--dtype auto` finds the CPU runs bf16 faster (mona.models.dtype), else fp32. Rows are grouped
into batches of similar length under a padded-token budget, and the order of the batches is shuffled per epoch
from (seed, epoch) alone.

Every `save_every` optimizer steps (and at the end) OUT/checkpoint/ is replaced atomically by the adapter weights,
the optimizer and scheduler state, the position in the run (step, epoch, batch in the epoch's order) and the RNG
states. A re-run with the same arguments resumes from it and ends with the same adapter as an uninterrupted run.

Why not trl's SFTTrainer (it is on PyPI, not installed here): it runs on the transformers Trainer (accelerate,
a `datasets.Dataset` pipeline); its assistant-only loss needs `{% generation %}` markers in the chat template,
which SmolLM2's template and most local models' templates lack; and its batches hold a fixed number of rows,
not a padded-token budget. The loop below is short, has no extra dependency, and masks by the template prefix.

Measured speed (SmolLM2-135M-Instruct, fp32, default arguments, first 40 rows of examples/pool.jsonl: 3 batches
and 6 optimizer steps over 2 epochs, 6,756 input tokens): ~116 input tokens/s, ~0.7 s per row per epoch, 58 s in
all, with OMP_NUM_THREADS=1 on a 2-core machine whose cores were busy with another benchmark; expect more with
both cores free. The batch budget counts padding, so rows of very different lengths cost more than their tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import TextColumn

from mona.atomic import atomic_dir, atomic_write
from mona.data.formats import Sample
from mona.data.readers import read_samples
from mona.errors import ConfigError, InputError
from mona.finetune.options import FinetuneConfig
from mona.models.answer_loss import IGNORE, batch_loss_sum
from mona.models.dtype import autocast, parse_dtype, resolve_dtype
from mona.models.loader import DEFAULT_MODEL, load_lm, model_fingerprint, resolve_device
from mona.models.truncated import length_batches
from mona.outputs import check_output_dir, check_outputs, local_path
from mona.progress import RichProgress

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
WARMUP_FRACTION = 0.05
MAX_BATCH_SIZE = 64
MAX_GRAD_NORM = 1.0


# ---------------------------------------------------------------- chat template -> token ids and answer positions


@dataclass(frozen=True)
class AnswerTurn:
    """An assistant turn inside a tokenized conversation: the positions of its content tokens and of the
    end-of-turn token after them (None when the template puts no special token there)."""

    message: int
    content: list[int]
    end: int | None


def render_chat(tokenizer, messages: Sequence[tuple[str, str]], *, generation_prompt: bool = False,
                path: str | None = None, line: int | None = None) -> str:
    """The conversation as the model's chat template writes it."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the model's tokenizer has no chat template; pass --text-field to train on plain text")
    conversation = [{"role": role, "content": content} for role, content in messages]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:  # jinja raises its own errors (a template demanding alternating roles, ...)
        raise ConfigError(f"the chat template cannot render this row: {exc}", path=path, line=line) from None
    if not isinstance(text, str):
        raise ConfigError("the chat template did not render to text", path=path, line=line)
    return text


def _token_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def conversation_tokens(tokenizer, messages: Sequence[tuple[str, str]], *, path: str | None = None,
                        line: int | None = None) -> tuple[list[int], list[AnswerTurn]]:
    """Token ids of the templated conversation and, per non-empty assistant turn, where its answer is.

    The boundary comes from the template itself: the conversation up to the turn, rendered with
    `add_generation_prompt=True`, must tokenize to a prefix of the whole conversation's ids (ConfigError
    otherwise: the template or a token merge would blur prompt and answer). Inside the rest, the answer tokens
    are those overlapping the turn's content characters, so a template without a generation prompt still
    leaves the assistant header out."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("fine-tuning and evaluation need a fast (Rust) tokenizer for token offsets")
    full = render_chat(tokenizer, messages, path=path, line=line)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    specials = set(tokenizer.all_special_ids)
    turns = []
    for i, (role, content) in enumerate(messages):
        if role != "assistant" or not content.strip():
            continue
        prefix = render_chat(tokenizer, messages[:i], generation_prompt=True, path=path, line=line)
        prefix_ids = _token_ids(tokenizer, prefix)
        if not full.startswith(prefix) or ids[: len(prefix_ids)] != prefix_ids:
            raise ConfigError(f"the chat-templated prompt before assistant turn {i + 1} does not tokenize to a "
                              "prefix of the whole conversation, so the answer tokens cannot be told apart",
                              path=path, line=line)
        start = full.find(content, len(prefix))
        if start < 0:
            content = content.strip()
            start = full.find(content, len(prefix))
        if start < 0:
            raise ConfigError(f"the chat template rewrites the text of assistant turn {i + 1}; cannot find it",
                              path=path, line=line)
        end = start + len(content)
        positions = [j for j in range(len(prefix_ids), len(ids)) if offsets[j][0] < end and offsets[j][1] > start]
        if not positions:
            continue
        after = positions[-1] + 1
        turns.append(AnswerTurn(i, positions, after if after < len(ids) and ids[after] in specials else None))
    return ids, turns


@dataclass(frozen=True)
class Encoded:
    """A training row: input ids, labels (IGNORE where no loss is taken) and whether it was cut."""

    ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_targets(self) -> int:
        """Tokens that are predicted and learnt (the first position is never predicted)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


def encode_sample(sample: Sample, tokenizer, max_length: int, *, path: str, plain_text: bool = False) -> Encoded:
    """Token ids and labels of one row: answers only for a conversation, every token for plain text."""
    line = sample.record.line
    if plain_text:
        text = sample.text if sample.text is not None else sample.plain_text()
        ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        eos = tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        labels = list(ids)
    else:
        turns: list[AnswerTurn] = []
        ids = []
        if sample.messages is not None:
            ids, turns = conversation_tokens(tokenizer, sample.messages, path=path, line=line)
        if not turns:
            raise InputError("row has no assistant turn to learn from (an instruction row needs a non-empty "
                             "output); pass --text-field to train on plain text", path=path, line=line)
        labels = [IGNORE] * len(ids)
        for turn in turns:
            for pos in [*turn.content, *([turn.end] if turn.end is not None else [])]:
                labels[pos] = ids[pos]
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], truncated)


# ---------------------------------------------------------------- model pieces


def lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections present in the model (LoRA goes on these)."""
    present = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear)}
    found = [t for t in LORA_TARGETS if t in present]
    if not found:
        raise ConfigError(f"the model has none of the linear layers {', '.join(LORA_TARGETS)} that LoRA is put on")
    return found


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor for optimizer step s (0-based): linear warm-up to 1, then linear decay, never 0 on a step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def epoch_order(n_batches: int, seed: int, epoch: int) -> list[int]:
    """The shuffled batch order of an epoch, from (seed, epoch) alone, so a resumed run sees the same order."""
    return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(n_batches)]


# ---------------------------------------------------------------- progress


class TrainProgress(RichProgress):
    """RichProgress for training: optimizer steps, tokens/s and the loss of the last step."""

    def _count_column(self) -> TextColumn:
        return TextColumn("steps  {task.fields[rate]}  loss {task.fields[loss]}")

    def _fields(self) -> dict[str, str]:
        return {"rate": "", "loss": "-"}

    def step(self, done: int, tokens: int, loss: float | None) -> None:
        """Steps done (overall), tokens seen in this run, loss of the last step."""
        current = self._current()
        if current is None:
            return
        elapsed = max(time.perf_counter() - current[1], 1e-9)
        assert self._progress is not None
        self._progress.update(current[0], completed=done, rate=f"{tokens / elapsed:.0f} tok/s",
                              loss="-" if loss is None else f"{loss:.4f}")


# ---------------------------------------------------------------- checkpoints


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, the epoch, the next batch in the epoch's order, and totals."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    tokens: int = 0
    target_tokens: int = 0
    seconds: float = 0.0
    last_loss: float | None = None
    epoch_loss_sum: float = 0.0
    epoch_targets: int = 0
    epoch_losses: list[float] = field(default_factory=list)


def data_digest(path: Path) -> str:
    """sha256 of the data file (or of the files of a save_to_disk directory)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path)).encode() if path.is_dir() else b"")
        with p.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def run_fingerprint(config: FinetuneConfig, data: Path, dtype: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: every argument that changes the result, with the dtype as
    resolved (auto on another machine may train in another precision)."""
    args = asdict(config)
    args.pop("save_every")
    args.pop("device")
    args["dtype"] = dtype
    args["model"] = model_fingerprint(config.model)
    args["data"] = data_digest(data)
    return args


def _write_checkpoint(out: Path, model, optimizer, scheduler, state: TrainState, fingerprint: dict) -> None:
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=out))
    try:
        weights = {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters()
                   if p.requires_grad}
        save_file(weights, str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")
        np_state = np.random.get_state()
        rng = {"python": _jsonable(random.getstate()),
               "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
        (tmp / "state.json").write_text(json.dumps({"fingerprint": fingerprint, "state": asdict(state),
                                                    "rng": rng}), encoding="utf-8")
        final, old = out / "checkpoint", out / ".checkpoint.old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _checkpoint_dir(out: Path) -> Path | None:
    """OUT/checkpoint, or the previous one when a run died between the two renames of a save."""
    for tmp in out.glob(".checkpoint.*"):
        if tmp.name != ".checkpoint.old":
            shutil.rmtree(tmp, ignore_errors=True)
    for name in ("checkpoint", ".checkpoint.old"):
        if (out / name / "state.json").exists():
            return out / name
    return None


def _read_checkpoint_state(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"unreadable checkpoint ({exc}); pass --overwrite to start again", path=str(ckpt)) from None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def run_outputs(out: Path) -> list[Path]:
    """What a run writes (and, with overwrite, deletes) inside its directory; other files there are left
    alone."""
    return [out / name for name in ("checkpoint", ".checkpoint.old", "adapter", "train.json")]


def _prepare_out(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: start afresh). Refuses a DIR made with other arguments."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = _checkpoint_dir(out)
    saved = _read_checkpoint_state(ckpt) if ckpt is not None else None
    if saved is None and (out / "train.json").exists():
        try:
            saved = {"fingerprint": json.loads((out / "train.json").read_text(encoding="utf-8"))["fingerprint"]}
        except (OSError, ValueError, KeyError, TypeError):
            saved = {"fingerprint": {}}
    if saved is None:
        return None
    diff = _differences(saved["fingerprint"], fingerprint)
    if diff and not overwrite:
        raise ConfigError(f"this directory holds a fine-tuning run made with other arguments (differs in: "
                          f"{', '.join(diff)}); pass --overwrite to start again", path=str(out))
    if overwrite:
        for name in ("checkpoint", ".checkpoint.old", "adapter"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "train.json").unlink(missing_ok=True)
        return None
    if ckpt is None:
        return None
    saved["dir"] = ckpt
    return saved


def _restore(saved: dict[str, Any], model, optimizer, scheduler) -> TrainState:
    from safetensors.torch import load_file

    ckpt: Path = saved["dir"]
    weights = load_file(str(ckpt / "adapter.safetensors"))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != set(params):
        raise ConfigError("the checkpoint's adapter does not fit this model; pass --overwrite", path=str(ckpt))
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name])
    # on the CPU: the optimizer moves its state to the parameters' device, and a run saved on a GPU resumes anywhere
    trainer = torch.load(ckpt / "trainer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["torch_rng"])
    rng = saved.get("rng") or {}
    if "python" in rng:
        random.setstate(_tupled(rng["python"]))
    if "numpy" in rng:
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    return TrainState(**saved["state"])


# ---------------------------------------------------------------- the run


def _save_adapter(out: Path, model) -> None:
    with atomic_dir(out / "adapter") as tmp:
        model.save_pretrained(str(tmp))


def finetune(data: str | Path, out: str | Path, config: FinetuneConfig | None = None, *, overwrite: bool = False,
             progress: TrainProgress | None = None, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` with LoRA on the rows of `data`; write OUT/adapter/ and OUT/train.json.

    Resumes from OUT/checkpoint/ when it was made with the same arguments (ConfigError for other arguments
    unless `overwrite`). `stop_after_steps` (tests) stops once that many optimizer steps are done overall, as
    if the process were killed there: nothing is saved beyond the regular checkpoints. Returns the summary
    written to train.json (with `finished` False after such a stop)."""
    config = config or FinetuneConfig()
    config.check()
    device = resolve_device(config.device)  # a GPU that is not there is refused before any work
    data, out = Path(data), Path(out)
    # before any work: nothing the run writes (or clears with overwrite) may be an input
    check_outputs({"--data": data, "--model": local_path(config.model)}, {"--out": run_outputs(out)},
                  writable=False)
    check_output_dir("--out", out)
    samples = read_samples(data, text_field=config.text_field)
    precision = resolve_dtype(config.dtype, device)
    parse_dtype(precision.dtype)  # int8 (no backward) is refused before any work
    fingerprint = run_fingerprint(config, data, precision.dtype)
    saved = _prepare_out(out, fingerprint, overwrite)

    model, tokenizer = load_lm(config.model, "fp32")  # fp32 master weights; bf16 only inside autocast
    plain = config.text_field is not None
    encoded = [encode_sample(s, tokenizer, config.max_length, path=str(data), plain_text=plain) for s in samples]
    rows = [e for e in encoded if e.n_targets > 0]
    if not rows:
        raise InputError(f"no row keeps an answer token within --max-length {config.max_length}", path=str(data))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    plan = length_batches([len(r.ids) for r in rows], config.batch_tokens, MAX_BATCH_SIZE)
    n_batches = len(plan)
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = max(1, math.ceil(WARMUP_FRACTION * total_steps))

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    targets = lora_targets(model)
    model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                             target_modules=targets, task_type="CAUSAL_LM"))
    model.to(device)  # after the LoRA init, which draws from the CPU's generator: one seed, one init on any device
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total_steps, warmup_steps))
    state = _restore(saved, model, optimizer, scheduler) if saved is not None else TrainState()
    resumed_from = state.step

    progress = progress or TrainProgress(enabled=False)
    progress.start("finetune", total_steps)
    progress.step(state.step, 0, state.last_loss)
    t0 = time.perf_counter()
    run_tokens = 0
    last_saved = state.step if saved is not None else -1
    try:
        while state.epoch < config.epochs:
            order = epoch_order(n_batches, config.seed, state.epoch)
            group = order[state.position: state.position + config.grad_accum]
            batches = [[rows[i] for i in plan[b]] for b in group]
            n_targets = sum(r.n_targets for batch in batches for r in batch)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for batch in batches:
                with autocast(precision.dtype, device):
                    loss = batch_loss_sum(model, [r.ids for r in batch], [r.labels for r in batch], pad_id)
                (loss / n_targets).backward()
                loss_sum += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            tokens = sum(len(r.ids) for batch in batches for r in batch)
            run_tokens += tokens
            state.step += 1
            state.position += len(group)
            state.tokens += tokens
            state.target_tokens += n_targets
            state.last_loss = loss_sum / n_targets
            state.epoch_loss_sum += loss_sum
            state.epoch_targets += n_targets
            if state.position >= n_batches:
                state.epoch_losses.append(state.epoch_loss_sum / state.epoch_targets)
                state.epoch, state.position, state.epoch_loss_sum, state.epoch_targets = state.epoch + 1, 0, 0.0, 0
            progress.step(state.step, run_tokens, state.last_loss)
            if stop_after_steps is not None and state.step >= stop_after_steps and state.epoch < config.epochs:
                return {"finished": False, "steps": state.step, "total_steps": total_steps}
            if state.step % config.save_every == 0:
                state.seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                _write_checkpoint(out, model, optimizer, scheduler, state, fingerprint)
                last_saved = state.step
    finally:
        progress.finish()
    state.seconds += time.perf_counter() - t0
    if last_saved != state.step:
        _write_checkpoint(out, model, optimizer, scheduler, state, fingerprint)
    _save_adapter(out, model)
    summary = {
        "finished": True,
        "model": config.model or DEFAULT_MODEL,
        "data": str(data),
        "arguments": asdict(config),
        "fingerprint": fingerprint,
        "lora_targets": targets,
        "dtype": str(precision),
        "device": device,
        "rows": len(samples),
        "rows_trained": len(rows),
        "rows_truncated": sum(e.truncated for e in encoded),
        "rows_without_answer_tokens": len(encoded) - len(rows),
        "batches_per_epoch": n_batches,
        "steps": state.step,
        "warmup_steps": warmup_steps,
        "resumed_from_step": resumed_from,
        "tokens": state.tokens,
        "target_tokens": state.target_tokens,
        "final_loss": state.last_loss,
        "epoch_losses": state.epoch_losses,
        "seconds": round(state.seconds, 3),
        "tokens_per_second": round(state.tokens / state.seconds, 1) if state.seconds > 0 else None,
    }
    with atomic_write(out / "train.json") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    return summary
