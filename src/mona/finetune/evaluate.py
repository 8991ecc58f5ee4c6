"""Evaluate the base model, or base + a LoRA adapter, on held-out rows with a reference answer.

A row with options is multiple choice: the options come from a list field `options`, else from an "Options:"
block in the prompt (the lines after a line `Options:` that start with `- `, as in mona's BIG-bench rows). Each
option is scored by the sum of its tokens' log-likelihoods as the assistant answer after the chat-templated
prompt; the row is correct when the best option is the reference output. The length-normalised variant (mean
log-likelihood per token) is reported beside it. Any other row is scored by exact match of a greedy generation
(chat template with the generation prompt, `max_new_tokens`), both sides stripped of surrounding whitespace and
trailing sentence punctuation (. , ; : ! ?) and compared case-insensitively.

lm-evaluation-harness: `run_lm_eval(tasks)` merges the adapter into the model, saves the merged model to a
temporary directory and runs `lm_eval.simple_evaluate(model="hf", ...)` on it (CPU, fp32). It needs the optional
dependency (`pip install mona[lm-eval]`) and the tasks' data sets (downloaded by lm-eval from the hub).

Measured speed (SmolLM2-135M-Instruct, fp32, OMP_NUM_THREADS=1 on 2 cores busy with another benchmark, first 40
rows of examples/pool.jsonl, 8 of them multiple choice): ~1.5 s per multiple-choice row (every option is a full
forward pass of prompt + option), ~1.4 s per generation row at max_new_tokens 32 (~18 generated tokens/s),
~1.5 s per row overall.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mona.data.formats import Sample
from mona.data.readers import read_samples
from mona.errors import DependencyError, InputError, MissingFileError
from mona.finetune.sft import conversation_tokens, pad_batch, render_chat, selected_logits
from mona.models.loader import DEFAULT_MODEL, load_lm
from mona.models.truncated import length_batches
from mona.outputs import atomic_write
from mona.progress import RichProgress

MC, GENERATION = "mc", "generation"
TRAILING_PUNCTUATION = ".,;:!?"


def parse_options(text: str) -> list[str] | None:
    """The options of an "Options:" block: the `- ` lines right after a line `Options:`; None without one."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Options:":
            continue
        options = []
        for item in lines[i + 1:]:
            if not item.startswith("- "):
                break
            options.append(item[2:].strip())
        if options:
            return options
    return None


def row_options(sample: Sample, prompt: Sequence[tuple[str, str]]) -> list[str] | None:
    """Options from the row's `options` list, else from the "Options:" block of its last user turn."""
    field = sample.record.row.get("options")
    if isinstance(field, list) and field:
        return [str(o).strip() for o in field]
    users = [content for role, content in prompt if role == "user"]
    return parse_options(users[-1]) if users else None


def normalise_answer(text: str) -> str:
    """Whitespace and trailing sentence punctuation stripped, case folded."""
    return text.strip().rstrip(TRAILING_PUNCTUATION + " \t\r\n").strip().casefold()


class EvalProgress(RichProgress):
    """RichProgress counting evaluated rows (multiple-choice rows are scored in one go, first)."""

    def start(self, label: str, total: int) -> None:
        if not self.enabled:
            return
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("rows"), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)
        self._t0 = time.perf_counter()


@dataclass(frozen=True)
class EvalRow:
    """A held-out row: the conversation before the reference answer, the answer, and the options if any."""

    id: str
    line: int
    prompt: tuple[tuple[str, str], ...]
    answer: str
    options: list[str] | None


def eval_rows(samples: Sequence[Sample], path: str) -> list[EvalRow]:
    """Split each row into prompt and reference answer (its last assistant turn)."""
    rows = []
    for s in samples:
        line = s.record.line
        messages = s.messages or ()
        last = max((i for i, (role, content) in enumerate(messages) if role == "assistant" and content.strip()),
                   default=None)
        if last is None or last == 0:
            raise InputError("row has no prompt and reference answer (an instruction row needs an output)",
                             path=path, line=line)
        prompt = tuple(messages[:last])
        answer = messages[last][1].strip()
        rows.append(EvalRow(s.id, line, prompt, answer, row_options(s, prompt)))
    return rows


@torch.inference_mode()
def score_options(model, tokenizer, rows: Sequence[EvalRow], *, path: str | None = None,
                  batch_tokens: int = 2048) -> list[list[tuple[float, int]]]:
    """Per row, per option: (sum of the option's token log-likelihoods as the answer, its number of tokens)."""
    seqs: list[tuple[int, int, list[int], list[int]]] = []  # (row, option, ids, content positions)
    for r, row in enumerate(rows):
        for o, option in enumerate(row.options or []):
            ids, turns = conversation_tokens(tokenizer, [*row.prompt, ("assistant", option)], path=path,
                                             line=row.line)
            answer = [t for t in turns if t.message == len(row.prompt)]
            seqs.append((r, o, ids, answer[0].content if answer else []))
    out: list[list[tuple[float, int]]] = [[(-math.inf, 0)] * len(row.options or []) for row in rows]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    for batch in length_batches([len(s[2]) for s in seqs], batch_tokens, 64):
        items = [seqs[i] for i in batch if seqs[i][3]]
        if not items:
            continue
        ids = pad_batch([it[2] for it in items], pad_id)
        attention = torch.zeros_like(ids)
        select = torch.zeros_like(ids, dtype=torch.bool)
        for b, it in enumerate(items):
            attention[b, : len(it[2])] = 1
            select[b, [p - 1 for p in it[3]]] = True  # the logits at p-1 predict token p
        logprobs = torch.log_softmax(selected_logits(model, ids, attention, select), dim=-1)
        targets = torch.cat([torch.tensor([it[2][p] for p in it[3]]) for it in items])
        token_lp = logprobs.gather(1, targets[:, None])[:, 0]
        cursor = 0
        for it in items:
            n = len(it[3])
            out[it[0]][it[1]] = (float(token_lp[cursor: cursor + n].sum()), n)
            cursor += n
    return out


@torch.inference_mode()
def generate_answer(model, tokenizer, prompt: Sequence[tuple[str, str]], max_new_tokens: int, *,
                    path: str | None = None, line: int | None = None) -> str:
    """Greedy answer after the chat-templated prompt (special tokens dropped)."""
    text = render_chat(tokenizer, prompt, generation_prompt=True, path=path, line=line)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad,
                         temperature=None, top_p=None, top_k=None)[0, ids.shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def load_with_adapter(model_spec: str | None, adapter: str | Path | None):
    """(model, tokenizer): the base model, with the LoRA adapter merged in when one is given."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        raise MissingFileError("no LoRA adapter here (expected adapter_config.json, as written by mona finetune "
                               "into DIR/adapter)", path=str(adapter))
    model, tokenizer = load_lm(model_spec, "fp32")
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model.eval()
    return model, tokenizer


def _accuracy(values: Sequence[bool]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def evaluate(data: str | Path, *, model: str | None = None, adapter: str | Path | None = None,
             max_new_tokens: int = 32, limit: int | None = None, batch_tokens: int = 2048,
             progress: RichProgress | None = None) -> dict[str, Any]:
    """Accuracy of the model (with the adapter) on the held-out rows of `data`: overall and per kind (mc,
    generation), with one prediction per row."""
    path = str(data)
    samples = read_samples(data)
    if limit is not None:
        samples = samples[: max(0, limit)]
    rows = eval_rows(samples, path)
    t0 = time.perf_counter()
    lm, tokenizer = load_with_adapter(model, adapter)
    progress = progress or EvalProgress(enabled=False)
    progress.start("eval", len(rows))
    predictions: list[dict[str, Any]] = []
    try:
        t_mc = time.perf_counter()
        mc_rows = [r for r in rows if r.options]
        scores = score_options(lm, tokenizer, mc_rows, path=path, batch_tokens=batch_tokens)
        by_id: dict[int, dict[str, Any]] = {}
        for row, row_scores in zip(mc_rows, scores, strict=True):
            sums = [s for s, _ in row_scores]
            norms = [s / n if n else -math.inf for s, n in row_scores]
            best = max(range(len(sums)), key=lambda i: (sums[i], -i))
            best_norm = max(range(len(norms)), key=lambda i: (norms[i], -i))
            by_id[id(row)] = {
                "id": row.id, "kind": MC, "target": row.answer, "prediction": row.options[best],
                "correct": row.options[best] == row.answer, "prediction_norm": row.options[best_norm],
                "correct_norm": row.options[best_norm] == row.answer, "options": row.options,
                "loglik": [round(s, 6) for s in sums], "loglik_norm": [round(s, 6) for s in norms],
                "answer_in_options": row.answer in row.options,
            }
        done = len(mc_rows)
        progress.update(done, 0)
        t_gen = time.perf_counter()
        seconds_mc = t_gen - t_mc
        for row in rows:
            if row.options:
                continue
            text = generate_answer(lm, tokenizer, row.prompt, max_new_tokens, path=path, line=row.line)
            by_id[id(row)] = {"id": row.id, "kind": GENERATION, "target": row.answer, "prediction": text,
                              "correct": normalise_answer(text) == normalise_answer(row.answer)}
            done += 1
            progress.update(done, 0)
        predictions = [by_id[id(row)] for row in rows]
        seconds_gen = time.perf_counter() - t_gen
    finally:
        progress.finish()
    mc = [p for p in predictions if p["kind"] == MC]
    gen = [p for p in predictions if p["kind"] == GENERATION]
    seconds = time.perf_counter() - t0
    return {
        "data": path,
        "model": model or DEFAULT_MODEL,
        "adapter": str(adapter) if adapter is not None else None,
        "n": len(predictions),
        "accuracy": _accuracy([p["correct"] for p in predictions]),
        "by_kind": {
            MC: {"n": len(mc), "accuracy": _accuracy([p["correct"] for p in mc]),
                 "accuracy_norm": _accuracy([p["correct_norm"] for p in mc]), "seconds": round(seconds_mc, 3)},
            GENERATION: {"n": len(gen), "accuracy": _accuracy([p["correct"] for p in gen]),
                         "max_new_tokens": max_new_tokens, "seconds": round(seconds_gen, 3)},
        },
        "seconds": round(seconds, 3),
        "seconds_per_row": round(seconds / len(predictions), 4) if predictions else None,
        "predictions": predictions,
    }


def summary_line(result: dict[str, Any]) -> str:
    """One line: overall accuracy, then per kind."""
    def acc(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    mc, gen = result["by_kind"][MC], result["by_kind"][GENERATION]
    return (f"accuracy {acc(result['accuracy'])} on {result['n']} rows (mc {acc(mc['accuracy'])} "
            f"[norm {acc(mc['accuracy_norm'])}] n={mc['n']}; generation {acc(gen['accuracy'])} n={gen['n']}) "
            f"in {result['seconds']:.1f} s")


def write_results(path: str | Path, result: dict[str, Any]) -> None:
    """The results as indented JSON, written atomically."""
    with atomic_write(path) as fh:
        json.dump(result, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def run_lm_eval(tasks: Sequence[str], *, model: str | None = None, adapter: str | Path | None = None,
                limit: int | None = None, batch_size: int = 1) -> dict[str, Any]:
    """lm-evaluation-harness tasks on the model (adapter merged), saved to a temp dir and loaded as `hf`."""
    try:
        import lm_eval
    except ImportError:
        raise DependencyError("the lm-evaluation-harness adapter needs lm-eval: pip install mona[lm-eval]") from None
    lm, tokenizer = load_with_adapter(model, adapter)
    with tempfile.TemporaryDirectory(prefix="mona-lm-eval-") as tmp:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tmp},dtype=float32",
                                          tasks=list(tasks), limit=limit, batch_size=batch_size, device="cpu")
    results = results or {}
    return {"model": model or DEFAULT_MODEL, "adapter": str(adapter) if adapter is not None else None,
            "tasks": list(tasks), "limit": limit, "results": results.get("results"),
            "versions": results.get("versions"), "n-shot": results.get("n-shot")}
