"""Training of an LLM2Vec adapter for the selection model (`mona llm2vec train`) and its held-out evaluation
(`mona llm2vec eval`): LLM2Vec's three steps (BehnamGhader et al. 2024, arXiv 2404.05961) on transformers + peft.

1. Bidirectional attention (mona.models.bidirectional): every token sees the whole row.
2. Masked next-token prediction (MNTP), trained as a LoRA adapter: a share of each row's tokens is masked
   (BERT-style: 80 % the mask token '_', 10 % a random token, 10 % unchanged) and token i is predicted from the
   output at position i - 1 through the model's own LM head, so the new bidirectional model keeps its token
   predictions where they were.
3. Unsupervised SimCSE, a second LoRA adapter on the model with the MNTP one merged: each row passes twice with
   dropout on (attention dropout and LoRA dropout), the two mean-pooled embeddings are the positive pair and the
   other rows of the batch the negatives; InfoNCE over cosines divided by a temperature.
Sentence vectors are the mean of the final hidden states (after the final norm) over the row's tokens.

Why not the `llm2vec` package: llm2vec 0.2.3 requires transformers<=4.44.2 and imports attention classes
(LlamaSdpaAttention, LlamaFlashAttention2, ...) that transformers 5 removed; mona runs transformers 5 and peft
0.21. The steps themselves are small, so they are written here.

What differs from the paper, for a 2-core CPU (the shipped adapter's MODEL_CARD.md has the figures): a few
hundred steps of small batches of rows cut to 64 tokens instead of 1,000 steps of 32 x 512 (MNTP) and 128 x 128
(SimCSE) tokens; LoRA rank 8 instead of 16; and the text is not Wikipedia but rows of BIG-bench (which mona
already keeps offline), drawn evenly from every task that is not held out. A share of the tasks (whole tasks,
all their subtask files) never enters training: `mona llm2vec eval` measures on them.

A run writes its checkpoint (LoRA weights, optimizer state, losses, time spent) into OUT/checkpoint every few
steps; the same command resumes from it. The batches, masks and dropout of each step are seeded by the step's
number, so a resumed run does what an uninterrupted one does."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mona.atomic import atomic_dir, atomic_path, write_text
from mona.data.bigbench import bigbench_dir, prepare_bigbench, task_index
from mona.data.formats import Record, to_sample
from mona.errors import ConfigError
from mona.features.llm2vec import ADAPTER_PARTS, adapter_fingerprint, load_encoder
from mona.features.llm2vec_options import Llm2VecEvalConfig, Llm2VecTrainConfig
from mona.models import DEFAULT_MODEL
from mona.models.bidirectional import (
    TextBatch,
    embed_texts,
    final_hidden,
    mean_pool,
    set_attention_dropout,
    tokenize_texts,
)
from mona.progress import Progress, progress_step

LOG_EVERY = 10  # steps between log lines
PHASES = ("mntp", "simcse")
TRAIN_META = "train.json"


# ---- data: BIG-bench tasks split into training and held-out ----

def parent_task(file_name: str) -> str:
    """The BIG-bench task of a normalised task file ('arithmetic__1_digit_addition' -> 'arithmetic')."""
    return file_name.split("__")[0]


def task_split(heldout_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training tasks, held-out tasks): a seeded share of BIG-bench's tasks (with all their subtask files) held
    out, the rest for training; both sorted."""
    prepare_bigbench()
    tasks = sorted({parent_task(name) for name in task_index()})
    held = set(random.Random(seed).sample(tasks, max(1, round(heldout_fraction * len(tasks)))))
    return [t for t in tasks if t not in held], sorted(held)


def _files_of(task: str) -> list[str]:
    return sorted(name for name in task_index() if parent_task(name) == task)


def _lines(name: str) -> list[str]:
    with (bigbench_dir() / "rows" / f"{name}.jsonl").open(encoding="utf-8") as fh:
        return fh.readlines()


def _text(line: str, index: int) -> str:
    return to_sample(Record(json.loads(line), index, index + 1)).plain_text()


def training_texts(tasks: Sequence[str], per_task: int, seed: int) -> list[str]:
    """Plain texts (instruction and answer) of `per_task` rows drawn from each task's files together, distinct,
    shuffled (seeded)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for task in tasks:
        lines = [line for name in _files_of(task) for line in _lines(name)]
        texts.extend(_text(line, i) for i, line in enumerate(rng.sample(lines, min(per_task, len(lines)))))
    texts = sorted(set(texts))  # distinct: a duplicate in a SimCSE batch would be its own negative
    rng.shuffle(texts)
    return texts


def heldout_rows(tasks: Sequence[str], rows_per_task: int, seed: int) -> tuple[list[str], list[str]]:
    """(texts, task of each): `rows_per_task` rows of each held-out task, all from one of its task files (seeded,
    among those with enough rows), so that rows of one label are one task; tasks without such a file are left
    out."""
    rng = random.Random(seed)
    index = task_index()
    texts, labels = [], []
    for task in tasks:
        files = [name for name in _files_of(task) if index[name] >= rows_per_task]
        if not files:
            continue
        lines = _lines(rng.choice(files))
        for i, line in enumerate(rng.sample(lines, rows_per_task)):
            texts.append(_text(line, i))
            labels.append(task)
    return texts, labels


# ---- the two losses ----

def mntp_loss(model, batch: TextBatch, *, mask_id: int, vocab_size: int, fraction: float,
              generator: torch.Generator) -> torch.Tensor:
    """Masked next-token prediction: mask `fraction` of the row's tokens (never the first token or padding;
    BERT's 80/10/10 split), predict each masked token i from the output at position i - 1 with the LM head;
    cross-entropy over the masked tokens."""
    ids = batch.input_ids
    candidates = batch.pool_mask
    chosen = (torch.rand(ids.shape, generator=generator) < fraction) & candidates
    if not chosen.any():  # a short batch: mask one token at least
        where = candidates.nonzero()
        row, col = where[torch.randint(len(where), (1,), generator=generator)][0]
        chosen[row, col] = True
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = torch.randint(vocab_size, (int(swap.sum()),), generator=generator)
    hidden = final_hidden(model, TextBatch(inputs, batch.attention_mask, batch.pool_mask))
    predicts = chosen[:, 1:].to(hidden.device)  # position i - 1 predicts token i
    logits = model.get_output_embeddings()(hidden[:, :-1][predicts])
    return F.cross_entropy(logits.float(), ids[:, 1:].to(hidden.device)[predicts])


def simcse_loss(model, batch: TextBatch, *, temperature: float) -> torch.Tensor:
    """Unsupervised SimCSE: the batch passes twice in one forward (dropout differs between the copies); InfoNCE
    of each row's first embedding against the second embeddings of all rows, cosine / temperature."""
    n = len(batch.input_ids)
    doubled = TextBatch(*(torch.cat([t, t]) for t in (batch.input_ids, batch.attention_mask, batch.pool_mask)))
    emb = F.normalize(mean_pool(final_hidden(model, doubled), doubled.pool_mask), dim=-1)
    logits = emb[:n] @ emb[n:].T / temperature
    return F.cross_entropy(logits, torch.arange(n, device=logits.device))


# ---- training loop with checkpoints ----

def lr_at(step: int, steps: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up over the first `warmup_fraction` of the steps, then cosine decay to 0."""
    warmup = max(1, int(steps * warmup_fraction))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _step_seed(seed: int, phase: str, step: int) -> int:
    return seed * 1_000_003 + PHASES.index(phase) * 100_003 + step


def add_lora(model, config: Llm2VecTrainConfig, seed: int):
    """`model` wrapped in a fresh PEFT LoRA adapter (seeded initialisation) on `config.lora_targets`."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model.requires_grad_(False)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), bias="none")
    return get_peft_model(model, lora)


def _trainable(peft_model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in peft_model.named_parameters() if p.requires_grad}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_phase(phase: str, peft_model, loss_fn: Callable[[int, torch.Generator], tuple[torch.Tensor, int]],
                *, steps: int, lr: float, config: Llm2VecTrainConfig, checkpoint: Path | None = None,
                progress: Progress | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the LoRA weights of `peft_model` for `steps` AdamW steps of `loss_fn(step, generator)` -> (loss,
    tokens); resumes from `checkpoint` when it holds this phase, and saves there every
    `config.checkpoint_every` steps. Returns {"losses": per step, "seconds": time spent in this phase}."""
    params = _trainable(peft_model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    seconds = 0.0
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["phase"] == phase:
            with torch.no_grad():
                for name, value in state["lora"].items():
                    params[name].copy_(value)
            optimizer.load_state_dict(state["optimizer"])
            start, losses, seconds = state["step"], state["losses"], state["seconds"]
            log(f"{phase}: resuming at step {start}/{steps}")
    peft_model.train()
    tokens = 0
    with progress_step(progress, f"llm2vec {phase}", steps) as update:
        update(start, 0)
        t0 = time.perf_counter()
        for step in range(start, steps):
            torch.manual_seed(_step_seed(config.seed, phase, step))  # dropout
            generator = torch.Generator().manual_seed(_step_seed(config.seed, phase, step))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, lr, config.warmup_fraction)
            loss, n_tokens = loss_fn(step, generator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += n_tokens
            done = step + 1
            elapsed = seconds + time.perf_counter() - t0
            if checkpoint is not None and (done % config.checkpoint_every == 0 or done == steps):
                _save_checkpoint(checkpoint, {"phase": phase, "step": done, "losses": losses, "seconds": elapsed,
                                              "optimizer": optimizer.state_dict(),
                                              "lora": {n: p.detach().clone() for n, p in params.items()}})
            if done % LOG_EVERY == 0 or done == steps:
                recent = losses[-LOG_EVERY:]
                log(f"{phase} step {done}/{steps}: loss {sum(recent) / len(recent):.4f} (mean of last "
                    f"{len(recent)}), lr {optimizer.param_groups[0]['lr']:.2e}, {elapsed:.0f} s in this phase")
            update(done, tokens)
        seconds += time.perf_counter() - t0
    peft_model.eval()
    return {"losses": losses, "seconds": seconds}


def save_adapter(peft_model, path: Path, base: str) -> None:
    """Write the LoRA adapter of `peft_model` in PEFT's layout (adapter_config.json naming `base`, and
    adapter_model.safetensors in float16: half the size, and the weights a LoRA learns in a few hundred steps
    are far above float16's resolution), replacing `path` whole."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    with atomic_dir(path) as tmp:
        state = get_peft_model_state_dict(peft_model)
        save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()},
                  str(tmp / "adapter_model.safetensors"))
        lora = copy.deepcopy(peft_model.peft_config["default"])
        lora.base_model_name_or_path = base
        lora.inference_mode = True
        lora.save_pretrained(str(tmp))
        for file in tmp.iterdir():
            file.chmod(0o644)  # safetensors writes its file readable by its owner only; a shipped asset is for all


def _mask_id(tokenizer, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"the mask token {text!r} is {len(ids)} tokens for this tokenizer; pick one that is one")
    return int(ids[0])


def _batch_of(texts: Sequence[str], step: int, size: int) -> list[str]:
    return [texts[(step * size + j) % len(texts)] for j in range(size)]


def train_llm2vec(out: Path, config: Llm2VecTrainConfig | None = None, *, texts: Sequence[str] | None = None,
                  heldout: Sequence[str] = (), command: str = "", progress: Callable[[], Progress] | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the MNTP and SimCSE adapters for `config.model` (None: the embedded one) into `out` (`out/mntp`,
    `out/simcse`, `out/train.json`, `out/MODEL_CARD.md`); a killed run resumes from `out/checkpoint`.
    `texts`: training texts (default: BIG-bench rows of the tasks the split keeps, `heldout` then being the
    held-out tasks). Returns the metadata written to train.json."""
    config = config or Llm2VecTrainConfig()
    config.check()
    if texts is None:
        train_tasks, heldout = task_split(config.heldout_fraction, config.seed)
        texts = training_texts(train_tasks, config.per_task, config.seed)
        source = f"BIG-bench {len(train_tasks)} tasks x {config.per_task} rows"
    else:
        source = f"{len(texts)} given texts"
    model = config.model
    base_name = model or DEFAULT_MODEL
    work = out / "checkpoint"
    work.mkdir(parents=True, exist_ok=True)
    run = {"config": asdict(config), "model": base_name, "texts": len(texts), "source": source}
    run_file = work / "run.json"
    if run_file.exists() and json.loads(run_file.read_text()) != json.loads(json.dumps(run)):
        raise ConfigError(f"{out} holds a checkpoint of another training run (other options or texts); pass "
                          "another --out or delete it")
    write_text(run_file, json.dumps(run, indent=1))
    mntp_order = list(texts)
    random.Random(config.seed).shuffle(mntp_order)
    simcse_order = list(texts)
    random.Random(config.seed + 1).shuffle(simcse_order)
    results: dict[str, Any] = {}
    for phase in PHASES:
        done_file = work / f"{phase}.json"
        if done_file.exists() and (out / phase / "adapter_model.safetensors").exists():
            results[phase] = json.loads(done_file.read_text())
            continue
        before = PHASES[: PHASES.index(phase)]
        base, tokenizer = load_encoder(model, out, before)  # fp32, bidirectional, earlier phases merged
        if phase == "mntp":
            steps, lr = config.mntp_steps, config.mntp_lr
            mask_id, vocab = _mask_id(tokenizer, config.mask_token), len(tokenizer)

            def loss_fn(step: int, generator: torch.Generator, base=base, tokenizer=tokenizer,
                        mask_id=mask_id, vocab=vocab) -> tuple[torch.Tensor, int]:
                batch = tokenize_texts(tokenizer, _batch_of(mntp_order, step, config.batch_size), config.max_length)
                loss = mntp_loss(base, batch, mask_id=mask_id, vocab_size=vocab, fraction=config.mask_fraction,
                                 generator=generator)
                return loss, int(batch.attention_mask.sum())
        else:
            steps, lr = config.simcse_steps, config.simcse_lr
            set_attention_dropout(base, config.simcse_dropout)

            def loss_fn(step: int, generator: torch.Generator, base=base, tokenizer=tokenizer
                        ) -> tuple[torch.Tensor, int]:
                batch = tokenize_texts(tokenizer, _batch_of(simcse_order, step, config.simcse_batch_size),
                                       config.max_length)
                return simcse_loss(base, batch, temperature=config.temperature), 2 * int(batch.attention_mask.sum())

        peft_model = add_lora(base, config, config.seed + PHASES.index(phase))
        ran = train_phase(phase, peft_model, loss_fn, steps=steps, lr=lr, config=config,
                          checkpoint=work / "state.pt", progress=progress() if progress else None, log=log)
        save_adapter(peft_model, out / phase, base_name)
        results[phase] = ran
        write_text(done_file, json.dumps(ran))
    meta = {"model": base_name, "source": source, "texts": len(texts), "heldout_tasks": list(heldout),
            "config": asdict(config), "command": command,
            "seconds": {phase: round(results[phase]["seconds"]) for phase in PHASES},
            "loss": {phase: _loss_summary(results[phase]["losses"]) for phase in PHASES},
            "fingerprint": adapter_fingerprint(out)}
    write_text(out / TRAIN_META, json.dumps(meta, indent=1) + "\n")
    write_text(out / "MODEL_CARD.md", model_card(meta))
    shutil.rmtree(work)
    return meta


def _loss_summary(losses: Sequence[float]) -> dict[str, float]:
    """First and last tenth's mean loss of a phase."""
    if not losses:
        return {}
    tenth = max(1, len(losses) // 10)
    return {"first": round(float(np.mean(losses[:tenth])), 4), "last": round(float(np.mean(losses[-tenth:])), 4),
            "steps_averaged": tenth}


# ---- held-out evaluation ----

def same_task_metrics(embeddings: torch.Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """How well cosine separates rows of one task from rows of others: the AUC of same-task vs other-task pairs
    (every pair once; ties count half), and precision@k of each row's k nearest other rows, k = the number of
    other rows of its task (overall mean and per task)."""
    from scipy.stats import rankdata

    x = F.normalize(embeddings.double(), dim=-1)
    sim = (x @ x.T).numpy()
    lab = np.asarray(labels)
    same = lab[:, None] == lab[None, :]
    iu = np.triu_indices(len(lab), 1)
    scores, positive = sim[iu], same[iu]
    ranks = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    auc = (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    np.fill_diagonal(sim, -np.inf)
    per_row = []
    for i in range(len(lab)):
        k = int(same[i].sum()) - 1
        top = np.argsort(-sim[i], kind="stable")[:k]
        per_row.append(float(same[i, top].mean()) if k else float("nan"))
    per_task = {t: float(np.nanmean([p for p, t2 in zip(per_row, lab, strict=True) if t2 == t]))
                for t in sorted(set(labels))}
    return {"auc": float(auc), "precision_at_k": float(np.nanmean(per_row)), "per_task": per_task,
            "same_cosine": float(scores[positive].mean()), "other_cosine": float(scores[~positive].mean())}


VARIANT_HELP = {"llm2vec": "bidirectional + MNTP + SimCSE (the adapter)",
                "mntp": "bidirectional + MNTP only",
                "bidirectional": "bidirectional, no training (ablation)",
                "causal": "the plain model (causal, no adapter)"}
_VARIANT_PARTS = {"llm2vec": ADAPTER_PARTS, "mntp": ("mntp",), "bidirectional": (), "causal": ()}


def evaluate_llm2vec(config: Llm2VecEvalConfig | None = None, *, progress: Callable[[], Progress] | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """The figures of `mona llm2vec eval`: every variant's same_task_metrics on the held-out tasks the adapter's
    training kept out (its train.json), each with its encoding time."""
    from mona.features.llm2vec import shipped_adapter_path

    config = config or Llm2VecEvalConfig()
    adapter = Path(config.adapter) if config.adapter else shipped_adapter_path()
    meta_file = adapter / TRAIN_META
    if not meta_file.exists():
        raise ConfigError(f"{adapter} has no {TRAIN_META} (written by `mona llm2vec train`): its held-out tasks are "
                          "unknown")
    meta = json.loads(meta_file.read_text())
    model = None if meta["model"] == DEFAULT_MODEL else meta["model"]
    prepare_bigbench()
    texts, labels = heldout_rows(meta["heldout_tasks"], config.rows_per_task, config.seed)
    log(f"{len(texts)} rows of {len(set(labels))} held-out tasks")
    results: dict[str, Any] = {}
    for variant in config.variant_names:
        t0 = time.perf_counter()
        parts = _VARIANT_PARTS[variant]
        encoder, tokenizer = load_encoder(model, adapter if parts else None, parts, bidirectional=variant != "causal")
        with progress_step(progress() if progress else None, f"embed {variant}", len(texts)) as update:
            emb = embed_texts(encoder, tokenizer, texts, max_length=config.max_length,
                              batch_size=config.batch_size, progress=lambda done: update(done, 0))
        results[variant] = {**same_task_metrics(emb, labels), "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{variant}: AUC {results[variant]['auc']:.4f}, P@k {results[variant]['precision_at_k']:.4f}")
    return {"adapter": str(adapter), "fingerprint": adapter_fingerprint(adapter), "rows": len(texts),
            "tasks": sorted(set(labels)), "config": asdict(config), "variants": results}


def evaluation_table(evaluation: dict[str, Any]) -> str:
    """The figures as a Markdown table, one line per variant, with per-task wins against the plain model."""
    variants = evaluation["variants"]
    causal = variants.get("causal")
    lines = ["| encoder | AUC same vs other task | precision@k | mean cosine same / other | tasks better / worse "
             "than causal (P@k) | encoding time |", "|---|---|---|---|---|---|"]
    for name, v in variants.items():
        versus = ""
        if causal is not None and name != "causal":
            diffs = [v["per_task"][t] - causal["per_task"][t] for t in v["per_task"]]
            versus = f"{sum(d > 1e-9 for d in diffs)} / {sum(d < -1e-9 for d in diffs)}"
        lines.append(f"| {name}: {VARIANT_HELP[name]} | {v['auc']:.4f} | {v['precision_at_k']:.4f} | "
                     f"{v['same_cosine']:.3f} / {v['other_cosine']:.3f} | {versus} | {v['seconds']:.0f} s |")
    return "\n".join(lines)


def _shown(adapter: str) -> str:
    """An adapter's path as the report shows it: the shipped one relative to the source tree."""
    from mona.features.llm2vec import shipped_adapter_path

    shipped = shipped_adapter_path()
    return f"src/mona/assets/llm2vec/{shipped.name}" if Path(adapter) == shipped else adapter


def write_evaluation(evaluation: dict[str, Any], out_dir: Path, name: str, command: str, *, card: bool = False
                     ) -> tuple[Path, Path]:
    """`out_dir/name.json` (every figure) and `out_dir/name.md` (the table and how it was made); `card`: the
    adapter's MODEL_CARD.md rewritten with the figures too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    write_text(json_path, json.dumps({**evaluation, "command": command}, indent=1) + "\n")
    if card:
        adapter = Path(evaluation["adapter"])
        meta = json.loads((adapter / TRAIN_META).read_text())
        write_text(adapter / "MODEL_CARD.md", model_card(meta, {**evaluation, "command": command}))
    c = evaluation["config"]
    k = c["rows_per_task"] - 1
    write_text(md_path, f"""# LLM2Vec adapter vs the plain model, held-out BIG-bench tasks

Adapter `{_shown(evaluation['adapter'])}` (fingerprint `{evaluation['fingerprint']}`). {evaluation['rows']} rows:
{c['rows_per_task']} from one task file of each of {len(evaluation['tasks'])} BIG-bench tasks that its training
never saw (the held-out split in its train.json), plain text (instruction and answer), at most {c['max_length']}
tokens, mean-pooled final hidden states. AUC: cosine of the {evaluation['rows'] * (evaluation['rows'] - 1) // 2:,}
row pairs, same task (positives) vs different tasks; precision@k: the share of each row's {k} nearest rows that
are of its task (k = {k}: all of them would be). Tasks better / worse: per-task precision@k against the causal
model.

{evaluation_table(evaluation)}

Held-out tasks: {', '.join(evaluation['tasks'])}.

Reproduce with:

    {command}
""")
    return json_path, md_path


def model_card(meta: dict[str, Any], evaluation: dict[str, Any] | None = None) -> str:
    """The adapter's model card: data, steps, hyper-parameters, time, command and (when given) the held-out
    figures."""
    c, loss, secs = meta["config"], meta["loss"], meta["seconds"]
    rows = [("training text", f"{meta['source']} (plain text: instruction and answer), {meta['texts']:,} "
                              f"distinct rows, at most {c['max_length']} tokens each"),
            ("held-out tasks (never trained on)", f"{len(meta['heldout_tasks'])}: {', '.join(meta['heldout_tasks'])}"),
            ("MNTP", f"{c['mntp_steps']} steps x {c['batch_size']} rows, peak lr {c['mntp_lr']}, loss "
                     f"{loss['mntp'].get('first')} -> {loss['mntp'].get('last')} (mean of the first / last tenth "
                     f"of the steps), {secs['mntp']} s"),
            ("SimCSE", f"{c['simcse_steps']} steps x {c['simcse_batch_size']} rows, peak lr {c['simcse_lr']}, loss "
                       f"{loss['simcse'].get('first')} -> {loss['simcse'].get('last')}, {secs['simcse']} s"),
            ("LoRA", f"rank {c['lora_rank']}, alpha {c['lora_alpha']}, dropout {c['lora_dropout']}, on "
                     f"{', '.join(c['lora_targets'])}"),
            ("optimiser", f"AdamW, linear warm-up over {c['warmup_fraction']:.0%} of the steps, then cosine decay; "
                          "gradient norm clipped at 1"),
            ("seed", str(c["seed"])),
            ("wall time", f"{sum(secs.values())} s of training (one CPU thread of a shared 2-core machine, for the "
                          "shipped adapter)")]
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    if evaluation:
        e = evaluation["config"]
        figures = f"""## Held-out evaluation

{evaluation['rows']} rows of {len(evaluation['tasks'])} BIG-bench tasks kept out of training ({e['rows_per_task']} rows
per task, at most {e['max_length']} tokens); cosine of mean-pooled final hidden states. AUC of same-task vs
other-task row pairs, precision@k of same-task neighbours (k = {e['rows_per_task'] - 1}); details in
docs/benchmarks/llm2vec.md.

{evaluation_table(evaluation)}

Reproduce with:

    {evaluation.get('command') or 'mona llm2vec eval'}
"""
    else:
        figures = "No held-out evaluation yet: run `mona llm2vec eval --adapter DIR --card`.\n"
    return f"""# LLM2Vec adapters for {meta['model']}

LLM2Vec (BehnamGhader et al. 2024) on the embedded selection model, trained by `mona llm2vec train`
(mona.features.llm2vec_train, on transformers + peft: the `llm2vec` package does not run on transformers 5):
1. bidirectional attention (every attention module's `is_causal` off, a padding-only 4-D mask);
2. `mntp/`: a LoRA adapter trained by masked next-token prediction ({c['mask_fraction']:.0%} of the tokens
   masked, BERT's 80/10/10 with '{c['mask_token']}' as the mask token; token i predicted from position i - 1);
3. `simcse/`: a LoRA adapter trained by unsupervised SimCSE on the model with `mntp/` merged (each row twice
   with attention dropout {c['simcse_dropout']}, in-batch negatives, InfoNCE at temperature {c['temperature']}).
Embeddings: the mean of the final hidden states over the row's tokens. `mona select --method llm2vec` merges
both adapters into the embedded model (PEFT layout, float16 weights; fingerprint `{meta['fingerprint']}`).

{table}

BIG-bench texts are Apache-2.0. Reproduce with:

    {meta['command'] or 'mona llm2vec train --out DIR'}

{figures}"""
