"""The default text mix for training an SAE: rows from every BIG-bench task file, seeded, a third rendered
with the chat template and the rest as plain text, so the SAE sees both renderings mona uses."""

from __future__ import annotations

import json
import random

from mona.data.bigbench import bigbench_dir, prepare_bigbench, task_index
from mona.data.formats import Record, Sample, to_sample


def default_text_mix(n_samples: int, *, per_task: int = 30, seed: int = 0, chat_fraction: float = 1 / 3,
                     ) -> tuple[list[Sample], list[str]]:
    """`n_samples` BIG-bench rows (at most `per_task` per task file) and a render mode for each."""
    prepare_bigbench()
    rng = random.Random(seed)
    rows = []
    for name in sorted(task_index()):
        with (bigbench_dir() / "rows" / f"{name}.jsonl").open(encoding="utf-8") as fh:
            lines = fh.readlines()
        for line in rng.sample(lines, min(per_task, len(lines))):
            rows.append(json.loads(line))
    rng.shuffle(rows)
    rows = rows[:n_samples]
    samples = [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]
    modes = ["chat" if rng.random() < chat_fraction else "plain" for _ in samples]
    return samples, modes
