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
    exact = _marker_spans(sample, tokenizer, text)
    if exact is not None:
        return Rendered(text, exact)
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


def _marker_spans(sample: Sample, tokenizer: ChatTokenizer, text: str) -> tuple[tuple[int, int], ...] | None:
    """Exact content spans: render again with each content replaced by a unique marker and put the contents
    back between the template pieces. None when that does not rebuild `text` (a template that rewrites
    content); then the caller searches for the contents instead. Searching alone can land on template text
    equal to a short content ('a' inside '<|im_start|>', a role name...)."""
    assert sample.messages is not None
    marks = [f"\ue000{i}\ue001" if content else "" for i, (_, content) in enumerate(sample.messages)]
    marked = tokenizer.apply_chat_template(  # type: ignore[union-attr]
        [{"role": role, "content": mark or content} for (role, content), mark in zip(sample.messages, marks,
                                                                                     strict=True)],
        tokenize=False)
    if not isinstance(marked, str):
        return None
    rebuilt, spans, cursor, length = [], [], 0, 0
    for (_, content), mark in zip(sample.messages, marks, strict=True):
        if not mark:
            continue
        at = marked.find(mark, cursor)
        if at < 0:
            return None
        rebuilt += [marked[cursor:at], content]
        start = length + at - cursor
        spans.append((start, start + len(content)))
        length = start + len(content)
        cursor = at + len(mark)
    rebuilt.append(marked[cursor:])
    if "".join(rebuilt) != text or not spans:
        return None
    return tuple(spans)
