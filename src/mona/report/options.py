"""The options of `mona report`, with their defaults (imports nothing heavy: the command line builds its options
from this class)."""

from __future__ import annotations

from dataclasses import dataclass

from mona.config import opt


@dataclass(frozen=True)
class ReportConfig:
    """What the HTML report shows."""

    top: int = opt(20, "Top selected rows of the first method to show.")
    text_field: str | None = opt(None, "Read text from this field as plain text.")
