"""Why do bf16 selections differ from fp32's, and would bf16 autocast over fp32 weights differ less? mona's
defaults on the first --rows rows of a pool against a target file, featurized (no cache) in fp32, in bf16
weights (what `--dtype bf16` runs) and in bf16 autocast over fp32 weights (the residual stream and norms stay
fp32; `TruncatedLM.forward` patched for the run), each --repeats times, interleaved. Prints each variant's
featurization seconds, its largest and mean score difference to fp32 and its top-k overlap, then fp32's scores
around the cut with each variant's rank of those rows. Needs a CPU with bf16 instructions to mean anything.

    .venv/bin/python scripts/dtype_boundary.py [--rows 96] [--k 10] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, default=Path("examples/pool.jsonl"))
    ap.add_argument("--target", type=Path, default=Path("examples/target.jsonl"))
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch

    import mona.models.truncated as truncated
    from mona.api import Selector

    torch.set_num_threads(args.threads)
    plain = truncated.TruncatedLM.forward

    def autocast_forward(self, *a, **kw):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain(self, *a, **kw)

    pool = [json.loads(line) for line in args.pool.open()][:args.rows]
    target = [json.loads(line) for line in args.target.open()]
    variants = {"fp32": ("fp32", plain), "bf16 weights": ("bf16", plain), "bf16 autocast": ("fp32", autocast_forward)}
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.repeats):
            for name, (dtype, forward) in variants.items():
                truncated.TruncatedLM.forward = forward
                selector = Selector("mona", dtype=dtype, no_cache=True).fit(pool)
                seconds[name].append(round(selector.fit_seconds, 1))
                scores[name] = np.asarray(selector.select(target, budget=args.k).scores)
    finally:
        truncated.TruncatedLM.forward = plain
    ref = scores["fp32"]
    order = {name: np.argsort(-s, kind="stable") for name, s in scores.items()}
    for name, s in scores.items():
        diff = np.abs(s - ref)
        overlap = len(set(order[name][:args.k]) & set(order["fp32"][:args.k]))
        print(f"{name}: featurized in {seconds[name]} s; score difference to fp32 largest {diff.max():.2e}, "
              f"mean {diff.mean():.2e}; top-{args.k} overlap {overlap}/{args.k}")
    ranks = {name: {int(row): r + 1 for r, row in enumerate(o)} for name, o in order.items()}
    print(f"fp32's rows {args.k - 3}..{args.k + 4} (rank, id, fp32 score, each variant's rank):")
    for r in range(max(0, args.k - 4), min(len(pool), args.k + 4)):
        row = int(order["fp32"][r])
        others = ", ".join(f"{name} {ranks[name][row]}" for name in variants if name != "fp32")
        print(f"  {r + 1:>3} {pool[row].get('id', row)} {ref[row]:.5f} ({others})")


if __name__ == "__main__":
    main()
