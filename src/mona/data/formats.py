"""Row formats: detect which one a row uses and turn it into a conversation or a plain text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mona.errors import InputError

if TYPE_CHECKING:
    from mona.data.readers import Record

FORMATS = ("messages", "conversations", "instruction", "prompt", "text")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                   "system": "system"}


@dataclass(frozen=True)
class Sample:
    """A row ready to render: a conversation (role, content) list, or plain text when no roles exist."""

    id: str
    messages: tuple[tuple[str, str], ...] | None
    text: str | None
    record: Record

    def plain_text(self) -> str:
        """The sample's content without any template: turns joined by blank lines."""
        if self.messages is None:
            return self.text or ""
        return "\n\n".join(content for _, content in self.messages)


def detect_format(row: dict[str, Any], *, path: str | None = None, line: int | None = None) -> str:
    """Name the row format: messages, conversations, instruction, prompt or text."""
    if isinstance(row.get("messages"), list):
        return "messages"
    if isinstance(row.get("conversations"), list):
        return "conversations"
    if "instruction" in row:
        return "instruction"
    if "prompt" in row and ("completion" in row or "response" in row):
        return "prompt"
    if "text" in row:
        return "text"
    fields = ", ".join(sorted(row)) or "none"
    raise InputError(f"row has no text: expected one of messages, conversations, instruction[/input/output], "
                     f"prompt+completion|response, text (fields: {fields}); or pass --text-field",
                     path=path, line=line)


def _as_text(value: Any, *, path: str, line: int, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise InputError(f"expected text, got {type(value).__name__}", path=path, line=line, field=field)


def _messages(row: dict[str, Any], fmt: str, *, path: str, line: int) -> list[tuple[str, str]]:
    if fmt == "messages":
        out = []
        for turn in row["messages"]:
            if not isinstance(turn, dict) or "content" not in turn:
                raise InputError("each message needs 'role' and 'content'", path=path, line=line,
                                 field="messages")
            role = str(turn.get("role", "user"))
            out.append((role, _as_text(turn["content"], path=path, line=line, field="messages")))
        return out
    if fmt == "conversations":
        out = []
        for turn in row["conversations"]:
            if not isinstance(turn, dict) or "value" not in turn:
                raise InputError("each turn needs 'from' and 'value'", path=path, line=line,
                                 field="conversations")
            role = _SHAREGPT_ROLES.get(str(turn.get("from", "human")).lower(), "user")
            out.append((role, _as_text(turn["value"], path=path, line=line, field="conversations")))
        return out
    if fmt == "instruction":
        instruction = _as_text(row.get("instruction"), path=path, line=line, field="instruction")
        extra = _as_text(row.get("input"), path=path, line=line, field="input")
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        output = _as_text(row.get("output", row.get("response")), path=path, line=line, field="output")
        return [("user", user)] + ([("assistant", output)] if output.strip() else [])
    if fmt == "prompt":
        prompt = _as_text(row["prompt"], path=path, line=line, field="prompt")
        key = "completion" if "completion" in row else "response"
        answer = _as_text(row[key], path=path, line=line, field=key)
        return [("user", prompt)] + ([("assistant", answer)] if answer.strip() else [])
    raise ValueError(fmt)


def to_sample(rec: Record, *, fmt: str | None = None, text_field: str | None = None,
              path: str = "") -> Sample:
    """Turn a record into a Sample. Rows in another recognised format than the file's first row are
    accepted and read in their own format; a row with no text (or only whitespace) is an InputError."""
    row = rec.row
    raw_id = row.get("id")
    sample_id = str(rec.index) if raw_id is None or raw_id == "" else str(raw_id)
    if text_field is not None:
        if text_field not in row:
            raise InputError("row has no such field", path=path, line=rec.line, field=text_field)
        text = _as_text(row[text_field], path=path, line=rec.line, field=text_field)
        if not text.strip():
            raise InputError("empty text", path=path, line=rec.line, field=text_field)
        return Sample(sample_id, None, text, rec)
    row_fmt = fmt if fmt is not None and _matches(row, fmt) else detect_format(row, path=path, line=rec.line)
    if row_fmt == "text":
        text = _as_text(row["text"], path=path, line=rec.line, field="text")
        if not text.strip():
            raise InputError("empty text", path=path, line=rec.line, field="text")
        return Sample(sample_id, None, text, rec)
    messages = _messages(row, row_fmt, path=path, line=rec.line)
    if not any(content.strip() for _, content in messages):
        raise InputError("empty text", path=path, line=rec.line, field=row_fmt)
    return Sample(sample_id, tuple(messages), None, rec)


def _matches(row: dict[str, Any], fmt: str) -> bool:
    try:
        return detect_format(row) == fmt
    except InputError:
        return False
