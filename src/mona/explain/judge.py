"""The paper's "LLM as a data analyst": a judge model rates sampled rows of a selection from 1 to 10 on three
criteria, given the target examples, and the ratings are averaged per method.

The prompt (one per criterion; `PROMPT` below, filled with the target examples, the candidate and the
criterion's description) asks for a single number. A local judge (default: the embedded SmolLM2-Instruct) is
read off its next-token probabilities rather than sampled: the rating is the expected value over the answers
"1" .. "10" (their probabilities renormalised), which is deterministic and needs one forward pass per criterion.
An OpenAI-compatible endpoint (`--api-base`, `--api-model`) is asked at temperature 0 and the first integer
in its reply is taken."""

from __future__ import annotations

import json
import os
import random
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mona.atomic import atomic_write
from mona.data.formats import Sample
from mona.data.readers import read_samples
from mona.errors import ConfigError
from mona.explain.options import JudgeConfig
from mona.outputs import check_outputs, local_path
from mona.progress import Progress, progress_step

CRITERIA = {
    "semantic_similarity": "semantic similarity: how close the candidate's content and topic are to the target "
                           "task's examples",
    "format_compatibility": "instruction-format compatibility: how well the candidate's instruction and answer "
                            "format match the target task's format",
    "generalization": "potential to generalise: how much training on the candidate would help a model do the "
                      "target task",
}

PROMPT = """You are a data analyst choosing training data for a language model.

Examples of the target task:
{targets}

Candidate training sample:
{candidate}

Rate the candidate from 1 (not at all) to 10 (perfectly) on {criterion}.
Answer with a single number from 1 to 10."""


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_prompt(targets: Sequence[Sample], candidate: Sample, criterion: str, *, chars: int = 400) -> str:
    """The judge prompt for one candidate and one criterion (texts clipped to `chars` characters each)."""
    shown = "\n".join(f"{i + 1}. {_clip(t.plain_text(), chars)}" for i, t in enumerate(targets))
    return PROMPT.format(targets=shown, candidate=_clip(candidate.plain_text(), chars),
                         criterion=CRITERIA[criterion])


@dataclass
class LocalJudge:
    """Expected rating from a local chat model's probabilities of the answers 1..10."""

    model: object
    tokenizer: object

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.digit_ids = [tok.encode(str(d), add_special_tokens=False) for d in range(1, 10)]
        if any(len(ids) != 1 or tok.decode(ids).strip() != str(d) for d, ids in enumerate(self.digit_ids, 1)):
            raise ConfigError("the judge's tokenizer does not have single-token digits 1-9")
        zero = tok.encode("0", add_special_tokens=False)
        self.zero_id = zero[0] if len(zero) == 1 and tok.decode(zero).strip() == "0" else None

    @torch.inference_mode()
    def rate(self, prompt: str) -> float:
        tok = self.tokenizer
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        out = self.model(input_ids=ids, use_cache=True)
        probs = out.logits[0, -1].float().softmax(-1)
        p = np.array([float(probs[i[0]]) for i in self.digit_ids] + [0.0])
        if self.zero_id is not None:
            # "10" = "1" then "0": split the mass of "1" by what follows it
            one = torch.tensor([[self.digit_ids[0][0]]])
            nxt = self.model(input_ids=one, past_key_values=out.past_key_values, use_cache=True).logits[0, -1]
            p_zero = float(nxt.float().softmax(-1)[self.zero_id])
            p[9] = p[0] * p_zero
            p[0] *= 1 - p_zero
        if p.sum() <= 0:
            return float("nan")
        return float((p / p.sum()) @ np.arange(1, 11))


@dataclass
class ApiJudge:
    """An OpenAI-compatible chat-completions endpoint, temperature 0."""

    api_base: str
    api_model: str
    api_key: str | None = None
    timeout: float = 60.0

    def rate(self, prompt: str) -> float:
        body = json.dumps({"model": self.api_model, "temperature": 0, "max_tokens": 8,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.api_base.rstrip("/") + "/chat/completions", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(response.read())["choices"][0]["message"]["content"]
        match = re.search(r"\d+", reply)
        return float(min(10, max(1, int(match.group())))) if match else float("nan")


def judge_selection(judge, selected: Sequence[Sample], targets: Sequence[Sample], config: JudgeConfig, *,
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """Rate a seeded random sample of `config.n` selected rows on every criterion; per-row ratings and means."""
    rng = random.Random(config.seed)
    rows = rng.sample(list(selected), min(config.n, len(selected)))
    shown = rng.sample(list(targets), min(config.n_targets, len(targets)))
    ratings = []
    for i, sample in enumerate(rows):
        ratings.append({"id": sample.id, **{c: judge.rate(build_prompt(shown, sample, c)) for c in CRITERIA}})
        if progress:
            progress(i + 1, 0)
    means = {c: float(np.nanmean([r[c] for r in ratings])) if ratings else float("nan") for c in CRITERIA}
    means["overall"] = float(np.mean(list(means.values())))
    return {"n": len(rows), "targets_shown": [t.id for t in shown], "mean": means, "ratings": ratings}


def make_judge(config: JudgeConfig) -> LocalJudge | ApiJudge:
    """The rater: the endpoint at `config.api_base` (key from $OPENAI_API_KEY), else the local model."""
    config.check()
    if config.api_base is not None:
        return ApiJudge(config.api_base, str(config.api_model), os.environ.get("OPENAI_API_KEY"))
    from mona.models import load_lm

    model, tokenizer = load_lm(config.model)
    return LocalJudge(model, tokenizer)


def judge_files(target: Path, selections: Sequence[Path], names: Sequence[str] | None, config: JudgeConfig, *,
                out: Path | None = None, progress: Callable[[], Progress] | None = None) -> dict[str, dict]:
    """`mona judge`: rate each selection file (the OUT of `mona select`, one per method, named by `names` or
    the file stems) against the targets; with `out`, also write the ratings and means as JSON. `progress`
    makes a fresh progress bar per selection."""
    names = list(names) if names else [p.stem for p in selections]
    if len(names) != len(selections):
        raise ConfigError("give one --name per --selection")
    config.check()
    check_outputs({"--target": target, "--selection": list(selections), "--model": local_path(config.model)},
                  {"--out": out})
    targets = read_samples(target)
    rows_of = [read_samples(p) for p in selections]
    rater = make_judge(config)
    results = {}
    for method, rows in zip(names, rows_of, strict=True):
        with progress_step(progress() if progress else None, f"judging {method}", min(config.n, len(rows))) as update:
            results[method] = judge_selection(rater, rows, targets, config, progress=update)
    if out is not None:
        with atomic_write(out) as fh:
            fh.write(json.dumps({"judge": config.api_model or config.model or "smollm2-135m-instruct",
                                 "results": results}, indent=1) + "\n")
    return results


def judge_table(results: dict[str, dict]) -> str:
    """The mean rating per method and criterion as a Markdown table."""
    lines = ["| method | n | " + " | ".join(CRITERIA) + " | overall |", "|---|---|" + "---|" * (len(CRITERIA) + 1)]
    lines += [f"| {method} | {r['n']} | " + " | ".join(f"{r['mean'][c]:.2f}" for c in CRITERIA)
              + f" | {r['mean']['overall']:.2f} |" for method, r in results.items()]
    return "\n".join(lines)

