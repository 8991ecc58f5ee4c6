"""Build the demo data under examples/ from BIG-bench (Apache-2.0): a ~1,000-row pool over 16 tasks and a
target of 8 held-out elementary math word problems. Run: .venv/bin/python scripts/build_examples.py"""

from __future__ import annotations

import json
import random
from pathlib import Path

from mona.data.bigbench import load_task, prepare_bigbench

TARGET_TASK = "elementary_math_qa__question_only"
POOL_TASKS = [
    TARGET_TASK, "arithmetic__2_digit_multiplication", "anachronisms", "code_line_description",
    "date_understanding", "dyck_languages", "emoji_movie", "hyperbaton", "logical_fallacy_detection",
    "navigate", "physics_questions", "snarks", "social_iqa", "sports_understanding", "winowhy", "word_sorting",
]
PER_TASK = 64
N_TARGET = 8


def main(seed: int = 0) -> None:
    prepare_bigbench()
    rng = random.Random(seed)
    pool, target = [], []
    for task in POOL_TASKS:
        rows = load_task(task)
        rng.shuffle(rows)
        take = rows[: PER_TASK + (N_TARGET if task == TARGET_TASK else 0)]
        if task == TARGET_TASK:
            target, take = take[:N_TARGET], take[N_TARGET:]
        pool.extend(take)
    rng.shuffle(pool)
    out = Path(__file__).resolve().parent.parent / "examples"
    out.mkdir(exist_ok=True)
    for name, rows in (("pool.jsonl", pool), ("target.jsonl", target)):
        with (out / name).open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"pool {len(pool)} rows over {len(POOL_TASKS)} tasks, target {len(target)} rows of {TARGET_TASK}")


if __name__ == "__main__":
    main()
