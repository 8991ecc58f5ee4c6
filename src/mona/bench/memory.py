"""`mona bench memory`: peak resident memory and wall time of `mona select` as the pool grows.

Synthetic pools of N rows are cut from BIG-bench: passes over every task file, a few rows of each per pass, each
row under a new, unique id. Every (method, size) runs `mona select` in a process of its own, through the command
line only, so the harness measures whatever the selection pipeline does without depending on how it does it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mona.atomic import atomic_write, write_text
from mona.bench.host import describe_host, host_line, load_average, load_line
from mona.bench.options import MemoryConfig
from mona.data.bigbench import load_task, prepare_bigbench, task_file, task_index
from mona.outputs import check_outputs
from mona.paths import cache_root

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
ROWS_PER_TASK = 10  # per pass over the task files: even a 10 k pool mixes every task
TARGET_TASK = "elementary_math_qa__question_only"
TARGET_ROWS = 8


def default_work_dir() -> Path:
    """Where pools, targets, selections and logs go unless told otherwise."""
    return cache_root() / "bench-memory"


def pool_rows(n: int) -> Iterator[dict]:
    """The synthetic pool's first `n` rows. Each pass over the BIG-bench task files (sorted by name) takes the
    next ROWS_PER_TASK rows of every file (fewer of a smaller file), wrapping around at its end, and prefixes
    their ids with the pass number, so ids stay unique however often a task repeats. Files are read from a
    remembered offset: memory stays flat however large `n` is."""
    prepare_bigbench()
    counts = {name: count for name, count in sorted(task_index().items()) if count}
    offsets = dict.fromkeys(counts, 0)
    made = 0
    pass_no = 0
    while made < n:
        for name, count in counts.items():
            with task_file(name).open("rb") as fh:
                fh.seek(offsets[name])
                for _ in range(min(ROWS_PER_TASK, count)):
                    line = fh.readline()
                    if not line:  # end of the file: this task's rows start over
                        fh.seek(0)
                        line = fh.readline()
                    row = json.loads(line)
                    yield {**row, "id": f"{pass_no}/{row['id']}"}
                    made += 1
                    if made == n:
                        return
                offsets[name] = fh.tell()
        pass_no += 1


def _write_rows(path: Path, rows: Iterator[dict]) -> Path:
    """Write JSONL atomically (a killed build leaves no pool that looks complete)."""
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def ensure_pool(n: int, work_dir: Path) -> Path:
    """The pool file of `n` rows, built once and reused."""
    path = work_dir / "pools" / f"pool-{n}.jsonl"
    return path if path.exists() else _write_rows(path, pool_rows(n))


def ensure_target(work_dir: Path) -> Path:
    """A small target file: the last TARGET_ROWS rows of TARGET_TASK."""
    path = work_dir / "pools" / "target.jsonl"
    if path.exists():
        return path
    prepare_bigbench()
    rows = load_task(TARGET_TASK)[-TARGET_ROWS:]
    return _write_rows(path, iter({**row, "id": f"target/{i}"} for i, row in enumerate(rows)))


@dataclass
class MemoryRun:
    """One `mona select` run."""

    method: str
    rows: int
    budget: int
    peak_rss_mb: float
    wall_seconds: float
    exit_code: int
    selected: str
    selected_rows: int
    command: str
    error: str | None


def _peak_rss_mb(max_rss: int) -> float:
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    return round(max_rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def run_select(pool: Path, target: Path, method: str, rows: int, budget: int, work_dir: Path,
               select_args: Sequence[str] = ()) -> MemoryRun:
    """Run `mona select` on `pool` in a child process; its peak RSS, wall time and outcome."""
    runs = work_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    out = runs / f"selected-{method}-{rows}.jsonl"
    log = runs / f"select-{method}-{rows}.log"
    # A fresh, empty feature cache: features cached by an earlier run would hide the featurization's memory.
    features = runs / f"cache-{method}-{rows}"
    shutil.rmtree(features, ignore_errors=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "mona", "select", "--pool", str(pool), "--target", str(target),
           "--budget", str(budget), "--method", method, "--out", str(out), "--cache-dir", str(features),
           "--quiet", *select_args]
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        # wait4 hands back the kernel's own high-water mark of this child's resident set (and of any process it
        # waited for): exact, unlike polling, which misses short peaks, and per child, unlike
        # getrusage(RUSAGE_CHILDREN), a maximum over every child this harness ever had. It is the largest single
        # process, not a sum: worker processes running side by side are not added up.
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
    shutil.rmtree(features, ignore_errors=True)
    selected_rows = len(out.read_text(encoding="utf-8").splitlines()) if out.exists() else 0
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    error = (lines[-1] if lines else f"exit code {proc.returncode}") if proc.returncode else None
    return MemoryRun(method, rows, budget, _peak_rss_mb(usage.ru_maxrss), round(wall, 1), proc.returncode,
                     str(out), selected_rows, shlex.join(["mona", *cmd[3:]]), error)


def run_memory_bench(methods: Sequence[str], sizes: Sequence[int], budget: int, work_dir: Path | None = None,
                     select_args: Sequence[str] = (), log: Callable[[str], None] | None = None) -> dict:
    """Every (method, size) once, smallest pool first; the pools are built (once) before any run starts."""
    work_dir = work_dir or default_work_dir()
    say = log or (lambda _m: None)
    target = ensure_target(work_dir)
    pools = {}
    for n in sorted(set(sizes)):
        say(f"pool of {n} rows")
        pools[n] = ensure_pool(n, work_dir)
    load_before = load_average()
    runs = []
    for method in methods:
        for n in sorted(set(sizes)):
            say(f"mona select --method {method} on {n} rows")
            run = run_select(pools[n], target, method, n, budget, work_dir, select_args)
            say(f"  peak RSS {run.peak_rss_mb} MB, {run.wall_seconds} s, exit code {run.exit_code}")
            runs.append(run)
    return {"host": describe_host(), "budget": budget, "select_args": list(select_args),
            "work_dir": str(work_dir), "load_before": load_before, "load_after": load_average(),
            "runs": [asdict(r) for r in runs]}


def memory_markdown(result: dict, command: str, json_name: str | None = None) -> str:
    """docs/benchmarks/memory.md: the command, the machine and its load, and one row per run."""
    extra = f" and `{shlex.join(result['select_args'])}`" if result["select_args"] else ""
    lines = ["# Memory of `mona select` as the pool grows", "",
             f"    {command}", "",
             f"Pools of BIG-bench rows ({ROWS_PER_TASK} rows of every task file per pass, cycling, each row with "
             f"a unique id); target: {TARGET_ROWS} rows of `{TARGET_TASK}`; `--budget {result['budget']}`{extra}, "
             "an empty feature cache for every run. Each run is its own `mona select` process; peak RSS is the "
             "kernel's high-water mark of that process's resident memory (wait4's ru_maxrss).", "",
             f"Machine: {host_line(result['host'])}.", "",
             f"Load: {load_line(result['load_before'], result['load_after'])}.", "",
             "| method | pool rows | peak RSS (MB) | vs. smallest pool | wall (s) | outcome |",
             "|---|---|---|---|---|---|"]
    first: dict[str, float] = {}
    for run in result["runs"]:
        base = first.setdefault(run["method"], run["peak_rss_mb"])
        outcome = f"{run['selected_rows']} rows selected" if run["exit_code"] == 0 else \
            f"failed ({run['exit_code']}): {run['error']}"
        lines.append(f"| {run['method']} | {run['rows']:,} | {run['peak_rss_mb']:,.0f} | "
                     f"{run['peak_rss_mb'] / base:.2f}x | {run['wall_seconds']:,.1f} | {outcome} |")
    lines.append("")
    if json_name:
        lines += [f"Raw figures and each run's exact command: [{json_name}]({json_name}).", ""]
    return "\n".join(lines)


def run_memory(config: MemoryConfig, command: str, log: Callable[[str], None] | None = None) -> dict:
    """`mona bench memory`: run the benchmark and write its JSON figures and Markdown report (config.out,
    config.out_md); returns the figures."""
    check_outputs({}, {"--out": config.out, "--out-md": config.out_md})
    methods, sizes = config.methods, config.pool_sizes
    result = run_memory_bench(methods, sizes, config.budget, config.work_dir, shlex.split(config.select_args), log)
    write_text(config.out, json.dumps({"command": command, **result}, indent=1) + "\n")
    json_name = config.out.name if config.out.parent.resolve() == config.out_md.parent.resolve() else None
    write_text(config.out_md, memory_markdown(result, command, json_name))
    return result


def run_line(run: dict) -> str:
    """One run of the figures as a line: method, rows, peak memory and wall time (or why it failed)."""
    note = "" if run["exit_code"] == 0 else f"  FAILED: {run['error']}"
    return (f"{run['method']:>8} {run['rows']:>9,} rows: peak RSS {run['peak_rss_mb']:>8,.1f} MB, "
            f"{run['wall_seconds']:>8,.1f} s{note}")

