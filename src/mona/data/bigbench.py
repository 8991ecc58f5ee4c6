"""BIG-bench (Apache-2.0) as offline data: the source archive comes from PyPI via `pip download`, is checked
against its sha256, and its task.json files are normalised once into rows {id, instruction, output, task,
subtask} in the cache. The `bigbench` package itself is never installed (it pulls tensorflow)."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mona.atomic import atomic_write, write_text
from mona.errors import InputError
from mona.fetch import fetch_verified
from mona.paths import cache_root

BIGBENCH_VERSION = "1.0.0"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_TASK_RE = re.compile(r"bigbench/benchmark_tasks/([^/]+)/(?:([^/]+)/)?task\.json$")


def bigbench_dir() -> Path:
    """Cache directory of the normalised rows: one JSONL per task or subtask."""
    return cache_root() / "bigbench" / BIGBENCH_VERSION


def _target(example: dict[str, Any]) -> str | None:
    scores = example.get("target_scores")
    if isinstance(scores, dict) and scores:
        # The correct answer of a multiple-choice example is its output.
        best = max(scores.values())
        return next(k for k, v in scores.items() if v == best)
    target = example.get("target")
    if isinstance(target, list):
        target = next((t for t in target if isinstance(t, str) and t.strip()), None)
    return target if isinstance(target, str) else None


def normalise_task(task_json: dict[str, Any], task: str, subtask: str) -> Iterator[dict[str, str]]:
    """Rows {id, instruction, output, task, subtask} of one BIG-bench task file."""
    prefix = str(task_json.get("task_prefix") or "").strip()
    out_prefix = str(task_json.get("example_output_prefix") or "").strip()
    # A long output prefix carries the question ("Does the preceding sentence ...?"); short ones are "A:".
    question = out_prefix if len(out_prefix) > 3 else ""
    append_choices = task_json.get("append_choices_to_input", True)
    name = f"{task}/{subtask}" if subtask else task
    for i, example in enumerate(task_json.get("examples") or []):
        text = example.get("input")
        output = _target(example)
        if not isinstance(text, str) or not text.strip() or output is None or not output.strip():
            continue
        parts = [p for p in (prefix, text.strip()) if p]
        scores = example.get("target_scores")
        if append_choices and isinstance(scores, dict) and len(scores) > 1:
            parts.append("Options:\n" + "\n".join(f"- {choice}" for choice in scores))
        if question:
            parts.append(question)
        yield {"id": f"{name}/{i}", "instruction": "\n".join(parts), "output": output.strip(),
               "task": task, "subtask": subtask}


def prepare_bigbench(archive: Path | None = None, *, progress: Callable[[str], None] | None = None) -> Path:
    """Fetch (if needed), verify and normalise BIG-bench once; return the directory of task JSONL files."""
    out = bigbench_dir()
    done = out / "DONE"
    if done.exists():
        return out
    archive = fetch_verified(f"bigbench=={BIGBENCH_VERSION}", f"bigbench-{BIGBENCH_VERSION}.tar.gz",
                             BIGBENCH_SHA256, archive)
    rows_dir = out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    index: dict[str, int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            match = _TASK_RE.search(member.name)
            if not match or not member.isfile():
                continue
            task, subtask = match.group(1), match.group(2) or ""
            handle = tar.extractfile(member)
            if handle is None:
                continue
            try:
                data = json.load(handle)
            except json.JSONDecodeError:
                continue  # a handful of BIG-bench task files are not JSON; they have no examples we can use
            rows = list(normalise_task(data, task, subtask))
            if not rows:
                continue
            name = f"{task}__{subtask}" if subtask else task
            with atomic_write(rows_dir / f"{name}.jsonl") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            index[name] = len(rows)
            if progress:
                progress(name)
    write_text(out / "index.json", json.dumps(index, indent=1, sort_keys=True))
    write_text(done, "ok\n")
    return out


def task_file(name: str, root: Path | None = None) -> Path:
    """The JSONL file of one normalised task ('arithmetic__1_digit_addition' style names, see index.json)."""
    path = (root or bigbench_dir()) / "rows" / f"{name}.jsonl"
    if not path.exists():
        raise InputError(f"no BIG-bench task {name!r}; run `mona data bigbench` first", path=str(path))
    return path


def load_task(name: str, root: Path | None = None) -> list[dict[str, str]]:
    """Rows of one normalised task ('arithmetic__1_digit_addition' style names, see index.json)."""
    with task_file(name, root).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def task_index(root: Path | None = None) -> dict[str, int]:
    """Task name -> number of rows."""
    return json.loads(((root or bigbench_dir()) / "index.json").read_text())
