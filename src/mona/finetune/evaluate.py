"""Evaluate the base model, or base + a LoRA adapter, on held-out rows with a reference answer.

Every row: the negative log-likelihood of its reference answer (its content tokens as the assistant turn after the
chat-templated prompt), summed per row; the result's `nll` is the mean per answer token over all rows. This is
continuous, so it resolves differences between fine-tuned models that accuracy at 135M parameters cannot.

A row with options is multiple choice: the options come from a list field `options`, else from an "Options:"
block in the prompt (the lines after a line `Options:` that start with `- `, as in mona's BIG-bench rows). Each
option is scored by the sum of its tokens' log-likelihoods; the row is correct when the best option is the
reference output, and `p_correct` is the probability mass on the right option (the options' likelihoods
renormalised over the options). The length-normalised variant (mean log-likelihood per token) is reported beside
it. Any other row is also scored by exact match of a greedy generation (chat template with the generation prompt,
`max_new_tokens`; 0 skips it), both sides stripped of surrounding whitespace and trailing sentence punctuation
(. , ; : ! ?) and compared case-insensitively.

lm-evaluation-harness: `run_lm_eval(tasks)` merges the adapter into the model, saves the merged model to a
temporary directory and runs `lm_eval.simple_evaluate(model="hf", ...)` on it (fp32, on `--device`). It needs the
optional dependency (`pip install mona[lm-eval]`) and the tasks' data sets (downloaded by lm-eval from the hub).
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

from mona.atomic import atomic_write
from mona.data.formats import Sample
from mona.data.readers import read_samples
from mona.errors import DependencyError, InputError, MissingFileError
from mona.finetune.options import EvalConfig
from mona.finetune.sft import conversation_tokens, render_chat
from mona.models.answer_loss import pad_batch
from mona.models.loader import DEFAULT_MODEL, load_lm, resolve_device
from mona.outputs import check_outputs, local_path
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


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all of `seqs` share."""
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return n


@torch.inference_mode()
def score_answers(model, tokenizer, rows: Sequence[EvalRow], candidates: Sequence[Sequence[str]], *,
                  path: str | None = None) -> list[list[tuple[float, int]]]:
    """Per row, per candidate answer: (sum of the answer's content-token log-likelihoods as the assistant turn
    after the row's prompt, its number of tokens).

    The tokens every candidate of a row shares (the templated prompt, and a common first answer token such as
    "(" of "(A)") run once; each candidate's own tokens then run on a copy of that KV cache, so a row with k
    options costs one prompt, not k. Only the positions that predict an answer token go through the LM head."""
    out: list[list[tuple[float, int]]] = []
    for row, answers in zip(rows, candidates, strict=True):
        seqs: list[tuple[list[int], list[int]]] = []  # (ids, positions of the answer's content tokens)
        for answer in answers:
            ids, turns = conversation_tokens(tokenizer, [*row.prompt, ("assistant", answer)], path=path,
                                             line=row.line)
            content = [t for t in turns if t.message == len(row.prompt)]
            seqs.append((ids, content[0].content if content else []))
        if not seqs:
            out.append([])
            continue
        shared = _common_prefix([ids for ids, _ in seqs]) if len(seqs) > 1 else len(seqs[0][0])
        # the shared run must stop one token short of every candidate's first answer token it does not hold, so
        # the logits that predict that token come from it: positions p-1 for answer tokens p <= shared
        wanted = sorted({p - 1 for _, pos in seqs for p in pos if p <= shared})
        prefix = torch.tensor([seqs[0][0][:shared]], device=model.device)
        res = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=len(seqs) > 1,
                    logits_to_keep=torch.tensor(wanted, dtype=torch.long, device=model.device))
        prefix_lp = dict(zip(wanted, torch.log_softmax(res.logits[0].float(), dim=-1), strict=True))
        rest = [i for i, (ids, _) in enumerate(seqs) if len(ids) > shared]
        rest_lp: dict[int, torch.Tensor] = {}
        if rest:
            width = max(len(seqs[i][0]) - shared for i in rest)
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
            ids = pad_batch([seqs[i][0][shared:] for i in rest], pad_id).to(model.device)
            attention = torch.zeros((len(rest), shared + width), dtype=torch.long, device=model.device)
            for b, i in enumerate(rest):
                attention[b, : len(seqs[i][0])] = 1
            cache = res.cache
            cache.batch_repeat_interleave(len(rest))
            logits = model(input_ids=ids, attention_mask=attention, cache=cache).logits
            rest_lp = {i: torch.log_softmax(logits[b].float(), dim=-1) for b, i in enumerate(rest)}
        scores = []
        for i, (ids, pos) in enumerate(seqs):
            # the logits at p-1 predict token p: from the shared run for p <= shared, else from the candidate's own
            total = sum(float(prefix_lp[p - 1][ids[p]]) if p <= shared else float(rest_lp[i][p - 1 - shared, ids[p]])
                        for p in pos)
            scores.append((total, len(pos)))
        out.append(scores)
    return out


@torch.inference_mode()
def generate_answer(model, tokenizer, prompt: Sequence[tuple[str, str]], max_new_tokens: int, *,
                    path: str | None = None, line: int | None = None) -> str:
    """Greedy answer after the chat-templated prompt (special tokens dropped)."""
    text = render_chat(tokenizer, prompt, generation_prompt=True, path=path, line=line)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=model.device)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad,
                         temperature=None, top_p=None, top_k=None)[0, ids.shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def load_with_adapter(model_spec: str | None, adapter: str | Path | None, device: str = "cpu"):
    """(model, tokenizer): the base model on `device` (see loader.resolve_device), with the LoRA adapter merged
    in when one is given."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        raise MissingFileError("no LoRA adapter here (expected adapter_config.json, as written by mona finetune "
                               "into DIR/adapter)", path=str(adapter))
    model, tokenizer = load_lm(model_spec, "fp32", device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model.eval()
    return model, tokenizer


def _accuracy(values: Sequence[bool]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _nll(predictions: Sequence[dict[str, Any]]) -> float | None:
    """Mean negative log-likelihood per answer token, over all the rows' reference answer tokens."""
    tokens = sum(p["answer_tokens"] for p in predictions)
    return round(sum(p["nll"] for p in predictions) / tokens, 6) if tokens else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _mc_prediction(row: EvalRow, scores: Sequence[tuple[float, int]]) -> dict[str, Any]:
    """A multiple-choice row's prediction from its options' scores (the reference's, when it is not an option,
    comes last)."""
    options = row.options or []
    sums = [s for s, _ in scores[: len(options)]]
    norms = [s / n if n else -math.inf for s, n in scores[: len(options)]]
    best = max(range(len(sums)), key=lambda i: (sums[i], -i))
    best_norm = max(range(len(norms)), key=lambda i: (norms[i], -i))
    inside = row.answer in options
    # probability mass on the right option: the options' sequence likelihoods renormalised over the options
    p_correct = float(torch.softmax(torch.tensor(sums, dtype=torch.float64), 0)[options.index(row.answer)]) \
        if inside else 0.0
    ref_ll, ref_n = scores[options.index(row.answer)] if inside else scores[-1]
    return {"id": row.id, "kind": MC, "target": row.answer, "prediction": options[best],
            "correct": options[best] == row.answer, "prediction_norm": options[best_norm],
            "correct_norm": options[best_norm] == row.answer, "options": options,
            "loglik": [round(v, 6) for v in sums], "loglik_norm": [round(v, 6) for v in norms],
            "answer_in_options": inside, "p_correct": round(p_correct, 6), "nll": round(-ref_ll, 6),
            "answer_tokens": ref_n}


def evaluate(data: str | Path, *, model: str | None = None, adapter: str | Path | None = None,
             max_new_tokens: int, device: str, limit: int | None = None,
             progress: RichProgress | None = None) -> dict[str, Any]:
    """The model (with the adapter) on the held-out rows of `data`: the mean NLL per answer token of the
    reference answers (every row); for rows with options, accuracy by option log-likelihood and the probability
    mass on the right option; for the others, exact match of a greedy answer (`max_new_tokens` 0: none).
    Overall and per kind (mc, generation), with one prediction per row. The model runs on `device`
    (loader.resolve_device), in fp32."""
    path = str(data)
    samples = read_samples(data)
    if limit is not None:
        samples = samples[: max(0, limit)]
    rows = eval_rows(samples, path)
    t0 = time.perf_counter()
    lm, tokenizer = load_with_adapter(model, adapter, device)
    progress = progress or RichProgress(enabled=False)
    progress.start("eval", len(rows))
    predictions: list[dict[str, Any]] = []
    seconds_gen = 0.0
    try:
        t_score = time.perf_counter()
        for i, row in enumerate(rows):
            options = row.options or []
            answers = options if row.answer in options else [*options, row.answer]
            scores = score_answers(lm, tokenizer, [row], [answers], path=path)[0]
            if options:
                predictions.append(_mc_prediction(row, scores))
            else:
                predictions.append({"id": row.id, "kind": GENERATION, "target": row.answer,
                                    "nll": round(-scores[0][0], 6), "answer_tokens": scores[0][1]})
            progress.update(i + 1, 0)
        seconds_score = time.perf_counter() - t_score
        if max_new_tokens > 0:
            t_gen = time.perf_counter()
            for row, pred in zip(rows, predictions, strict=True):
                if pred["kind"] != GENERATION:
                    continue
                text = generate_answer(lm, tokenizer, row.prompt, max_new_tokens, path=path, line=row.line)
                pred["prediction"] = text
                pred["correct"] = normalise_answer(text) == normalise_answer(row.answer)
            seconds_gen = time.perf_counter() - t_gen
    finally:
        progress.finish()
    mc = [p for p in predictions if p["kind"] == MC]
    gen = [p for p in predictions if p["kind"] == GENERATION]
    judged = [p for p in predictions if "correct" in p]
    seconds = time.perf_counter() - t0
    return {
        "data": path,
        "model": model or DEFAULT_MODEL,
        "adapter": str(adapter) if adapter is not None else None,
        "n": len(predictions),
        "nll": _nll(predictions),
        "accuracy": _accuracy([p["correct"] for p in judged]),
        "by_kind": {
            MC: {"n": len(mc), "nll": _nll(mc), "accuracy": _accuracy([p["correct"] for p in mc]),
                 "accuracy_norm": _accuracy([p["correct_norm"] for p in mc]),
                 "p_correct": _mean([p["p_correct"] for p in mc])},
            GENERATION: {"n": len(gen), "nll": _nll(gen),
                         "accuracy": _accuracy([p["correct"] for p in gen if "correct" in p]),
                         "max_new_tokens": max_new_tokens, "seconds": round(seconds_gen, 3)},
        },
        "seconds_scoring": round(seconds_score, 3),
        "seconds": round(seconds, 3),
        "seconds_per_row": round(seconds / len(predictions), 4) if predictions else None,
        "predictions": predictions,
    }


def summary_line(result: dict[str, Any]) -> str:
    """One line: NLL per answer token and accuracy overall, then per kind."""
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    mc, gen = result["by_kind"][MC], result["by_kind"][GENERATION]
    return (f"NLL {num(result['nll'])} per answer token, accuracy {num(result['accuracy'])} on {result['n']} rows "
            f"(mc {num(mc['accuracy'])} [norm {num(mc['accuracy_norm'])}, p(right) {num(mc['p_correct'])}, NLL "
            f"{num(mc['nll'])}] n={mc['n']}; generation {num(gen['accuracy'])} [NLL {num(gen['nll'])}] "
            f"n={gen['n']}) in {result['seconds']:.1f} s")


def write_results(path: str | Path, result: dict[str, Any]) -> None:
    """The results as indented JSON, written atomically."""
    with atomic_write(path) as fh:
        json.dump(result, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def run_lm_eval(tasks: Sequence[str], *, model: str | None = None, adapter: str | Path | None = None,
                device: str, limit: int | None = None, batch_size: int = 1) -> dict[str, Any]:
    """lm-evaluation-harness tasks on the model (adapter merged on the CPU), saved to a temp dir and loaded as
    `hf` on `device`."""
    try:
        import lm_eval
    except ImportError:
        raise DependencyError("the lm-evaluation-harness adapter needs lm-eval: pip install mona[lm-eval]") from None
    device = resolve_device(device)
    lm, tokenizer = load_with_adapter(model, adapter)
    with tempfile.TemporaryDirectory(prefix="mona-lm-eval-") as tmp:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tmp},dtype=float32",
                                          tasks=list(tasks), limit=limit, batch_size=batch_size, device=device)
    results = results or {}
    return {"model": model or DEFAULT_MODEL, "adapter": str(adapter) if adapter is not None else None,
            "tasks": list(tasks), "limit": limit, "results": results.get("results"),
            "versions": results.get("versions"), "n-shot": results.get("n-shot")}


def run_eval(config: EvalConfig, out: Path | None = None, progress: RichProgress | None = None
             ) -> tuple[dict[str, Any], str]:
    """`mona eval`: evaluate as the config says and, with `out`, write the results as JSON; returns the results
    and a one-line summary."""
    config.check()
    check_outputs({"--data": config.data, "--adapter": config.adapter, "--model": local_path(config.model)},
                  {"--out": out})
    if config.lm_eval_tasks is not None:
        tasks = [t.strip() for t in config.lm_eval_tasks.split(",") if t.strip()]
        result = run_lm_eval(tasks, model=config.model, adapter=config.adapter, device=config.device,
                             limit=config.limit)
        line = json.dumps(result["results"], default=str)
    else:
        assert config.data is not None
        result = evaluate(config.data, model=config.model, adapter=config.adapter,
                          max_new_tokens=config.max_new_tokens, device=config.device, limit=config.limit,
                          progress=progress)
        line = summary_line(result)
    if out is not None:
        write_results(out, result)
    return result, line

