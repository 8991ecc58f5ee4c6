"""How far apart are two relevance reports' selections? For each method in both `mona bench relevance` reports
(their JSON, which keeps every target's top-k pool ids under `picks`): per target, the share of one report's
top k that the other also picked, each report's precision@k and where the swapped picks sit in each ranking;
then the minimum and mean overlap, the targets below --min-overlap, and the mean precision of each. Used for
the fp32 against bf16 selections of issue 17.

    .venv/bin/python scripts/compare_picks.py A.json B.json [--min-overlap 0.98] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def compare(a: dict, b: dict, min_overlap: float) -> dict:
    """Per method present in both reports: overlap and precision per target and their summary."""
    b_methods = {m["name"]: m for m in b["methods"]}
    out = {"k": a["k"], "methods": []}
    for ma in a["methods"]:
        mb = b_methods.get(ma["name"])
        if mb is None or not ma.get("picks") or not mb.get("picks"):
            continue
        rows = []
        for target, picks in ma["picks"].items():
            other = mb["picks"][target]
            in_a, in_b = set(picks), set(other)
            rows.append({"target": target, "overlap": len(in_a & in_b) / len(picks),
                         "precision_a": ma["per_target"][target]["precision"],
                         "precision_b": mb["per_target"][target]["precision"],
                         # where the swaps sit: A's ranks (1-based) of the picks B dropped, B's of those it added
                         "dropped_ranks_a": [i + 1 for i, row in enumerate(picks) if row not in in_b],
                         "added_ranks_b": [i + 1 for i, row in enumerate(other) if row not in in_a]})
        overlaps = [r["overlap"] for r in rows]
        dropped = sorted(rank for r in rows for rank in r["dropped_ranks_a"])
        out["methods"].append({
            "name": ma["name"], "targets": len(rows), "min_overlap": min(overlaps),
            "mean_overlap": sum(overlaps) / len(rows),
            "below": [r for r in rows if r["overlap"] < min_overlap],
            "mean_precision_a": sum(r["precision_a"] for r in rows) / len(rows),
            "mean_precision_b": sum(r["precision_b"] for r in rows) / len(rows),
            "largest_precision_change": max(abs(r["precision_a"] - r["precision_b"]) for r in rows),
            "swapped_picks": len(dropped), "dropped_ranks_a": dropped,
            "per_target": rows})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--min-overlap", type=float, default=0.98)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()), args.min_overlap)
    result |= {"a": str(args.a), "b": str(args.b), "min_overlap": args.min_overlap}
    if not result["methods"]:
        sys.exit("no method of the two reports has its picks (reports from before picks were kept)")
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    for m in result["methods"]:
        print(f"{m['name']}: {m['targets']} targets, top-{result['k']} overlap min {m['min_overlap']:.3f} mean "
              f"{m['mean_overlap']:.3f}; P@{result['k']} {m['mean_precision_a']:.3f} against "
              f"{m['mean_precision_b']:.3f} (largest change per target {m['largest_precision_change']:.3f}); "
              f"{len(m['below'])} targets below {args.min_overlap}; {m['swapped_picks']} picks swapped"
              + (f", A's ranks of the dropped {m['dropped_ranks_a'][0]}-{m['dropped_ranks_a'][-1]} (median "
                 f"{statistics.median(m['dropped_ranks_a']):g})" if m["dropped_ranks_a"] else ""))


if __name__ == "__main__":
    main()
