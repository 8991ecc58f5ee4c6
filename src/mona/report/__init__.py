"""Self-contained HTML reports about a selection (`mona report`)."""

from mona.report.html import build_report

__all__ = ["build_report"]
