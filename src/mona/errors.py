"""Error kinds shared by every layer; the CLI maps each to an exit code and a one-line message."""

from __future__ import annotations


class MonaError(Exception):
    """Base class: a problem the user can fix, reported in one line without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.field = field

    @property
    def reason(self) -> str:
        """The message without its location."""
        return f"{self.message} (field '{self.field}')" if self.field else self.message

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        return f"{where}{self.reason}"


class InputError(MonaError):
    """A pool or target file holds something mona cannot use (bad JSON, no text, duplicate id...)."""

    exit_code = 2


class MissingFileError(MonaError):
    """A file or directory named on the command line does not exist or cannot be read."""

    exit_code = 3


class ConfigError(MonaError):
    """Options that contradict each other or the assets (unknown method, bad budget, SAE/model mismatch)."""

    exit_code = 4


class DependencyError(MonaError):
    """An optional dependency or asset is missing; the message says what to install."""

    exit_code = 5


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a long step, with one line saying what was kept (the feature cache) and how to resume. A
    KeyboardInterrupt still, so code that stops on Ctrl-C keeps doing so."""

    exit_code = 130

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# Exit code of a command line that cannot be parsed (unknown option, missing or malformed value): distinct from
# bad input (2), as sysexits' EX_USAGE.
USAGE_EXIT = 64
