"""`mona bench scoring`: wall time and peak memory of scoring N pooled vectors streamed from feature-cache
shards on disk (the step `mona select` runs after featurization), in a child process of its own so its peak
resident memory is its own.

The vectors are real: the pooled MoNA vectors of a source pool (by default the bundled example pool),
resampled with a seed to N rows and written as cache shards. `--top-m` stores them compactly as `mona select
--top-m` would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from mona.atomic import write_text
from mona.bench.options import ScoringConfig
from mona.features.cache import FeatureCache
from mona.outputs import check_outputs
from mona.paths import cache_root
from mona.scoring.similarity import generalized_jaccard

if TYPE_CHECKING:
    from mona.features.lm import LMConfig

SHARD_ROWS = 65536


def write_vectors(source: sp.csr_matrix, n_rows: int, out_dir: Path, *, top_m: int | None, seed: int = 0
                  ) -> dict:
    """N rows resampled from `source` (truncated to top_m if given), as feature-cache shards in `out_dir`."""
    from mona.features.pooling import keep_top_m  # here, not at the top: the scoring child stays free of torch

    rng = np.random.default_rng(seed)
    stored = keep_top_m(source, top_m) if top_m is not None else source
    cache = FeatureCache(out_dir, "bench", {"rows": n_rows, "top_m": top_m, "seed": seed})
    nnz = 0
    for start in range(0, n_rows, SHARD_ROWS):
        rows = rng.integers(0, stored.shape[0], min(SHARD_ROWS, n_rows - start))
        block = stored[rows]
        nnz += block.nnz
        cache.write([f"{start + i:032x}" for i in range(len(rows))], block)
    return {"dir": str(cache.dir), "rows": n_rows, "stored_per_row": nnz / n_rows,
            "bytes_on_disk": sum(p.stat().st_size for p in cache.dir.glob("shard-*.npz"))}


def _score_shard(path: Path, proto: np.ndarray) -> np.ndarray:
    matrix = FeatureCache._load_matrix(path)
    if matrix is None:
        raise RuntimeError(f"unreadable shard {path}")
    return generalized_jaccard(matrix, proto)


def score_shards(shard_dir: Path, proto: np.ndarray, budget: int, threads: int) -> dict:
    """Stream the shards: load one, score it, keep its scores; then the top `budget`. Runs in the child. With
    `threads` > 1, that many shards are in flight at once (numpy's loops release the GIL), so memory holds that
    many shards."""
    t0 = time.perf_counter()
    paths = sorted(shard_dir.glob("shard-*.npz"))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        scores = np.concatenate(list(pool.map(lambda p: _score_shard(p, proto), paths)))
    top = np.argpartition(-scores, budget - 1)[:budget]
    return {"seconds": time.perf_counter() - t0, "rows": len(scores), "best": float(scores[top].max()),
            "threads": threads}


def run_scoring_bench(n_rows: int, *, source: Path, target: Path, top_m: int | None, budget: int, work_dir: Path,
                      cache_dir: Path | None, threads: int = 1, lm: LMConfig | None = None, sae: str | None = None
                      ) -> dict:
    """Featurize the source pool and target (through the cache), write N resampled vectors, score them in a
    child process and return its time and peak RSS."""
    # imported here so that the scoring child (this module run with -m) loads no torch or model code
    from mona.bench.host import describe_host, host_line, load_average
    from mona.data.readers import read_samples
    from mona.features.cached import featurize_cached
    from mona.features.lm import LMConfig, LMRunner
    from mona.scoring.similarity import prototype
    from mona.selection.registry import MethodOptions, get_method

    # mona's default representation, stored whole (the truncation is applied here)
    featurizer = get_method("mona").build(MethodOptions(sae=sae, top_m=0), LMRunner(lm or LMConfig()))
    vectors = sp.csr_matrix(featurize_cached(featurizer, read_samples(source), cache_dir, role="pool"))
    proto = prototype(featurize_cached(featurizer, read_samples(target), cache_dir, role="target"))
    if top_m is not None:
        proto = np.append(proto, 0.0)  # the left-out-mass column (features.pooling.keep_top_m)
    shards = work_dir / f"rows-{n_rows}-m{top_m or 'full'}"
    info = json.loads((shards / "info.json").read_text()) if (shards / "info.json").exists() else None
    if info is None:
        info = write_vectors(vectors, n_rows, shards, top_m=top_m)
        write_text(shards / "info.json", json.dumps(info))
    np.save(work_dir / "proto.npy", proto)
    cmd = [sys.executable, "-m", "mona.bench.scoring", info["dir"], str(work_dir / "proto.npy"), str(budget),
           str(threads)]
    load_before = load_average()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    # wait4: the kernel's high-water mark of the child's resident memory (see bench.memory)
    _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stdout is not None
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"scoring child failed: {out}")
    child = json.loads(out)
    return {**info, **child, "top_m": top_m, "budget": budget, "source_rows": vectors.shape[0],
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "machine": host_line(describe_host()),
            "load_before": load_before, "load_after": load_average()}


def scoring_markdown(results: list[dict], command: str) -> str:
    """docs/benchmarks/scoring.md."""
    lines = ["# Scoring pooled vectors at scale", "", f"    {command}", "",
             f"Machine: {results[0]['machine']}.", "",
             f"Real pooled MoNA vectors ({results[0]['source_rows']} rows of the source pool, shipped SAE) resampled "
             "to N rows and written as feature-cache shards of 65,536 rows; a fresh child process streams the "
             "shards (load, generalized Jaccard against the target prototype, keep the scores) and takes the top "
             "rows. Peak memory is the child's resident high-water mark (wait4), interpreter included. Load: the "
             "1-minute load average just before the child started (above 0.5: other jobs were running).", "",
             "| rows | storage | stored entries/row | on disk | threads | wall s | peak RSS MB | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        storage = f"top-m {r['top_m']}" if r["top_m"] else "full vectors"
        lines.append(f"| {r['rows']:,} | {storage} | {r['stored_per_row']:.0f} | "
                     f"{r['bytes_on_disk'] / 2**30:.2f} GiB | {r['threads']} | {r['seconds']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {(r.get('load_before') or ['n/a'])[0]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the child: python -m mona.bench.scoring SHARD_DIR PROTO.npy BUDGET THREADS
    print(json.dumps(score_shards(Path(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))


def run_scoring(config: ScoringConfig, command: str, cache_dir: Path,
                log: Callable[[str], None] | None = None) -> list[dict]:
    """`mona bench scoring`: every (rows, storage, threads) of the config, then the Markdown report and its
    JSON (config.out_md and .json beside it); returns the runs."""
    grid = config.grid()
    out_md = config.out_md
    check_outputs({"--source": config.source, "--target": config.target},
                  {"--out-md": [out_md, out_md.with_suffix(".json")]})
    work = config.work_dir or cache_root() / "bench-scoring"
    results = []
    for n, m, t in grid:
        r = run_scoring_bench(n, source=config.source, target=config.target, top_m=m, budget=config.budget,
                              work_dir=work, cache_dir=cache_dir, threads=t)
        if log:
            log(f"{n:,} rows, {'full' if m is None else f'top-m {m}'}, {t} thread(s): {r['seconds']:.1f} s, "
                f"peak RSS {r['peak_rss_mb']:,.0f} MB, {r['stored_per_row']:.0f} entries/row")
        results.append(r)
    write_text(out_md, scoring_markdown(results, command))
    write_text(out_md.with_suffix(".json"), json.dumps({"command": command, "runs": results}, indent=1))
    return results

