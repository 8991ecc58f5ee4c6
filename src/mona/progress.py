"""Progress of long steps: the protocol every step reports to, and a rich progress bar drawing it (on stderr)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bar


class Progress(Protocol):
    """Receives progress of a long step (the CLI draws a bar), from start to finish. Steps may nest: a step
    started inside another (a warm-up inside a featurization, say) is the one updated until it finishes."""

    def start(self, label: str, total: int | None) -> None: ...  # total None: not known in advance
    def update(self, done: int, tokens: int) -> None: ...
    def finish(self) -> None: ...


class RichProgress:
    """A Progress drawn as a rich bar: `unit`s done of the total, with their rate and tokens per second. A
    nested step gets a bar of its own below the open one, kept (complete) when it finishes."""

    def __init__(self, console: Console | None = None, enabled: bool = True, unit: str = "samples") -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.unit = unit
        self._progress: Bar | None = None
        self._open: list[tuple[TaskID, float]] = []  # the started steps, innermost last, with their start times

    def _count_column(self) -> TextColumn:
        """What follows the count: the unit and its rate (a subclass shows other fields, see `_fields`)."""
        return TextColumn(self.unit + "  {task.fields[rate]}", markup=False)

    def _fields(self) -> dict[str, str]:
        """The extra fields `_count_column` shows, at a step's start."""
        return {"rate": ""}

    def start(self, label: str, total: int | None) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            # the label may hold a user's name for a method or file: style it, never parse it as markup
            self._progress = Bar(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                 MofNCompleteColumn(), self._count_column(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.start()
        self._open.append((self._progress.add_task(label, total=total, **self._fields()), time.perf_counter()))

    def _current(self) -> tuple[TaskID, float] | None:
        return self._open[-1] if self._progress is not None and self._open else None

    def update(self, done: int, tokens: int) -> None:
        current = self._current()
        if current is None:
            return
        elapsed = max(time.perf_counter() - current[1], 1e-9)
        rate = f"{done / elapsed:.1f} {self.unit}/s" + (f", {tokens / elapsed:.0f} tok/s" if tokens else "")
        assert self._progress is not None
        self._progress.update(current[0], completed=done, rate=rate)

    def finish(self) -> None:
        if self._progress is None:
            return
        if self._open:
            task, _ = self._open.pop()
            # called from `finally`: only a step that ended normally is drawn as complete, not one that Ctrl-C
            # or an error stopped halfway
            if sys.exc_info()[0] is None:
                total = next(t.total for t in self._progress.tasks if t.id == task)
                self._progress.update(task, completed=total)
        if not self._open:
            self._progress.stop()
            self._progress = None


@contextlib.contextmanager
def progress_step(progress: Progress | None, label: str, total: int | None) -> Iterator[Callable[[int, int], None]]:
    """One step of `progress` for the duration of the block (with no progress, nothing is drawn); yields the
    step's update(done, tokens)."""
    if progress is None:
        yield lambda _done, _tokens: None
        return
    progress.start(label, total)
    try:
        yield progress.update
    finally:
        progress.finish()
