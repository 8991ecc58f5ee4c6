"""Render samples into LM input strings, remembering which characters are the sample's own content.

The spans let the model layer keep template text (role names, a default system prompt) out of pooled
vectors while the model still sees the full template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mona.data.formats import Sample

RENDER_MODES = ("chat", "plain")


class ChatTokenizer(Protocol):
    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Rendered:
    """An LM input string and the [start, end) character spans of the sample's content in it."""

    text: str
    spans: tuple[tuple[int, int], ...]


def render(sample: Sample, tokenizer: ChatTokenizer | None, mode: str = "chat") -> Rendered:
    """Render a sample. `chat` applies the tokenizer's chat template (plain-text rows stay plain);
    `plain` joins the turns with blank lines."""
    if mode not in RENDER_MODES:
        raise ValueError(f"unknown render mode {mode!r}; expected one of {RENDER_MODES}")
    has_template = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    if mode == "plain" or sample.messages is None or not has_template:
        text = sample.plain_text()
        return Rendered(text, ((0, len(text)),))
    conversation = [{"role": role, "content": content} for role, content in sample.messages]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)  # type: ignore[union-attr]
    spans = []
    cursor = 0
    for _, content in sample.messages:
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:  # a template that rewrites content (strips it, say): fall back to the stripped form
            stripped = content.strip()
            start = text.find(stripped, cursor)
            if start < 0:
                continue
            content = stripped
        spans.append((start, start + len(content)))
        cursor = start + len(content)
    return Rendered(text, tuple(spans) if spans else ((0, len(text)),))
