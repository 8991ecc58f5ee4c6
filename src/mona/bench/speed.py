"""`mona bench speed`: tokens/s of MoNA's featurization (truncated forward + SAE encoding + pooling), of the
bare truncated forward (the same length-bucketed batches), and of a naive MoNA (the whole model with its LM
head and `output_hidden_states=True`, batches of 16 rows in input order, then the same SAE encoding and
pooling) on the same rows, each in fp32 and bf16 (and any other dtype asked for), so the cost of the SAE and
pooling, the gain from mona's levers and the gain from bf16 are visible side by side. The report also records
the CPU's model and flags, what `--dtype auto` picks on this machine and why, and how far each dtype's
selections move from fp32's (top-k overlap, largest score difference)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from mona.atomic import write_text
from mona.bench.host import describe_host, host_line, load_average, load_line
from mona.bench.options import SpeedConfig
from mona.data.formats import Sample
from mona.data.readers import read_samples
from mona.errors import ConfigError
from mona.features.lm import LMConfig, LMRunner
from mona.models import DEFAULT_MODEL, TokenBatch, Tokenized, TruncatedLM, decoder_layers, load_lm, resolve_dtype
from mona.models.dtype import BF16_FLAGS, canonical_dtype, cpu_flags
from mona.outputs import check_outputs, local_path
from mona.selection.registry import MethodOptions, get_method

# Rows per batch of the naive run: what a straightforward script does (fixed-size batches in input order,
# padded to each batch's longest row), the batch size of the first fp32 measurement this benchmark replaced.
NAIVE_BATCH_ROWS = 16
# Always measured: fp32 is the reference of every ratio and agreement figure, bf16 what `auto` may pick.
BASE_DTYPES = ("fp32", "bf16")
# The CPU flags the report shows: the vector ISA levels and the bf16/int8 instructions that decide dtype speed.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", *BF16_FLAGS, "amx_tile", "amx_int8")


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
class DtypeRun:
    """The three timings of one dtype (seconds, summed over batches, each batch's best of the repeats)."""

    dtype: str
    forward_seconds: float
    mona_seconds: float
    naive_seconds: float


@dataclass
class Agreement:
    """How far one dtype's selections are from fp32's on the same pool and targets."""

    dtype: str
    k: int
    overlap: dict[str, float]  # target name -> |top-k of dtype & top-k of fp32| / k
    max_score_diff: float  # largest |score(dtype) - score(fp32)| over every pool row and target
    fit_seconds: float  # featurizing the pool in this dtype (through mona.Selector, no cache)

    @property
    def min_overlap(self) -> float:
        return min(self.overlap.values())

    @property
    def mean_overlap(self) -> float:
        return float(np.mean(list(self.overlap.values())))


@dataclass
class SpeedResult:
    """One speed measurement: the same rows and batches in every dtype."""

    rows: int
    tokens: int  # tokens through the model, padding excluded
    pooled_tokens: int
    batches: int
    repeats: int
    model: str
    layer: int
    runs: list[DtypeRun]
    auto: str  # what `--dtype auto` resolves to on this machine, and why
    cpu_flags: list[str]  # the ISA_FLAGS this CPU has
    threads: int
    machine: str
    host: dict
    load_before: list[float] | None
    load_after: list[float] | None
    agreement: list[Agreement] | None = None

    def run(self, dtype: str) -> DtypeRun:
        """The timings of one dtype."""
        return next(r for r in self.runs if r.dtype == dtype)

    def rates(self) -> dict[str, dict[str, float]]:
        """dtype -> tokens/s of the forward, mona and the naive run, and mona's rate against fp32's mona, the
        fp32 naive run and its own dtype's forward."""
        fp32 = self.run("fp32")
        out = {}
        for r in self.runs:
            out[r.dtype] = {"forward_tok_s": round(self.tokens / r.forward_seconds, 1),
                            "mona_tok_s": round(self.tokens / r.mona_seconds, 1),
                            "naive_tok_s": round(self.tokens / r.naive_seconds, 1),
                            "mona_vs_forward": round(r.forward_seconds / r.mona_seconds, 3),
                            "mona_vs_fp32_mona": round(fp32.mona_seconds / r.mona_seconds, 3),
                            "mona_vs_fp32_naive": round(fp32.naive_seconds / r.mona_seconds, 3)}
        return out

    def as_dict(self) -> dict:
        """The fields plus the rates of each dtype and each agreement's summary."""
        data = {**asdict(self), "rates": self.rates()}
        for entry, a in zip(data["agreement"] or [], self.agreement or [], strict=True):
            entry.update(min_overlap=round(a.min_overlap, 4), mean_overlap=round(a.mean_overlap, 4))
        return data


def speed_dtypes(extra: Sequence[str] = ()) -> list[str]:
    """fp32, bf16 and the `extra` dtypes asked for (canonical names, each once, `auto` refused: it is one of the
    others, and the report says which)."""
    out = list(BASE_DTYPES)
    for name in extra:
        dtype = canonical_dtype(name)
        if dtype == "auto":
            raise ConfigError("--dtype auto is always reported (it picks one of fp32 and bf16); give another dtype")
        if dtype not in out:
            out.append(dtype)
    return out


def measure_speed(samples: list[Sample], config: LMConfig | None = None, sae: str | None = None,
                  repeats: int = 1, dtypes: Sequence[str] = BASE_DTYPES) -> SpeedResult:
    """Time the bare truncated forward, MoNA featurization and the naive MoNA in each of `dtypes` (fp32 first)
    over the same batches (per batch, best of `repeats`). `config.dtype` is ignored: every dtype runs."""
    if list(dtypes[:1]) != ["fp32"]:
        raise ValueError("the first dtype must be fp32, the reference of the ratios")
    load_before = load_average()  # before this process adds load of its own
    config = config or LMConfig()
    variants = []
    for dtype in dtypes:
        runner = LMRunner(replace(config, dtype=dtype))
        featurizer = get_method("mona").build(MethodOptions(sae=sae), runner)  # mona's defaults (codes, top-m...)
        lm = runner.lm()
        layer = runner.resolved_layer()
        full, _ = load_lm(config.model, dtype, runner.device)  # a second copy: TruncatedLM cut the first one
        variants.append((featurizer, lm, NaiveLM(full, lm, layer)))
    lm0 = variants[0][1]
    items = [variants[0][0].runner.render(s) for s in samples]
    tokenized = lm0.tokenize(items)
    plan = lm0.plan(tokenized)
    tokens = sum(len(t.ids) for t in tokenized)
    pooled = sum(sum(t.pool) for t in tokenized)
    for featurizer, lm, naive in variants:  # warm-up
        _ = featurizer.sae
        featurizer.pool(lm.forward(tokenized, plan[-1][:2]))
        featurizer.pool(naive.forward(tokenized, plan[-1][:2]))
    # The runs alternate batch by batch (and dtype by dtype) and keep each batch's best time, so drift in the
    # machine's speed (other jobs, clock changes) hits all of them alike instead of whichever run came last. The
    # naive run has its own batches (input order, fixed size); its i-th batch is timed next to mona's i-th.
    naive_plan = [list(range(i, min(i + NAIVE_BATCH_ROWS, len(tokenized))))
                  for i in range(0, len(tokenized), NAIVE_BATCH_ROWS)]
    totals = np.zeros((len(variants), 3))
    for i in range(max(len(plan), len(naive_plan))):
        best = np.full((len(variants), 3), np.inf)
        for _ in range(repeats):
            for v, (featurizer, lm, naive) in enumerate(variants):
                if i < len(plan):
                    t0 = time.perf_counter()
                    lm.forward(tokenized, plan[i])
                    t1 = time.perf_counter()
                    featurizer.pool(lm.forward(tokenized, plan[i]))
                    t2 = time.perf_counter()
                    best[v, 0], best[v, 1] = min(best[v, 0], t1 - t0), min(best[v, 1], t2 - t1)
                if i < len(naive_plan):
                    t0 = time.perf_counter()
                    featurizer.pool(naive.forward(tokenized, naive_plan[i]))
                    best[v, 2] = min(best[v, 2], time.perf_counter() - t0)
        totals += np.where(np.isinf(best), 0.0, best)
    load_after = load_average()
    host = describe_host()
    flags = cpu_flags()
    device = variants[0][0].runner.device
    return SpeedResult(len(samples), tokens, pooled, len(plan), repeats, config.model or DEFAULT_MODEL,
                       variants[0][0].runner.resolved_layer(),
                       [DtypeRun(d, *map(float, t)) for d, t in zip(dtypes, totals, strict=True)],
                       str(resolve_dtype("auto", device)), [f for f in ISA_FLAGS if f in flags],
                       torch.get_num_threads(), host_line(host), host, load_before, load_after)


def top_k_overlap(a: np.ndarray, b: np.ndarray, ids: Sequence[str], k: int) -> float:
    """Share of the k best rows by scores `a` that are also among the k best by `b` (ties broken by id, as a
    selection breaks them)."""
    from mona.selection.budget import rank

    return len(set(rank(ids, a)[:k].tolist()) & set(rank(ids, b)[:k].tolist())) / k


def measure_agreement(pool: Sequence[dict], targets: dict[str, Sequence[dict]], dtypes: Sequence[str], k: int,
                      **options) -> list[Agreement]:
    """Select with mona (its defaults, `options` as for `mona.Selector`, no cache) in each of `dtypes` (fp32
    first) from `pool` for every target set, and compare each dtype's top-k and scores with fp32's."""
    from mona.api import Selector

    if list(dtypes[:1]) != ["fp32"]:
        raise ValueError("the first dtype must be fp32, the reference of the agreement")
    if not 1 <= k <= len(pool):
        raise ConfigError(f"the agreement's k must be in 1..{len(pool)} (the pool's rows), got {k}")
    scores: dict[str, dict[str, np.ndarray]] = {}
    fit_seconds: dict[str, float] = {}
    ids: list[str] = []
    for dtype in dtypes:
        selector = Selector("mona", dtype=dtype, no_cache=True, **options).fit(list(pool))
        fit_seconds[dtype] = selector.fit_seconds
        picks = {name: selector.select(list(rows), budget=k) for name, rows in targets.items()}
        scores[dtype] = {name: np.asarray(sel.scores) for name, sel in picks.items()}
        ids = list(next(iter(picks.values())).pool_ids)
    ref = scores["fp32"]
    return [Agreement(dtype, k, {name: top_k_overlap(s, ref[name], ids, k) for name, s in scores[dtype].items()},
                      float(max(np.abs(s - ref[name]).max() for name, s in scores[dtype].items())),
                      fit_seconds[dtype]) for dtype in dtypes[1:]]


def speed_markdown(result: SpeedResult, command: str, pool: str, json_name: str | None = None) -> str:
    """docs/benchmarks/speed.md: the command, the machine, its flags and load, the rates in every dtype, what
    auto picks, and the agreement of each dtype's selections with fp32's."""
    rates = result.rates()
    dtypes = [r.dtype for r in result.runs]
    cols = " | ".join(dtypes)
    lines = [
        "# Speed", "",
        "## MoNA featurization vs. the bare truncated forward and a naive implementation, per dtype", "",
        f"    {command}", "",
        f"{result.rows} rows of `{pool}`, {result.tokens} tokens through the model ({result.pooled_tokens} of "
        f"them pooled; padding excluded), model {result.model}, layer {result.layer}. The forward and mona share "
        f"{result.batches} length-bucketed batches; the naive run takes the rows in input order, "
        f"{NAIVE_BATCH_ROWS} per batch, each padded to its longest row. The runs alternate batch by batch and "
        f"dtype by dtype, and each batch keeps its best of {result.repeats}, so drift in the machine's speed hits "
        "all alike.", "",
        f"Machine: {result.machine}; CPU flags that decide dtype speed: "
        f"{', '.join(result.cpu_flags) or 'none of ' + ', '.join(ISA_FLAGS)}.", "",
        f"`--dtype auto` (the default) picks here: {result.auto}.", "",
        f"Load: {load_line(result.load_before, result.load_after)}.", "",
        f"| run (tokens/s) | what runs | {cols} |",
        "|---|---|" + "---|" * len(dtypes),
        f"| bare truncated forward | decoder layers 0..{result.layer}; no later layers, final norm or LM head; a "
        "prefix every row of a batch shares and none pools (the first token and the chat template's system "
        "prompt) runs once per distinct prefix, from its key/value cache | "
        + " | ".join(str(rates[d]["forward_tok_s"]) for d in dtypes) + " |",
        "| mona featurization | the same forward + TopK SAE encoding + pooling into sparse vectors | "
        + " | ".join(str(rates[d]["mona_tok_s"]) for d in dtypes) + " |",
        f"| naive MoNA | every decoder layer, final norm and LM head (logits for every token), "
        f"`output_hidden_states=True`, then the same SAE encoding + pooling of layer {result.layer} | "
        + " | ".join(str(rates[d]["naive_tok_s"]) for d in dtypes) + " |", "",
        "| ratio | " + cols + " |", "|---|" + "---|" * len(dtypes),
        "| mona / bare forward (same dtype; goal >= 0.9) | "
        + " | ".join(f"{rates[d]['mona_vs_forward']:.3f}" for d in dtypes) + " |",
        "| mona / fp32 mona (bf16 goal on a CPU with bf16 support: >= 2.5) | "
        + " | ".join(f"{rates[d]['mona_vs_fp32_mona']:.3f}" for d in dtypes) + " |",
        "| mona / fp32 naive (goal >= 2.5 in fp32; >= 5 in bf16 on a CPU with bf16 support) | "
        + " | ".join(f"{rates[d]['mona_vs_fp32_naive']:.3f}" for d in dtypes) + " |", ""]
    if result.agreement:
        a0 = result.agreement[0]
        lines += [f"## Selections of each dtype against fp32's (mona's defaults, top-{a0.k} of the same rows)", "",
                  "| dtype | targets | top-k overlap, min | mean | largest score difference | pool featurized "
                  "in (s) |", "|---|---|---|---|---|---|"]
        lines += [f"| {a.dtype} | {len(a.overlap)} | {a.min_overlap:.3f} | {a.mean_overlap:.3f} | "
                  f"{a.max_score_diff:.2e} | {a.fit_seconds:.1f} |" for a in result.agreement]
        lines.append("")
    if json_name:
        lines += [f"Raw figures: [{json_name}]({json_name}).", ""]
    return "\n".join(lines)


def run_speed(config: SpeedConfig, lm: LMConfig, sae: str | None, command: str) -> SpeedResult:
    """`mona bench speed`: measure the speeds and the agreement, write the JSON figures and the Markdown report
    where the config says; returns the result."""
    check_outputs({"--pool": config.pool, "--target": config.target, "--model": local_path(lm.model),
                   "--sae": local_path(sae)}, {"--out": config.out, "--out-md": config.out_md})
    dtypes = speed_dtypes(config.dtype or ())
    samples = read_samples(config.pool)[:config.rows]
    targets = read_samples(config.target)
    result = measure_speed(samples, lm, sae, repeats=config.repeats, dtypes=dtypes)
    result.agreement = measure_agreement([s.record.row for s in samples],
                                         {config.target.name: [t.record.row for t in targets]}, dtypes, config.k,
                                         model=lm.model, layer=lm.layer, render=lm.render, sae=sae)
    out, out_md = config.out, config.out_md
    if out is not None:
        write_text(out, json.dumps(result.as_dict(), indent=1) + "\n")
    if out_md is not None:
        json_name = out.name if out is not None and out.parent.resolve() == out_md.parent.resolve() else None
        write_text(out_md, speed_markdown(result, command, str(config.pool), json_name))
    return result


def speed_lines(result: SpeedResult) -> list[str]:
    """The result as the lines `mona bench speed` prints: what ran, the load, each dtype's rates, the agreement."""
    lines = [f"{result.rows} rows, {result.tokens} tokens ({result.pooled_tokens} pooled), layer {result.layer}; "
             f"{result.machine}; flags {' '.join(result.cpu_flags)}; auto: {result.auto}",
             load_line(result.load_before, result.load_after)]
    lines += [f"{name}: forward {rate['forward_tok_s']}, mona {rate['mona_tok_s']}, naive {rate['naive_tok_s']} "
              f"tok/s; mona {rate['mona_vs_fp32_mona']:.3f}x fp32 mona, {rate['mona_vs_fp32_naive']:.3f}x the fp32 "
              "naive run" for name, rate in result.rates().items()]
    lines += [f"{a.dtype} vs fp32: top-{a.k} overlap {a.min_overlap:.3f}, largest score difference "
              f"{a.max_score_diff:.2e}" for a in result.agreement]
    return lines

