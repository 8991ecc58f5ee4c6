"""Progress of long steps: the protocol every step reports to, and a rich progress bar drawing it (on stderr)."""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bar


class Progress(Protocol):
    """Receives progress of a long step (the CLI draws a bar); one step at a time, from start to finish."""

    def start(self, label: str, total: int | None) -> None: ...  # total None: not known in advance
    def update(self, done: int, tokens: int) -> None: ...
    def finish(self) -> None: ...


class RichProgress:
    """A Progress drawn as a rich bar: `unit`s done of the total, with their rate and tokens per second."""

    def __init__(self, console: Console | None = None, enabled: bool = True, unit: str = "samples") -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.unit = unit
        self._progress: Bar | None = None
        self._task = None
        self._t0 = 0.0

    def start(self, label: str, total: int | None) -> None:
        if not self.enabled:
            return
        # the label may hold a user's name for a method or file: style it, never parse it as markup
        self._progress = Bar(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                             MofNCompleteColumn(), TextColumn(self.unit + "  {task.fields[rate]}", markup=False),
                             TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, rate="")
        self._t0 = time.perf_counter()

    def update(self, done: int, tokens: int) -> None:
        if self._progress is None or self._task is None:
            return
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = f"{done / elapsed:.1f} {self.unit}/s" + (f", {tokens / elapsed:.0f} tok/s" if tokens else "")
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
