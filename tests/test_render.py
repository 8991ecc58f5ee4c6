"""Rendering samples into LM inputs, with the character spans of the sample's own content."""

from __future__ import annotations

import pytest

from conftest import make_tokenizer
from mona.data.formats import Record, Sample
from mona.data.render import render


def _sample(messages=None, text=None) -> Sample:
    return Sample("0", tuple(messages) if messages else None, text, Record({}, 0, 1))


def _outside(rendered) -> str:
    """The rendered text with every content span cut out."""
    out, cursor = [], 0
    for a, b in rendered.spans:
        out.append(rendered.text[cursor:a])
        cursor = b
    out.append(rendered.text[cursor:])
    return "".join(out)


def test_chat_spans_cover_exactly_the_contents(tokenizer):
    messages = [("system", "be brief"), ("user", "add two numbers"), ("assistant", "five")]
    r = render(_sample(messages), tokenizer, "chat")
    assert r.text == ("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nadd two numbers<|im_end|>\n"
                      "<|im_start|>assistant\nfive<|im_end|>\n")
    assert [r.text[a:b] for a, b in r.spans] == ["be brief", "add two numbers", "five"]
    assert _outside(r) == ("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n"
                           "<|im_start|>assistant\n<|im_end|>\n")


def test_chat_spans_not_fooled_by_template_text(tokenizer):
    # The contents also occur earlier in template text: 'user' is a role name, 'a' is inside '<|im_start|>'.
    r = render(_sample([("user", "user"), ("assistant", "a")]), tokenizer, "chat")
    assert [r.text[a:b] for a, b in r.spans] == ["user", "a"]
    assert _outside(r) == "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n"


def test_chat_empty_turn_has_no_span(tokenizer):
    r = render(_sample([("user", "hello world"), ("assistant", "")]), tokenizer, "chat")
    assert [r.text[a:b] for a, b in r.spans] == ["hello world"]


def test_chat_template_that_strips_content():
    stripping = make_tokenizer()
    stripping.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}"
                               "<|im_end|>\n{% endfor %}")
    r = render(_sample([("user", "  hello world \n"), ("assistant", "a")]), stripping, "chat")
    assert r.text == "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
    assert [r.text[a:b] for a, b in r.spans] == ["hello world", "a"]


def test_plain_mode(tokenizer):
    r = render(_sample([("user", "add two numbers"), ("assistant", "five")]), tokenizer, "plain")
    assert r.text == "add two numbers\n\nfive"
    assert r.spans == ((0, len(r.text)),)


def test_text_rows_stay_plain_in_chat_mode(tokenizer):
    r = render(_sample(text="the cat sat"), tokenizer, "chat")
    assert r.text == "the cat sat"
    assert r.spans == ((0, 11),)


def test_no_template_falls_back_to_plain():
    r = render(_sample([("user", "q"), ("assistant", "a")]), None, "chat")
    assert r.text == "q\n\na"


def test_unknown_mode(tokenizer):
    with pytest.raises(ValueError, match="unknown render mode"):
        render(_sample(text="x"), tokenizer, "fancy")
