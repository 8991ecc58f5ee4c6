"""Run every method under the `mona select` contract on the 4-task BIG-bench pool (tests/data), twice: a cold
run into a fresh feature cache and a warm one, and write docs/benchmarks/methods.md.

    .venv/bin/python scripts/bench_methods.py [--methods mona,neurons,...] [--budget 50]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "bigbench_4tasks.jsonl"
MONA = str(Path(sys.executable).parent / "mona")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="mona,neurons,hidden,dense,bm25,dsir,less,random")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "methods.md"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mona-methods-"))
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    pool, target = tmp / "pool.jsonl", tmp / "target.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "pool"))
    target.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "target"))
    target_task = next(r["task"] for r in rows if r["split"] == "target")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    lines = ["# Every method under the `mona select` contract on a 4-task BIG-bench pool",
             "", f"Pool: 4 BIG-bench tasks x 50 rows ({DATA.relative_to(ROOT)}); target: 5 held-out "
             f"`{target_task}` rows; budget {args.budget}. Cold = empty feature cache, warm = same command again. "
             "Wall times include interpreter start-up (about 2 s: see random).", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores. "
             "Command: `.venv/bin/python scripts/bench_methods.py`", "",
             "| method | selected rows of the target task | cold run s | warm run s |", "|---|---|---|---|"]
    for method in args.methods.split(","):
        times = []
        for _ in range(2):
            cmd = [MONA, "select", "--pool", str(pool), "--target", str(target), "--budget", str(args.budget),
                   "--out", str(tmp / f"{method}.jsonl"), "--method", method, "--cache-dir", str(tmp / "cache"),
                   "--quiet"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                print(method, "failed:", proc.stderr.strip().splitlines()[-1:], file=sys.stderr)
                break
        else:
            picked = [json.loads(line) for line in (tmp / f"{method}.jsonl").read_text().splitlines()]
            share = collections.Counter(r["task"] for r in picked)[target_task]
            lines.append(f"| {method} | {share}/{args.budget} | {times[0]:.1f} | {times[1]:.1f} |")
            print(lines[-1], flush=True)
            continue
        lines.append(f"| {method} | failed | | |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
