"""Text from input files (rows, ids, paths) made safe to print on a terminal: escape sequences and control
characters removed, so a row can neither restyle the terminal nor hide or fake other output."""

from __future__ import annotations

import re

# ANSI/VT escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-byte escapes; the
# 8-bit CSI (U+009B) too
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# C0 and C1 controls, DEL, and the bidirectional overrides/isolates that reorder what follows them
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def for_display(text: str, *, one_line: bool = False) -> str:
    """`text` without escape sequences and control characters (tabs and newlines kept, or with `one_line`
    every run of whitespace turned into one space). Lone surrogates become '?'."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", text))
    if one_line:
        text = " ".join(text.split())
    return text.encode("utf-8", errors="replace").decode("utf-8") if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
