"""Messy but common inputs: OpenAI content parts, a UTF-8 byte order mark and ShareGPT turns with role/content
keys are read; lone surrogates, files that are not what their name says, colliding fallback ids and nested ids
get one line that says what is wrong; SCORES keeps ids' JSON types; the Python API validates in-memory samples
as the CLI validates files."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mona.cli import app
from mona.data.formats import Record, Rejected, Sample
from mona.data.readers import read_samples
from mona.errors import InputError
from mona.selection.pipeline import compute_scores
from mona.selection.registry import MethodOptions

TARGET = [{"text": "add two numbers"}, {"text": "what is three plus four"}]
PARTS = [{"type": "text", "text": "describe the picture"},
         {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}},
         {"type": "text", "text": "in one line"}]


def _invoke(tmp_path: Path, pool: Path, *extra: str, method: str = "random", budget: int = 1):
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps(r) + "\n" for r in TARGET))
    args = ["select", "--pool", str(pool), "--target", str(target), "--budget", str(budget), "--method", method,
            "--out", str(tmp_path / "out" / "sel.jsonl"), *extra]
    return CliRunner().invoke(app, args, env={"MONA_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                                               "COLUMNS": "300"})


# ---------------------------------------------------------------- accepted formats


def test_openai_content_parts_in_jsonl(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": "a", "messages": [{"role": "user", "content": PARTS},
                                     {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}]},
            {"id": "b", "messages": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                                     {"role": "assistant", "content": [{"type": "output_text", "text": "hello"}]}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = read_samples(path)
    assert a.messages == (("user", "describe the picture\nin one line"), ("assistant", "a cat"))
    assert a.skipped_parts == 1 and b.skipped_parts == 0
    assert b.messages == (("user", "hi"), ("assistant", "hello"))


def test_openai_content_parts_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "a", "messages": [{"role": "user", "content": PARTS}]},
            {"id": "b", "messages": [{"role": "user", "content": [{"type": "text", "text": "plain"}]}]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")  # parts become structs with null fields
    a, b = read_samples(tmp_path / "p.parquet")
    assert a.messages == (("user", "describe the picture\nin one line"),) and a.skipped_parts == 1
    assert b.messages == (("user", "plain"),)


def test_only_non_text_parts_is_empty_text(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": [PARTS[1]]}]}) + "\n")
    with pytest.raises(InputError, match=r"p.jsonl:1: empty text \(1 non-text content parts only\)"):
        read_samples(path)


def test_select_counts_skipped_parts_in_the_summary(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": PARTS}]}) + "\n"
                    + json.dumps({"id": "b", "text": "three plus four"}) + "\n")
    result = _invoke(tmp_path, pool)
    assert result.exit_code == 0, result.output
    assert "1 non-text content parts (images, audio, files) left out" in result.stderr


@pytest.mark.parametrize("kind", ["jsonl", "json", "jsonl.gz"])
@pytest.mark.parametrize("skip", [False, True])
def test_utf8_byte_order_mark(tmp_path, kind, skip):
    rows = [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}]
    body = "".join(json.dumps(r) + "\n" for r in rows) if kind != "json" else json.dumps(rows)
    data = b"\xef\xbb\xbf" + body.encode()
    path = tmp_path / f"p.{kind}"
    path.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
    rejects: list[Rejected] | None = [] if skip else None
    samples = read_samples(path, rejects=rejects)
    assert [s.id for s in samples] == ["a", "b"] and not rejects
    if kind != "json":
        assert samples[0].record.raw == json.dumps(rows[0])  # OUT gets the row without the mark


@pytest.mark.parametrize("field, turns", [
    ("conversations", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]),
    ("conversations", [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "hello"}]),
    ("conversations", [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]),
    ("messages", [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]),
])
def test_turns_written_either_way(tmp_path, field, turns):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({field: turns}) + "\n")
    assert read_samples(path)[0].messages == (("user", "hi"), ("assistant", "hello"))


def test_turn_with_neither_key_pair_says_both(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"conversations": [{"speaker": "a", "said": "hi"}]}) + "\n")
    with pytest.raises(InputError, match=r"each turn needs 'from' and 'value' \(or 'role' and 'content'\)"):
        read_samples(path)


# ---------------------------------------------------------------- ids


def test_scores_keep_the_ids_json_types(tmp_path):
    pool = tmp_path / "pool.jsonl"
    rows = [{"id": 7, "text": "add two numbers"}, {"id": "7b", "text": "three plus four"},
            {"text": "no id here"}, {"id": 2.5, "text": "two and a half"}, {"id": True, "text": "yes"}]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = tmp_path / "scores.jsonl"
    result = _invoke(tmp_path, pool, "--scores", str(scores), budget=2)
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["id"] for line in scores.read_text().splitlines()]
    assert ids == [7, "7b", "2", 2.5, True]
    assert [type(i) for i in ids] == [int, str, str, float, bool]


@pytest.mark.parametrize("method", ["random", "bm25"])
def test_scores_keep_id_types_for_whole_read_pools_too(tmp_path, method):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": i, "text": f"add {w} numbers"}) + "\n"
                            for i, w in enumerate(["two", "three", "four"])))
    scores = tmp_path / "scores.jsonl"
    assert _invoke(tmp_path, pool, "--scores", str(scores), method=method).exit_code == 0
    assert [json.loads(line)["id"] for line in scores.read_text().splitlines()] == [0, 1, 2]


# ---------------------------------------------------------------- refused, with what the file looks like

ROWS = [{"id": f"r{i}", "text": f"row number {i}"} for i in range(4)]
JSONL = "".join(json.dumps(r) + "\n" for r in ROWS)


def _symlink_loop(tmp: Path) -> Path:
    link = tmp / "loop.jsonl"
    link.symlink_to(link)
    return link


def _dangling(tmp: Path) -> Path:
    link = tmp / "dangling.jsonl"
    link.symlink_to(tmp / "gone.jsonl")
    return link


def _file(name: str, data: str | bytes):
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path
    return make


REFUSED = {
    "JSONL saved as .json": (_file("pool.json", JSONL), 2,
                             "pool.json: this looks like JSONL (one object per line), not one JSON document; name "
                             "it pool.jsonl"),
    "JSON array saved as .jsonl": (_file("pool.jsonl", json.dumps(ROWS)), 2,
                                   "pool.jsonl: this looks like a JSON array, not JSONL (one object per line); name "
                                   "it pool.json"),
    "pretty JSON array saved as .jsonl": (_file("pool.jsonl", json.dumps(ROWS, indent=2)), 2,
                                          "this looks like a JSON array, not JSONL"),
    "pretty JSON object saved as .jsonl": (_file("pool.jsonl", json.dumps({"data": ROWS}, indent=2)), 2,
                                           "this looks like JSON spread over several lines, not JSONL"),
    "gzip named .jsonl": (_file("pool.jsonl", gzip.compress(JSONL.encode())), 2,
                          "pool.jsonl: this looks like gzip data; name it pool.jsonl.gz"),
    "zstd named .jsonl": (_file("pool.jsonl", b"\x28\xb5\x2f\xfd" + b"\x00" * 20), 2,
                          "pool.jsonl: this looks like zstd data; name it pool.jsonl.zst"),
    "Parquet named .jsonl": (_file("pool.jsonl", b"PAR1" + b"\x00" * 20), 2,
                             "this looks like a Parquet file; name it pool.parquet"),
    "UTF-16 with BOM": (_file("pool.jsonl", JSONL.encode("utf-16")), 2,
                        "pool.jsonl: this looks like UTF-16 text; save it as UTF-8"),
    "UTF-16 without BOM": (_file("pool.jsonl", JSONL.encode("utf-16-le")), 2, "this looks like UTF-16 text"),
    "UTF-16 JSON": (_file("pool.json", json.dumps(ROWS).encode("utf-16-be")), 2, "this looks like UTF-16 text"),
    "NUL padding": (_file("pool.jsonl", JSONL.encode() + b"\x00" * 4096), 2,
                    "pool.jsonl:5: the line is NUL bytes only: the file looks padded or damaged"),
    "NUL inside a row": (_file("pool.jsonl", JSONL.encode() + b'{"id": "x", "te\x00xt": 1}\n'), 2,
                         "pool.jsonl:5: NUL bytes (\\x00) at column 16"),
    "old-Mac CR line endings": (_file("pool.jsonl", JSONL.replace("\n", "\r")), 2,
                                "pool.jsonl: lines end in CR alone (old Mac line endings)"),
    "fallback id collides with a later id": (
        _file("pool.jsonl", '{"text": "a b"}\n{"id": "0", "text": "c d"}\n'), 2,
        "pool.jsonl:2: duplicate id '0' (line 1 has no id and is known by its row number '0') (field 'id')"),
    "fallback id collides with an earlier id": (
        _file("pool.jsonl", '{"id": "1", "text": "a b"}\n{"text": "c d"}\n'), 2,
        "pool.jsonl:2: duplicate id '1' (this row has no id, and its row number '1' is the id of line 1)"),
    "nested id": (_file("pool.jsonl", '{"id": {"a": 1}, "text": "a b"}\n'), 2,
                  "pool.jsonl:1: an id must be a string or a number, got dict (field 'id')"),
    "list id": (_file("pool.jsonl", '{"id": [1], "text": "a b"}\n'), 2,
                "pool.jsonl:1: an id must be a string or a number, got list (field 'id')"),
    "lone surrogate in an id": (_file("pool.jsonl", '{"id": "a\\ud800", "text": "a b"}\n'), 2,
                                "pool.jsonl:1: lone surrogate \\ud800 at character 2 (not valid Unicode text) "
                                "(field 'id')"),
    "lone surrogate in the text": (_file("pool.jsonl", '{"id": "a", "text": "a \\udfff b"}\n'), 2,
                                   "pool.jsonl:1: lone surrogate \\udfff at character 3"),
    "lone surrogate in a message": (
        _file("pool.jsonl", '{"messages": [{"role": "user", "content": "\\ud83d"}]}\n'), 2,
        "lone surrogate \\ud83d at character 1 (not valid Unicode text) (field 'messages')"),
    "lone surrogate in a JSON file": (_file("pool.json", '[{"id": "a", "text": "x\\ud800"}]'), 2,
                                      "pool.json:1: lone surrogate \\ud800"),
    "symlink loop": (_symlink_loop, 3, "loop.jsonl: symbolic link loop"),
    "dangling symlink": (_dangling, 3, "dangling.jsonl: broken symbolic link: it points to"),
}


@pytest.mark.parametrize("method", ["random", "bm25", "dsir"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_with_what_the_file_looks_like(tmp_path, case, method):
    make, code, message = REFUSED[case]
    result = _invoke(tmp_path, make(tmp_path), method=method)
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out" / "sel.jsonl").exists()


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_lone_surrogate_rows_are_quarantined_with_skip(tmp_path, kind):
    rows = '[{"id": "ok1", "text": "add two"}, {"id": "bad", "text": "x\\ud800"}, {"id": "ok2", "text": "four"}]'
    pool = tmp_path / f"pool.{kind}"
    pool.write_text(rows if kind == "json" else "\n".join(json.dumps(r) for r in json.loads(rows)) + "\n")
    if kind == "jsonl":  # json.dumps escaped the surrogate: the line holds "\ud800" as text
        assert "\\ud800" in pool.read_text()
    result = _invoke(tmp_path, pool, "--on-error", "skip", "--scores", str(tmp_path / "s.jsonl"), budget=2)
    assert result.exit_code == 0, result.output
    quarantine = tmp_path / "out" / "sel.jsonl.rejected.jsonl"
    (entry,) = [json.loads(line) for line in quarantine.read_text(encoding="utf-8").splitlines()]
    assert entry["line"] == 2 and "lone surrogate" in entry["reason"]
    assert json.loads(entry["row"])["id"] == "bad"  # the raw row round-trips (escaped)
    assert sorted(json.loads(line)["id"] for line in (tmp_path / "s.jsonl").read_text().splitlines()) == [
        "ok1", "ok2"]


def test_text_field_error_says_it_applies_to_the_target_too(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"id": "a", "body": "add two numbers"}) + "\n")
    result = _invoke(tmp_path, pool, "--text-field", "body")
    assert result.exit_code == 2
    assert "target.jsonl:1: row has no such field (--text-field applies to the pool and the target alike) " \
           "(field 'body')" in result.stderr


def test_symlinks_that_work_still_read(tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text(JSONL)
    link = tmp_path / "link.jsonl"
    os.symlink(real, link)
    assert [s.id for s in read_samples(link)] == [r["id"] for r in ROWS]


# ---------------------------------------------------------------- the Python API validates like the CLI


def _samples(rows: list[dict]) -> list[Sample]:
    from mona.data.formats import to_sample

    return [to_sample(Record(row, i, i + 1)) for i, row in enumerate(rows)]


@pytest.mark.parametrize("which", ["pool", "target"])
def test_compute_scores_refuses_duplicate_ids_as_the_cli_does(tmp_path, which):
    rows = [{"id": "a", "text": "add two"}, {"id": "b", "text": "three"}, {"id": "a", "text": "four"}]
    pool, targets = (_samples(rows), _samples(TARGET)) if which == "pool" else (_samples(TARGET), _samples(rows))
    with pytest.raises(InputError) as info:
        compute_scores(pool, targets, MethodOptions(method="random"), None)
    assert str(info.value) == f"{which}:3: duplicate id 'a' (first seen on line 1) (field 'id')"
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as from_file:
        read_samples(path)
    assert from_file.value.reason == info.value.reason and from_file.value.line == info.value.line


@pytest.mark.parametrize("samples, message", [
    ([], "pool: has no rows"),
    ([Sample("a", None, "  ", Record({}, 0, 1))], "pool:1: empty text"),
    ([Sample("a\ud800", None, "text", Record({}, 0, 1))], "pool:1: lone surrogate \\ud800"),
    ([Sample("0", None, "x", Record({}, 0, 1)), Sample("0", None, "y", Record({"id": "0"}, 1, 2))],
     "pool:2: duplicate id '0' (line 1 has no id and is known by its row number '0')"),
])
def test_compute_scores_validates_in_memory_samples(samples, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("\\u", "\\\\u")):
        compute_scores(samples, _samples(TARGET), MethodOptions(method="random"), None)


def test_compute_scores_checks_options_before_anything_else():
    from mona.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown pooling"):
        compute_scores(_samples(TARGET), _samples(TARGET), MethodOptions(method="random", pooling="median"), None)
