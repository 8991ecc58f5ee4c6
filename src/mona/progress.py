"""A rich progress bar showing samples done and tokens per second (written to stderr)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Implements mona.selection.pipeline.Progress."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None
        self._t0 = 0.0

    def start(self, label: str, total: int | None) -> None:
        if not self.enabled:
            return
        # the label may hold a user's name for a method or file: style it, never parse it as markup
        self._progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("samples  {task.fields[rate]}"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(f"featurize {label}", total=total, rate="")
        self._t0 = time.perf_counter()

    def update(self, done: int, tokens: int) -> None:
        if self._progress is None or self._task is None:
            return
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = f"{done / elapsed:.1f} samples/s, {tokens / elapsed:.0f} tok/s" if tokens else ""
        self._progress.update(self._task, completed=done, rate=rate)

    def finish(self) -> None:
        if self._progress is not None:
            # called from `finally`: only a step that ended normally is drawn as complete, not one that Ctrl-C
            # or an error stopped halfway
            if self._task is not None and sys.exc_info()[0] is None:
                task = self._progress.tasks[0]
                self._progress.update(self._task, completed=task.total)
            self._progress.stop()
        self._progress = None
        self._task = None
