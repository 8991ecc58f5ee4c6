"""Compare mona's `dsir` with the reference implementation, the PyPI package `data-selection` (p-lambda/dsir,
`HashedNgramDSIR`), on the same pool and target: wall time, overlap of the top-k and Spearman correlation of
the log importance weights.

The reference runs in its own venv (it must not touch mona's), e.g.

    python3 -m venv /tmp/dsir-venv
    /tmp/dsir-venv/bin/pip install data-selection==1.0.3 nltk   # nltk is imported but not declared

and this script shells out to that interpreter (--ref-python). The nltk version matters: nltk 3.8.1 tokenizes
with the stdlib `re` engine like scikit-learn, nltk 3.10.x with the `regex` engine (nltk.redos), which also
treats zero-width joiners and variation selectors (emoji sequences) as word characters.

Both sides get the same plain text per row (mona's `Sample.plain_text()`: for instruction rows, instruction +
"\\n\\n" + output). The reference selects with `resample(top_k=True)` (no Gumbel noise) and, unless
--ref-min-length says otherwise, with min_example_length=0: its default of 100 tokens leaves too few rows of an
instruction pool to fill the top-k.

Times exclude interpreter start-up and imports: mona's library call = compute_scores (featurize targets and pool
through the per-sample cache layer, no cache directory) + rank; mona's DSIR core = count rows + log importance
weights + rank, without that layer; reference = fit_importance_estimator + compute_importance_weights (its
featurization and scoring), and separately its resample (which also writes the selected rows). The reference
and mona alternate, one run each per round, so load from other jobs hits both alike; each figure is the median
of --repeats rounds.

    .venv/bin/python scripts/compare_dsir.py [--pool examples/pool.jsonl] [--target examples/target.jsonl]
        [--k 50 100] [--repeats 3] [--ref-python /tmp/dsir-venv/bin/python] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the reference venv; reads its settings as JSON from argv[1], prints a JSON report on stdout.
REFERENCE_CHILD = r"""
import json, statistics, sys, time
from pathlib import Path
import nltk
import numpy as np
from data_selection import HashedNgramDSIR

cfg = json.loads(sys.argv[1])
work = Path(cfg["workdir"])
times, resample_times = [], {str(k): [] for k in cfg["ks"]}
selected = {}
for rep in range(cfg["repeats"]):
    cache = work / f"cache{rep}"
    t0 = time.perf_counter()
    dsir = HashedNgramDSIR([cfg["pool"]], [cfg["target"]], str(cache), num_proc=cfg["num_proc"],
                           min_example_length=cfg["min_length"])
    dsir.fit_importance_estimator(num_tokens_to_fit="auto")
    dsir.compute_importance_weights()
    times.append(time.perf_counter() - t0)
    for k in cfg["ks"]:
        out = work / f"out{rep}_k{k}"
        t0 = time.perf_counter()
        dsir.resample(out_dir=str(out), num_to_sample=k, top_k=True)
        resample_times[str(k)].append(time.perf_counter() - t0)
        idx = [json.loads(line)["idx"] for f in sorted(out.glob("*.jsonl")) for line in f.open() if line.strip()]
        selected[str(k)] = idx
# the weights of shard j (of n) are rows j, j+n, j+2n, ... of the pool
n = cfg["num_proc"]
parts = [np.load(cache / "log_importance_weights" / f"{j}.npy") for j in range(n)]
weights = np.empty(sum(len(p) for p in parts))
for j, p in enumerate(parts):
    weights[j::n] = p
print(json.dumps({"seconds": statistics.median(times), "all_seconds": times,
                  "resample_seconds": {k: statistics.median(v) for k, v in resample_times.items()},
                  "selected": selected, "weights": weights.tolist(), "num_buckets": dsir.num_buckets,
                  "ngrams": dsir.ngrams, "min_example_length": dsir.min_example_length,
                  "nltk": nltk.__version__}))
"""

# label -> DsirOptions fields
MONA_CONFIGS = {
    "mona dsir (defaults)": {},
    "mona dsir --dsir-hash murmur3": {"hashing": "murmur3"},
    "mona dsir, first defaults (murmur3, 2^16 buckets, add-one)": {"hashing": "murmur3", "buckets": 2**16,
                                                                   "smoothing": 1.0, "epsilon": 0.0},
}


def run_reference(python: str, pool: Path, target: Path, ks: list[int], repeats: int, min_length: int,
                  num_proc: int, workdir: Path) -> dict:
    cfg = {"pool": str(pool), "target": str(target), "ks": ks, "repeats": repeats, "min_length": min_length,
           "num_proc": num_proc, "workdir": str(workdir)}
    proc = subprocess.run([python, "-c", REFERENCE_CHILD, json.dumps(cfg)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"reference run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_mona(pool, targets, extra: dict) -> tuple[float, np.ndarray, np.ndarray]:
    """(seconds, scores, order) of one library call: compute_scores (featurize through the per-sample cache
    layer, no cache directory) + rank."""
    from mona.features.options import DsirOptions
    from mona.selection.budget import rank
    from mona.selection.pipeline import compute_scores
    from mona.selection.registry import MethodOptions

    t0 = time.perf_counter()
    scores, *_ = compute_scores(pool, targets, MethodOptions(method="dsir", params=DsirOptions(**extra)), None)
    order = rank([s.id for s in pool], scores)
    return time.perf_counter() - t0, scores, order


def run_core(pool, targets, extra: dict) -> float:
    """Seconds of DSIR's own work, without mona's per-sample cache layer: count rows of the targets and the pool,
    log importance weights, rank."""
    from mona.features.dsir import DsirFeaturizer, dsir_scorer
    from mona.features.options import DsirOptions
    from mona.selection.budget import rank
    from mona.selection.registry import MethodOptions

    options = DsirOptions(**extra)
    t0 = time.perf_counter()
    featurizer = DsirFeaturizer(n_features=options.buckets, ngrams=options.ngrams, hashing=options.hashing)
    target_counts = featurizer.counts([s.plain_text() for s in targets])
    pool_counts = featurizer.counts([s.plain_text() for s in pool])
    weights = dsir_scorer(pool_counts, target_counts, MethodOptions(method="dsir", params=options))
    rank([s.id for s in pool], weights)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, default=ROOT / "examples/pool.jsonl")
    ap.add_argument("--target", type=Path, default=ROOT / "examples/target.jsonl")
    ap.add_argument("--k", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-python", default="/tmp/dsir-venv/bin/python")
    ap.add_argument("--ref-procs", type=int, default=1, help="the reference's num_proc (mona uses one process)")
    ap.add_argument("--ref-min-length", type=int, default=0, help="the reference's min_example_length")
    ap.add_argument("--filter-k", type=int, default=20,
                    help="also compare both with the reference's length filter (100 tokens) at this k; 0: skip")
    ap.add_argument("--target-task", default=None, help="count top-k rows whose `task` is this (default: the "
                                                        "targets' task, if they all share one)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from mona.data.readers import read_samples
    from mona.features.dsir import DsirFeaturizer

    pool, targets = read_samples(args.pool), read_samples(args.target)
    for s in pool:  # the texts both sides see
        row = s.record.row
        if "instruction" in row and "output" in row and not row.get("input"):
            assert s.plain_text() == row["instruction"] + "\n\n" + row["output"], s.id
    task = args.target_task
    if task is None:
        target_tasks = {s.record.row.get("task") for s in targets}
        task = next(iter(target_tasks)) if len(target_tasks) == 1 else None
    tasks = [s.record.row.get("task") for s in pool]

    work = Path(tempfile.mkdtemp(prefix="compare_dsir_"))
    pool_file, target_file = work / "pool.jsonl", work / "target.jsonl"
    pool_file.write_text("".join(json.dumps({"text": s.plain_text(), "idx": i}) + "\n" for i, s in enumerate(pool)))
    target_file.write_text("".join(json.dumps({"text": s.plain_text()}) + "\n" for s in targets))

    print(f"pool {len(pool)} rows, target {len(targets)} rows; work dir {work}", file=sys.stderr)
    DsirFeaturizer().counts(["warm up the imports"])  # sklearn import outside the timings
    # The reference and mona alternate, one run each per round, so load from other jobs hits both alike.
    ref_runs, lib_times, core_times = [], {label: [] for label in MONA_CONFIGS}, {label: [] for label in MONA_CONFIGS}
    mona_results = {}
    for rep in range(args.repeats):
        ref_runs.append(run_reference(args.ref_python, pool_file, target_file, args.k, 1, args.ref_min_length,
                                      args.ref_procs, work / f"ref{rep}"))
        for label, extra in MONA_CONFIGS.items():
            seconds, scores, order = run_mona(pool, targets, extra)
            lib_times[label].append(seconds)
            core_times[label].append(run_core(pool, targets, extra))
            mona_results[label] = scores, order
    ref = {**ref_runs[-1], "all_seconds": [r["seconds"] for r in ref_runs],
           "seconds": statistics.median(r["seconds"] for r in ref_runs),
           "resample_seconds": {k: statistics.median(r["resample_seconds"][k] for r in ref_runs)
                                for k in ref_runs[-1]["resample_seconds"]}}
    ref_weights = np.asarray(ref["weights"])
    report = {"pool": str(args.pool), "target": str(args.target), "n_pool": len(pool), "n_target": len(targets),
              "ks": args.k, "target_task": task,
              "reference": {"seconds": ref["seconds"], "all_seconds": ref["all_seconds"],
                            "resample_seconds": ref["resample_seconds"], "num_buckets": ref["num_buckets"],
                            "ngrams": ref["ngrams"], "min_example_length": ref["min_example_length"],
                            "num_proc": args.ref_procs, "nltk": ref["nltk"], "python": args.ref_python,
                            "task_hits": {str(k): sum(tasks[i] == task for i in ref["selected"][str(k)])
                                          for k in args.k}},
              "mona": {}}
    for label, extra in MONA_CONFIGS.items():
        scores, order = mona_results[label]
        seconds, core = statistics.median(lib_times[label]), statistics.median(core_times[label])
        entry = {"extra": extra, "seconds": seconds, "all_seconds": lib_times[label], "core_seconds": core,
                 "all_core_seconds": core_times[label], "ratio": ref["seconds"] / seconds,
                 "core_ratio": ref["seconds"] / core,
                 "spearman": float(spearmanr(scores, ref_weights).statistic),
                 "max_abs_diff": float(np.max(np.abs(scores - ref_weights))), "overlap": {}, "task_hits": {}}
        for k in args.k:
            mine = {int(i) for i in order[:k]}
            entry["overlap"][str(k)] = len(mine & set(ref["selected"][str(k)])) / k
            entry["task_hits"][str(k)] = sum(tasks[i] == task for i in mine)
        report["mona"][label] = entry

    # the CLI, end to end (includes interpreter start-up): same top-k as the library call?
    k0 = args.k[0]
    out, scores_file = work / "cli_out.jsonl", work / "cli_scores.jsonl"
    mona_bin = Path(sys.executable).with_name("mona")
    cmd = [str(mona_bin), "select", "--pool", str(args.pool), "--target", str(args.target), "--budget", str(k0),
           "--method", "dsir", "--out", str(out), "--scores", str(scores_file), "--no-cache", "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    cli_seconds = time.perf_counter() - t0
    cli_ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    lib_order = run_mona(pool, targets, {})[2]
    report["cli"] = {"command": " ".join(cmd[1:]).replace(str(work), "$WORK"), "k": k0, "seconds": cli_seconds,
                     "same_as_library": cli_ids == [pool[int(i)].id for i in lib_order[:k0]]}

    if args.filter_k:
        kf = args.filter_k
        fref = run_reference(args.ref_python, pool_file, target_file, [kf], 1, 100, args.ref_procs,
                             work / "ref_filter")
        report["length_filter"] = {"k": kf, "min_length": 100, "overlap": {}}
        for label, extra in (("mona dsir --dsir-min-length 100", {"min_length": 100}),
                             ("mona dsir --dsir-min-length 100 --dsir-hash murmur3",
                              {"min_length": 100, "hashing": "murmur3"})):
            order = run_mona(pool, targets, extra)[2]
            report["length_filter"]["overlap"][label] = len({int(i) for i in order[:kf]}
                                                            & set(fref["selected"][str(kf)])) / kf

    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_markdown(report)


def print_markdown(r: dict) -> None:
    ks, ref = r["ks"], r["reference"]
    print(f"pool {r['n_pool']} rows, target {r['n_target']} rows; reference: data-selection HashedNgramDSIR, "
          f"{ref['num_buckets']} buckets, ngrams={ref['ngrams']}, min_example_length={ref['min_example_length']}, "
          f"num_proc={ref['num_proc']}, resample(top_k=True), nltk {ref['nltk']} ({ref['python']})\n")
    head = ["method", "library call (s)", "ref / library", "DSIR core (s)", "ref / core", "Spearman vs ref",
            "max |Δ weight|"]
    head += [f"overlap@{k}" for k in ks] + [f"{r['target_task']}@{k}" for k in ks]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    resample = ", ".join(f"{v:.3f}" for v in ref["resample_seconds"].values())
    cells = ["data-selection 1.0.3 (reference)", f"{ref['seconds']:.3f} (+ resample {resample})", "1", "-", "-",
             "1", "0"]
    cells += ["1.00"] * len(ks) + [str(ref["task_hits"][str(k)]) for k in ks]
    print("| " + " | ".join(cells) + " |")
    for label, e in r["mona"].items():
        cells = [label, f"{e['seconds']:.3f}", f"{e['ratio']:.1f}x", f"{e['core_seconds']:.3f}",
                 f"{e['core_ratio']:.1f}x", f"{e['spearman']:.4f}", f"{e['max_abs_diff']:.2g}"]
        cells += [f"{e['overlap'][str(k)]:.2f}" for k in ks] + [str(e["task_hits"][str(k)]) for k in ks]
        print("| " + " | ".join(cells) + " |")
    c = r["cli"]
    print(f"\nCLI `mona {c['command']}`: {c['seconds']:.2f} s wall including start-up; same top-{c['k']} as the "
          f"library call: {c['same_as_library']}")
    if "length_filter" in r:
        lf = r["length_filter"]
        for label, v in lf["overlap"].items():
            print(f"length filter {lf['min_length']} tokens, k={lf['k']}: overlap of `{label}` with the "
                  f"reference (min_example_length={lf['min_length']}): {v:.2f}")


if __name__ == "__main__":
    main()
