"""What `mona` prints is plain text: rows, ids and paths with square brackets print as they are (never as rich
markup, which dropped them or raised MarkupError), and escape sequences and control characters in them never
reach the terminal."""

from __future__ import annotations

import itertools
import json

import pytest
from typer.testing import CliRunner

from mona.cli import app
from mona.display import for_display

ROWS = [
    {"id": "llama", "text": "<s>[INST] add two numbers [/INST] seven </s>"},
    {"id": "bold[/b]", "text": "[bold]not bold[/bold] and [red]not red[/red] and [link=x]y[/link]"},
    {"id": "ansi", "text": "plain \x1b[31mred\x1b[0m \x1b]0;window title\x07 bell\x07 back\bspace \u202eevil"},
    {"id": "other", "text": "the cat sat on the mat"},
]
TARGET = [{"text": "add numbers [INST]"}, {"text": "red bold"}]


@pytest.mark.parametrize("out_name", ["sel.jsonl", "[/b]sel.jsonl", "[red]x[/red].jsonl"])
def test_show_prints_rows_and_paths_as_text(tmp_path, out_name):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps(r) + "\n" for r in TARGET))
    out = tmp_path / out_name
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(target), "--budget", "4",
                                      "--method", "random", "--out", str(out), "--show", "4"],
                                env={"MONA_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                                     "COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert out.exists()
    shown = result.stdout
    assert "<s>[INST] add two numbers [/INST] seven </s>" in shown
    assert "bold[/b]: [bold]not bold[/bold] and [red]not red[/red] and [link=x]y[/link]" in shown
    assert "plain red bell backspace evil" in shown  # the text kept, the controls gone
    assert not any(c in result.output for c in "\x1b\x07\x08\u202e")
    assert str(out) in " ".join(result.stderr.split())  # the summary names OUT, brackets and all


def test_error_messages_keep_brackets_and_drop_controls(tmp_path):
    (tmp_path / "p[").mkdir()
    pool = tmp_path / "p[" / "b]\x1b[2J.jsonl"  # a path holding "[/b]" and a screen-clearing escape
    pool.write_text('{"id": "a", "body": "x"}\n')
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(pool), "--budget", "1",
                                      "--method", "random", "--out", str(tmp_path / "o.jsonl")],
                                env={"MONA_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                                     "COLUMNS": "300"})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "p[/b].jsonl:1: row has no text" in result.stderr
    assert "\x1b" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("raw, shown", [
    ("a\x1b[1;31mb\x1b[0mc", "abc"),
    ("x\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\y", "xlinky"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("nul\x00del\x7fc1\x85", "nuldelc1"),
    ("[INST] [/b] [red]", "[INST] [/b] [red]"),
    ("surrogate \ud800 here", "surrogate ? here"),
])
def test_for_display(raw, shown):
    assert for_display(raw) == shown
    assert for_display(raw, one_line=True) == " ".join(shown.split())



@pytest.mark.parametrize("group", [[], ["bench"]])
def test_command_lists_wrap_each_summary_as_one_paragraph(group):
    # the docstrings break their lines at 120 columns; the panel must wrap the text anew, never keep a break
    # early: a line is continued only if the next word would not have fitted on it
    result = CliRunner().invoke(app, [*group, "--help"], terminal_width=100, env={"COLUMNS": "100"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if "Commands" in line)
    rows = [line[1:-1] for line in lines[start + 1:] if line.startswith("│")]
    assert len(rows) > 3
    continued = [(a, b) for a, b in itertools.pairwise(rows) if b.startswith("  ") and b.strip()]
    assert continued  # some summaries are longer than one line
    for line, following in continued:
        column = len(following) - len(following.lstrip())
        room = len(line) - 1 - column  # one space of padding before the border
        assert len(line.rstrip()) - column + 1 + len(following.split()[0]) > room, (line, following)
