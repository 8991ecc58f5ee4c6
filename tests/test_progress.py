"""The progress bars: a step started inside another (LESS's warm-up inside a featurization) gets a bar of its
own, the updates go to the innermost open step, and the outer one carries on when it finishes."""

from __future__ import annotations

import io

from rich.console import Console

from mona.finetune.sft import TrainProgress
from mona.progress import RichProgress


def _console() -> Console:
    return Console(file=io.StringIO(), width=120, force_terminal=False)


def test_a_nested_step_has_its_own_bar_and_the_outer_one_resumes():
    console = _console()
    bar = RichProgress(console)
    bar.start("featurize target", 8)
    bar.update(1, 0)
    bar.start("less: LoRA warm-up", 20)
    bar.update(5, 0)
    bar.finish()  # the warm-up: drawn complete, the featurization still open
    bar.update(6, 0)
    bar.finish()
    text = console.file.getvalue()
    assert "less: LoRA warm-up" in text and "20/20" in text
    assert "featurize target" in text and "8/8" in text
    assert bar._progress is None  # everything stopped with the outermost step


def test_the_outer_step_counts_only_its_own_updates():
    console = _console()
    bar = RichProgress(console)
    bar.start("outer", 10)
    bar.start("inner", 4)
    bar.update(3, 0)
    tasks = {t.description: t for t in bar._progress.tasks}
    assert tasks["inner"].completed == 3 and tasks["outer"].completed == 0
    bar.finish()
    bar.update(2, 0)
    tasks = {t.description: t for t in bar._progress.tasks}
    assert tasks["outer"].completed == 2 and tasks["inner"].completed == 4
    bar.finish()


def test_training_bars_keep_their_own_columns():
    console = _console()
    bar = TrainProgress(console)
    bar.start("train", 4)
    bar.step(2, 100, 1.2345)
    bar.finish()
    text = console.file.getvalue()
    assert "loss 1.2345" in text and "4/4" in text
