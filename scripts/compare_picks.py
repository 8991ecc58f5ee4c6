"""How far apart are two relevance reports' selections? For each method in both `mona bench relevance` reports
(their JSON, which keeps every target's top-k pool ids under `picks`): per target, the share of one report's
top k that the other also picked, and each report's precision@k; then the minimum and mean overlap, the targets
below --min-overlap, and the mean precision of each. Used for the fp32 against bf16 selections of issue 17.

    .venv/bin/python scripts/compare_picks.py A.json B.json [--min-overlap 0.98] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
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
            rows.append({"target": target, "overlap": len(set(picks) & set(other)) / len(picks),
                         "precision_a": ma["per_target"][target]["precision"],
                         "precision_b": mb["per_target"][target]["precision"]})
        overlaps = [r["overlap"] for r in rows]
        out["methods"].append({
            "name": ma["name"], "targets": len(rows), "min_overlap": min(overlaps),
            "mean_overlap": sum(overlaps) / len(rows),
            "below": [r for r in rows if r["overlap"] < min_overlap],
            "mean_precision_a": sum(r["precision_a"] for r in rows) / len(rows),
            "mean_precision_b": sum(r["precision_b"] for r in rows) / len(rows),
            "largest_precision_change": max(abs(r["precision_a"] - r["precision_b"]) for r in rows),
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
              f"{len(m['below'])} targets below {args.min_overlap}")


if __name__ == "__main__":
    main()
