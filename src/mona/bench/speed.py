"""`mona bench speed`: tokens/s of MoNA's featurization (truncated forward + SAE encoding + pooling), of the
bare truncated forward (the same length-bucketed batches), and of a naive MoNA (the whole model with its LM
head and `output_hidden_states=True`, batches of 16 rows in input order, then the same SAE encoding and
pooling) on the same rows, so the cost of the SAE and pooling and the gain from mona's levers are visible."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mona.bench.host import describe_host, host_line, load_average, load_line
from mona.data.formats import Sample
from mona.errors import ConfigError
from mona.features.lm import LMConfig, LMRunner
from mona.models import DEFAULT_MODEL, TokenBatch, Tokenized, TruncatedLM, decoder_layers, load_lm
from mona.selection.registry import MethodOptions, get_method

# Rows per batch of the naive run: what a straightforward script does (fixed-size batches in input order,
# padded to each batch's longest row), sized like DESIGN.md's reference measurement (batch 16).
NAIVE_BATCH_ROWS = 16


class NaiveLM:
    """The straightforward way to read decoder layer `layer`: run the whole model, LM head included (its logits
    are computed for every token), with `output_hidden_states=True`, on fixed-size batches in input order."""

    def __init__(self, model: nn.Module, lm: TruncatedLM, layer: int) -> None:
        if layer >= len(decoder_layers(model)) - 1:
            # transformers returns the last layer's state after the final norm, not the residual stream
            raise ConfigError(f"the naive run cannot read the last decoder layer ({layer}) un-normalised")
        self.model, self.lm, self.layer = model, lm, layer

    @torch.inference_mode()
    def forward(self, tokenized: Sequence[Tokenized], positions: list[int]) -> TokenBatch:
        """Run one batch through the whole model; the batch carries the residual stream after `layer`."""
        ids, attn, pool = self.lm.pad(tokenized, positions)
        out = self.model(input_ids=ids.to(self.lm.device), attention_mask=attn.to(self.lm.device), use_cache=False,
                         output_hidden_states=True)
        hidden = out.hidden_states[self.layer + 1]  # [0] is the embedding output, [i + 1] decoder layer i's
        return TokenBatch(list(positions), ids, pool, {self.layer: hidden.float().cpu()})


@dataclass
class SpeedResult:
    """One speed measurement."""

    rows: int
    tokens: int  # tokens through the model, padding excluded
    pooled_tokens: int
    batches: int
    repeats: int
    model: str
    layer: int
    dtype: str  # of mona's featurization and the bare forward; the naive run is always fp32
    forward_seconds: float
    mona_seconds: float
    naive_seconds: float
    threads: int
    machine: str
    host: dict
    load_before: list[float] | None
    load_after: list[float] | None

    @property
    def forward_tok_s(self) -> float:
        return self.tokens / self.forward_seconds

    @property
    def mona_tok_s(self) -> float:
        return self.tokens / self.mona_seconds

    @property
    def naive_tok_s(self) -> float:
        return self.tokens / self.naive_seconds

    def as_dict(self) -> dict:
        """The fields plus tokens/s of each run and mona's rate relative to the other two."""
        return {**asdict(self), "forward_tok_s": round(self.forward_tok_s, 1), "mona_tok_s": round(self.mona_tok_s, 1),
                "naive_tok_s": round(self.naive_tok_s, 1),
                "mona_vs_forward": round(self.mona_tok_s / self.forward_tok_s, 3),
                "mona_vs_naive": round(self.mona_tok_s / self.naive_tok_s, 3)}


def measure_speed(samples: list[Sample], config: LMConfig | None = None, sae: str | None = None,
                  repeats: int = 1) -> SpeedResult:
    """Time the bare truncated forward, MoNA featurization and the naive MoNA over the same batches (per batch,
    best of `repeats`). `config.dtype` applies to the first two; the naive run uses an fp32 copy of the model."""
    load_before = load_average()  # before this process adds load of its own
    config = config or LMConfig()
    runner = LMRunner(config)
    featurizer = get_method("mona").build(MethodOptions(sae=sae), runner)  # mona's defaults (codes, pooling, top-m)
    lm = runner.lm()
    layer = runner.resolved_layer()
    full, _ = load_lm(config.model, "fp32", runner.device)  # a second copy: TruncatedLM cut the first one
    naive = NaiveLM(full, lm, layer)
    items = [runner.render(s) for s in samples]
    tokenized = lm.tokenize(items)
    plan = lm.plan(tokenized)
    tokens = sum(len(t.ids) for t in tokenized)
    pooled = sum(sum(t.pool) for t in tokenized)
    _ = featurizer.sae
    featurizer.pool(lm.forward(tokenized, plan[-1][:2]))  # warm-up
    featurizer.pool(naive.forward(tokenized, plan[-1][:2]))
    # The runs alternate batch by batch and keep each batch's best time, so drift in the machine's speed
    # (other jobs, clock changes) hits all of them alike instead of whichever run came last. The naive run has
    # its own batches (input order, fixed size); its i-th batch is timed next to mona's i-th.
    naive_plan = [list(range(i, min(i + NAIVE_BATCH_ROWS, len(tokenized))))
                  for i in range(0, len(tokenized), NAIVE_BATCH_ROWS)]
    best_total = [0.0, 0.0, 0.0]
    for i in range(max(len(plan), len(naive_plan))):
        best = [float("inf") if i < len(plan) else 0.0] * 2 + [float("inf") if i < len(naive_plan) else 0.0]
        for _ in range(repeats):
            if i < len(plan):
                t0 = time.perf_counter()
                lm.forward(tokenized, plan[i])
                t1 = time.perf_counter()
                featurizer.pool(lm.forward(tokenized, plan[i]))
                t2 = time.perf_counter()
                best[0], best[1] = min(best[0], t1 - t0), min(best[1], t2 - t1)
            if i < len(naive_plan):
                t0 = time.perf_counter()
                featurizer.pool(naive.forward(tokenized, naive_plan[i]))
                best[2] = min(best[2], time.perf_counter() - t0)
        best_total = [a + b for a, b in zip(best_total, best, strict=True)]
    load_after = load_average()
    host = describe_host()
    return SpeedResult(len(samples), tokens, pooled, len(plan), repeats, config.model or DEFAULT_MODEL, layer,
                       config.dtype, *best_total,
                       torch.get_num_threads(), host_line(host), host, load_before, load_after)


def speed_markdown(result: SpeedResult, command: str, pool: str, json_name: str | None = None) -> str:
    """docs/benchmarks/speed.md: the command, the machine and its load, and the three rates."""
    r = result.as_dict()
    dtype_note = "" if result.dtype == "fp32" else " (the naive run stays fp32: it uses no speed lever)"
    return "\n".join([
        "# Speed", "",
        "## MoNA featurization vs. the bare truncated forward and a naive implementation", "",
        f"    {command}", "",
        f"{result.rows} rows of `{pool}`, {result.tokens} tokens through the model ({result.pooled_tokens} of "
        f"them pooled; padding excluded), model {result.model}, layer {result.layer}, dtype {result.dtype}"
        f"{dtype_note}. The forward and mona share {result.batches} length-bucketed batches; the naive run "
        f"takes the rows in input order, {NAIVE_BATCH_ROWS} per batch, each padded to its longest row. The "
        f"runs alternate batch by batch and each batch keeps its best of {result.repeats}, so drift in the "
        "machine's speed hits all alike.", "",
        f"Machine: {result.machine}.", "",
        f"Load: {load_line(result.load_before, result.load_after)}.", "",
        "| run | what runs | tokens/s |",
        "|---|---|---|",
        f"| bare truncated forward | decoder layers 0..{result.layer}; no later layers, final norm or LM head; a "
        "prefix every row of a batch shares and none pools (the first token and the chat template's system "
        f"prompt) runs once per distinct prefix, from its key/value cache | {r['forward_tok_s']} |",
        f"| mona featurization | the same forward + TopK SAE encoding + pooling into sparse vectors "
        f"| {r['mona_tok_s']} |",
        f"| naive MoNA | every decoder layer, final norm and LM head (logits for every token), "
        f"`output_hidden_states=True`, then the same SAE encoding + pooling of layer {result.layer} "
        f"| {r['naive_tok_s']} |", "",
        f"mona runs at {r['mona_vs_forward']:.3f}x the bare forward's rate (goal: at least 0.9x) and at "
        f"{r['mona_vs_naive']:.3f}x the naive one's (goal: at least 2.5x).", "",
        *([f"Raw figures: [{json_name}]({json_name}).", ""] if json_name else [])])
