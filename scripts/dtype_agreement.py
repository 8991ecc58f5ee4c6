"""Do bf16 (or int8) selections equal fp32's? mona's selections, in each dtype, on a slice of the hard relevance
suite: a few target sets (one per kind, in the suite's order), a pool of each one's first relevant rows plus
seeded other rows of the suite's pool; per target, top-k overlap with fp32's picks (k = relevant rows per target)
and the largest score difference (mona.bench.speed.measure_agreement).

A slice, not the whole suite, because bf16 is emulated on CPUs without AVX512-BF16/AMX (20x slower than fp32 on
the 2-core AMD EPYC this was first run on).

    .venv/bin/python scripts/dtype_agreement.py [--targets 3] [--relevant 25] [--others 50] [--dtype bf16 ...]
        [--threads 1] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=3, help="target sets, one per kind in the suite's order")
    ap.add_argument("--relevant", type=int, default=25, help="relevant pool rows per target (also k)")
    ap.add_argument("--others", type=int, default=50, help="other pool rows, drawn with --seed")
    ap.add_argument("--dtype", action="append", default=None, help="dtypes compared with fp32 (default: bf16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from mona.bench.speed import measure_agreement
    from mona.bench.suite import load_suite

    if args.threads:
        torch.set_num_threads(args.threads)
    suite = load_suite("hard")
    chosen, kinds = [], set()
    for t in suite.targets:
        if t.kind not in kinds and len(chosen) < args.targets:
            chosen.append(t)
            kinds.add(t.kind)
    by_id = {str(row["id"]): row for row in suite.pool}
    picked = [i for t in chosen for i in sorted(t.relevant)[:args.relevant]]
    rest = sorted(set(by_id) - set(picked))
    picked += random.Random(args.seed).sample(rest, args.others)
    pool = [by_id[i] for i in picked]
    t0 = time.perf_counter()
    results = measure_agreement(pool, {t.name: t.rows for t in chosen}, ["fp32", *(args.dtype or ["bf16"])],
                                args.relevant)
    report = {"targets": [{"name": t.name, "kind": t.kind, "examples": len(t.rows)} for t in chosen],
              "pool_rows": len(pool), "k": args.relevant, "threads": torch.get_num_threads(),
              "seconds": round(time.perf_counter() - t0, 1),
              "agreement": [{"dtype": a.dtype, "overlap": a.overlap, "min_overlap": a.min_overlap,
                             "max_score_diff": a.max_score_diff, "fit_seconds": round(a.fit_seconds, 1)}
                            for a in results]}
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text, file=sys.stdout)


if __name__ == "__main__":
    main()
