"""Rows and samples: a row as read (Record) or left out (Rejected), the row formats, and how a row becomes a
Sample (a conversation or a plain text)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mona.errors import InputError

FORMATS = ("messages", "conversations", "instruction", "prompt", "text")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                   "system": "system"}


@dataclass(frozen=True)
class Record:
    """One row of an input file. `line` is 1-based (physical line for JSONL, row number otherwise)."""

    row: dict[str, Any]
    index: int
    line: int
    raw: str | None = None  # the original JSONL line, so selected rows are written back unchanged


@dataclass(frozen=True)
class Rejected:
    """A row left out under --on-error skip, with the reason (for the quarantine file)."""

    path: str
    line: int | None
    reason: str
    raw: str | None


@dataclass(frozen=True)
class Sample:
    """A row ready to render: a conversation (role, content) list, or plain text when no roles exist."""

    id: str
    messages: tuple[tuple[str, str], ...] | None
    text: str | None
    record: Record
    skipped_parts: int = 0  # non-text content parts (images, audio, files) left out of the text

    def plain_text(self) -> str:
        """The sample's content without any template: turns joined by blank lines."""
        if self.messages is None:
            return self.text or ""
        return "\n\n".join(content for _, content in self.messages)


def content_key(sample: Sample) -> int:
    """A 64-bit hash of what a row says: its roles and texts with runs of whitespace collapsed, so rows that
    differ only in id, in other fields or in spacing share it (`--dedup`)."""
    turns = [("", sample.text or "")] if sample.messages is None else sample.messages
    canon = json.dumps([[role, " ".join(text.split())] for role, text in turns])  # ASCII: lone surrogates escaped
    return int.from_bytes(hashlib.blake2b(canon.encode(), digest_size=8).digest(), "little")


def json_line(row: Any) -> str:
    """A row as one JSON line: readable text, or escapes where UTF-8 cannot hold it."""
    # ensure_ascii=False keeps text readable; a lone surrogate (which UTF-8 cannot hold) falls back to escapes
    line = json.dumps(row, ensure_ascii=False, default=str)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(row, ensure_ascii=True, default=str)
    return line


def raw_row(rec: Record) -> str:
    """The row as read (the JSONL line), or as JSON for formats without one (for the quarantine file)."""
    return rec.raw or json_line(rec.row)


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


# Content-part types that carry text (OpenAI chat "text", Responses API "input_text"/"output_text").
_TEXT_PARTS = {"text", "input_text", "output_text"}


def _content(value: Any, *, path: str, line: int, field: str) -> tuple[str, int]:
    """A turn's content as text, and how many non-text parts it had. Besides a string, content may be a list
    of OpenAI-style parts ({"type": "text", "text": ...}; images, audio and files are left out and counted),
    also as Parquet writes them (every part a struct with every field, the unused ones null)."""
    if not isinstance(value, list) or not any(isinstance(v, dict) for v in value):
        return _as_text(value, path=path, line=line, field=field), 0
    texts: list[str] = []
    skipped = 0
    for part in value:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise InputError(f"expected a content part (an object with 'type'), got {type(part).__name__}",
                             path=path, line=line, field=field)
        kind = part.get("type")
        if kind in _TEXT_PARTS or (kind is None and isinstance(part.get("text"), str)):
            texts.append(_as_text(part.get("text"), path=path, line=line, field=field))
        elif kind is None:
            raise InputError("content part has neither 'type' nor 'text'", path=path, line=line, field=field)
        else:
            skipped += 1
    return "\n".join(texts), skipped


def _turn(turn: Any, fmt: str, *, path: str, line: int) -> tuple[str, Any]:
    """(role, raw content) of one turn written either way: role/content (OpenAI) or from/value (ShareGPT);
    some ShareGPT exports use role/content inside `conversations`."""
    if isinstance(turn, dict):
        if "content" in turn:
            return str(turn.get("role", "user")), turn["content"]
        if "value" in turn:
            return _SHAREGPT_ROLES.get(str(turn.get("from", "human")).lower(), "user"), turn["value"]
    expected = "'role' and 'content'" if fmt == "messages" else "'from' and 'value'"
    other = "'from' and 'value'" if fmt == "messages" else "'role' and 'content'"
    raise InputError(f"each turn needs {expected} (or {other})", path=path, line=line, field=fmt)


def _messages(row: dict[str, Any], fmt: str, *, path: str, line: int) -> tuple[list[tuple[str, str]], int]:
    if fmt in ("messages", "conversations"):
        out = []
        skipped = 0
        for turn in row[fmt]:
            role, content = _turn(turn, fmt, path=path, line=line)
            if fmt == "conversations":
                role = _SHAREGPT_ROLES.get(role.lower(), role)
            text, n = _content(content, path=path, line=line, field=fmt)
            out.append((role, text))
            skipped += n
        return out, skipped
    if fmt == "instruction":
        instruction = _as_text(row.get("instruction"), path=path, line=line, field="instruction")
        extra = _as_text(row.get("input"), path=path, line=line, field="input")
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        output = _as_text(row.get("output", row.get("response")), path=path, line=line, field="output")
        return [("user", user)] + ([("assistant", output)] if output.strip() else []), 0
    if fmt == "prompt":
        prompt = _as_text(row["prompt"], path=path, line=line, field="prompt")
        key = "completion" if "completion" in row else "response"
        answer = _as_text(row[key], path=path, line=line, field=key)
        return [("user", prompt)] + ([("assistant", answer)] if answer.strip() else []), 0
    raise ValueError(fmt)


def has_fallback_id(row: dict[str, Any]) -> bool:
    """The row has no id of its own and is known by its 0-based row number."""
    raw_id = row.get("id")
    return raw_id is None or raw_id == ""


def _sample_id(rec: Record, path: str) -> str:
    raw_id = rec.row.get("id")
    if has_fallback_id(rec.row):
        return str(rec.index)
    if isinstance(raw_id, str):
        return _checked_text(raw_id, path=path, line=rec.line, field="id")
    if isinstance(raw_id, bool | int | float):  # kept as that JSON type in SCORES (see id_kind)
        return str(raw_id)
    raise InputError(f"an id must be a string or a number, got {type(raw_id).__name__}", path=path,
                     line=rec.line, field="id")


def id_kind(row: dict[str, Any]) -> int:
    """The JSON type of a row's id, to write it back as such: 0 string (also the row-number fallback), 1 integer,
    2 float, 3 boolean."""
    raw_id = row.get("id")
    return 3 if isinstance(raw_id, bool) else 1 if isinstance(raw_id, int) else 2 if isinstance(raw_id, float) else 0


def id_value(sample_id: str, kind: int) -> str | int | float | bool:
    """The id as its JSON type again (inverse of `str` for the kinds of `id_kind`)."""
    return sample_id if kind == 0 else int(sample_id) if kind == 1 else float(sample_id) if kind == 2 else (
        sample_id == "True")


def _checked_text(text: str, *, path: str, line: int, field: str) -> str:
    # A JSON "\ud800" escape parses to a lone surrogate, which no UTF-8 output, tokenizer or hash can take: the
    # row is bad (and with --on-error skip quarantined with its line) instead of a crash later on.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"lone surrogate \\u{ord(text[exc.start]):04x} at character {exc.start + 1} (not valid "
                         "Unicode text)", path=path, line=line, field=field) from None
    return text


def to_sample(rec: Record, *, fmt: str | None = None, text_field: str | None = None,
              path: str = "") -> Sample:
    """Turn a record into a Sample. Rows in another recognised format than the file's first row are
    accepted and read in their own format; a row with no text (or only whitespace), an id that is not a string
    or number, or text that is not valid Unicode (a lone surrogate) is an InputError."""
    row = rec.row
    sample_id = _sample_id(rec, path)
    if text_field is not None:
        if text_field not in row:
            raise InputError("row has no such field (--text-field applies to the pool and the target alike)",
                             path=path, line=rec.line, field=text_field)
        text = _as_text(row[text_field], path=path, line=rec.line, field=text_field)
        if not text.strip():
            raise InputError("empty text", path=path, line=rec.line, field=text_field)
        return Sample(sample_id, None, _checked_text(text, path=path, line=rec.line, field=text_field), rec)
    row_fmt = fmt if fmt is not None and _matches(row, fmt) else detect_format(row, path=path, line=rec.line)
    if row_fmt == "text":
        text = _as_text(row["text"], path=path, line=rec.line, field="text")
        if not text.strip():
            raise InputError("empty text", path=path, line=rec.line, field="text")
        return Sample(sample_id, None, _checked_text(text, path=path, line=rec.line, field="text"), rec)
    messages, skipped = _messages(row, row_fmt, path=path, line=rec.line)
    if not any(content.strip() for _, content in messages):
        reason = f"empty text ({skipped} non-text content parts only)" if skipped else "empty text"
        raise InputError(reason, path=path, line=rec.line, field=row_fmt)
    for role, content in messages:
        _checked_text(role, path=path, line=rec.line, field=row_fmt)
        _checked_text(content, path=path, line=rec.line, field=row_fmt)
    return Sample(sample_id, tuple(messages), None, rec, skipped)


def _matches(row: dict[str, Any], fmt: str) -> bool:
    try:
        return detect_format(row) == fmt
    except InputError:
        return False
