"""What MATES's oracle rewards on the hard relevance suite: for each target, the probed pool rows' oracle
influences (the drop of the target loss after one AdamW step on the row, mona.features.mates), and where the
target's own-task probes and each probed task's rows rank among them. Used for the MATES note in docs/methods.md.

It reads the oracle influences from the MATES cache that `mona bench relevance --methods mates --mates-probes 100
--dtype fp32` fills and skips the targets not probed yet; with --probe it probes them (minutes to twenty each).

    .venv/bin/python scripts/mates_oracle.py [--probes 100] [--targets all] [--task T] [--probe] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from mona.bench.relevance import _samples, pick_targets
from mona.bench.suite import load_suite
from mona.features.less import LessOptions
from mona.features.lm import LMRunner
from mona.features.mates import InfluenceProbe, _seeded_sample, cached_influence, oracle_path
from mona.features.options import LMConfig, MatesOptions
from mona.paths import cache_root


def task_of(row_id: str) -> str:
    """BIG-bench task of a pool id (`task/subset/index`; NaturalInstructions ids keep their subtask)."""
    parts = row_id.split("/")
    return "/".join(parts[:2]) if parts[0] == "natural_instructions" else parts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--targets", default="all")
    parser.add_argument("--task", default="cifar10_classification", help="a probed task to compare with the rest")
    parser.add_argument("--probe", action="store_true", help="probe the targets whose oracle is not cached")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    suite = pick_targets(load_suite("hard"), args.targets)
    pool = _samples(suite.pool)
    params, seed = MatesOptions(probes=args.probes), 0
    probe_at = _seeded_sample(len(pool), params.probes, seed, "probes")
    probes = [pool[int(i)] for i in probe_at]
    probe_tasks = [task_of(p.id) for p in probes]
    chars = np.array([len(p.plain_text()) for p in probes])
    probe = InfluenceProbe(LMRunner(LMConfig(dtype="fp32")), LessOptions(), seed=seed)
    probe.prepare(pool, cache_root())
    out, magnitude = [], defaultdict(list)
    for target in suite.targets:
        rows = _samples(target.rows)
        refs_at = _seeded_sample(len(rows), params.reference_rows, seed, "references")
        references = [rows[int(i)] for i in refs_at]
        if not args.probe and not oracle_path(probe, probes, references, cache_root()).exists():
            continue
        influence = cached_influence(probe, probes, references, cache_root())
        if not influence.std():
            out.append({"target": target.name, "influence": "all 0"})
            continue
        z = (influence - influence.mean()) / influence.std()
        rank = (-influence).argsort().argsort()  # 0: the probe whose step lowered the target loss most
        by_task = defaultdict(list)
        for t, r, zz in zip(probe_tasks, rank, z, strict=True):
            by_task[t].append(int(r))
            magnitude[t].append(abs(float(zz)))
        own = sorted(int(r) for p, r in zip(probes, rank, strict=True) if p.id in target.relevant)
        top10 = sorted({t for t, r in zip(probe_tasks, rank, strict=True) if r < 10})
        top10_chars = int(np.median(chars[rank < 10]))
        out.append({"target": target.name, "own_task_ranks": own, "top10_tasks": top10,
                    "top10_median_chars": top10_chars,
                    "length_vs_abs_influence": round(float(spearmanr(chars, np.abs(z)).statistic), 3),
                    "ranks_by_task": {t: sorted(v) for t, v in by_task.items()}})
        print(f"{target.name[:60]:60} own-task probes at {own}; top 10 from {', '.join(top10)}")
    probed = [o for o in out if "top10_tasks" in o]
    mean_abs = sorted(((statistics.fmean(v), t, len(v) // len(probed)) for t, v in magnitude.items()),
                      reverse=True)
    print("\nmean |z-scored influence| over targets, by probed task (probes of that task):")
    for value, t, n in mean_abs[:8]:
        print(f"  {t:50} {value:.2f} ({n})")
    rest = [x for task, v in magnitude.items() if task != args.task for x in v]
    lengths = chars[[t == args.task for t in probe_tasks]]
    print(f"{args.task} probes ({lengths.min()}-{lengths.max()} characters): mean |z| "
          f"{statistics.fmean(magnitude[args.task]):.2f}, the other probes {statistics.fmean(rest):.2f}")
    blocks = [o["ranks_by_task"][args.task] for o in probed if args.task in o["ranks_by_task"]]
    fifth = len(probes) // 5
    top = sum(max(r) < fifth for r in blocks)
    bottom = sum(min(r) >= len(probes) - fifth for r in blocks)
    print(f"  their ranks span at most {max(max(r) - min(r) for r in blocks)} places in a target; all among the "
          f"{fifth} most influential in {top} targets, all among the {fifth} least in {bottom}, "
          f"elsewhere in {len(blocks) - top - bottom}")
    sets = Counter(tuple(o["top10_tasks"]) for o in probed)
    common, n_common = sets.most_common(1)[0]
    same = [o for o in probed if tuple(o["top10_tasks"]) == common]
    print(f"{n_common} of {len(probed)} targets draw their 10 most influential probes from the same tasks "
          f"({', '.join(common)}); those probes' median length {same[0]['top10_median_chars']} characters, "
          f"all probes' {int(np.median(chars))}")
    rhos = [o["length_vs_abs_influence"] for o in probed]
    print(f"Spearman of a probe's length (characters) with |influence|, over targets: median "
          f"{statistics.median(rhos):.2f}, range {min(rhos):.2f} to {max(rhos):.2f}")
    own_top10 = sum(any(r < 10 for r in o["own_task_ranks"]) for o in probed)
    with_own = sum(bool(o["own_task_ranks"]) for o in probed)
    print(f"targets with an own-task probe among the 10 most influential: {own_top10} of the {with_own} that have one")
    if args.json:
        args.json.write_text(json.dumps({"targets": out, "mean_abs_z_by_task": mean_abs}, indent=1))


if __name__ == "__main__":
    main()
