"""`mona bench memory` on a small fake BIG-bench: synthetic pools with unique ids, one `mona select` process per
(method, size) with its peak RSS, and the reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_jsonl
from mona.bench import memory
from mona.cli import app

TASKS = {"alpha": 7, "beta__one": 3, "gamma": 25, memory.TARGET_TASK: 12}


@pytest.fixture
def fake_bigbench(cache_env):
    """A normalised BIG-bench in the (temporary) cache with a few small tasks."""
    from mona.data.bigbench import bigbench_dir

    root = bigbench_dir()
    (root / "rows").mkdir(parents=True)
    for name, count in TASKS.items():
        task = name.replace("__", "/")
        write_jsonl(root / "rows" / f"{name}.jsonl",
                    [{"id": f"{task}/{i}", "instruction": f"question {i} of {task}", "output": str(i),
                      "task": name.split("__")[0], "subtask": ""} for i in range(count)])
    (root / "index.json").write_text(json.dumps(TASKS))
    (root / "DONE").write_text("ok\n")
    return root


def test_pool_rows_cycle_through_tasks_with_unique_ids(fake_bigbench):
    n = 3 * sum(TASKS.values()) + 5  # several passes: every task repeats
    rows = list(memory.pool_rows(n))
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    first_pass = rows[: sum(min(c, memory.ROWS_PER_TASK) for c in TASKS.values())]
    assert {r["task"] for r in first_pass} == {name.split("__")[0] for name in TASKS}
    beta = [r["instruction"] for r in rows if r["task"] == "beta"]
    assert beta[:6] == beta[:3] * 2  # a small task starts over
    gamma = [r["instruction"] for r in rows if r["task"] == "gamma"]
    assert gamma[:25] == [f"question {i} of gamma" for i in range(25)]  # later passes continue where one stopped


def test_bench_memory_runs_select_per_method_and_size(fake_bigbench, tmp_path, monkeypatch):
    work, out, md = tmp_path / "work", tmp_path / "docs" / "memory.json", tmp_path / "docs" / "memory.md"
    args = ["bench", "memory", "--method", "random", "--sizes", "40,90", "--budget", "5", "--work-dir", str(work),
            "--out", str(out), "--out-md", str(md)]
    monkeypatch.setattr("sys.argv", ["mona", *args])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())["runs"]
    assert [(r["method"], r["rows"]) for r in runs] == [("random", 40), ("random", 90)]
    for run in runs:
        assert run["exit_code"] == 0 and run["error"] is None
        assert run["peak_rss_mb"] > 1 and run["wall_seconds"] > 0
        selected = [json.loads(line) for line in Path(run["selected"]).read_text().splitlines()]
        assert len(selected) == run["selected_rows"] == 5
        pool_ids = {json.loads(line)["id"] for line in (work / "pools" / f"pool-{run['rows']}.jsonl").open()}
        assert {row["id"] for row in selected} <= pool_ids
    text = md.read_text()
    assert f"    mona {' '.join(args)}\n" in text and "| random | 90 |" in text
    assert "[memory.json](memory.json)" in text


def test_bench_memory_reports_a_failed_run(fake_bigbench, tmp_path):
    work = tmp_path / "work"
    run = memory.run_select(memory.ensure_pool(20, work), memory.ensure_target(work), "no-such-method", 20, 5, work)
    assert run.exit_code != 0 and run.error and run.selected_rows == 0
    assert run.peak_rss_mb > 1
