"""Build tests/data/bigbench_4tasks.jsonl: 4 BIG-bench tasks x 50 pool rows plus 5 held-out rows of one task
(the integration test's pool and target). Run: .venv/bin/python scripts/build_test_data.py"""

from __future__ import annotations

import json
import random
from pathlib import Path

from mona.data.bigbench import load_task, prepare_bigbench

TASKS = ["date_understanding", "code_line_description", "hyperbaton", "social_iqa"]
TARGET = "date_understanding"


def main(seed: int = 0) -> None:
    prepare_bigbench()
    rng = random.Random(seed)
    rows = []
    for task in TASKS:
        task_rows = load_task(task)
        rng.shuffle(task_rows)
        for i, row in enumerate(task_rows[: 50 + (5 if task == TARGET else 0)]):
            row["split"] = "target" if task == TARGET and i >= 50 else "pool"
            rows.append(row)
    out = Path(__file__).resolve().parent.parent / "tests" / "data" / "bigbench_4tasks.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main()
