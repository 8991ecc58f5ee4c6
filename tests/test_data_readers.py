"""Reading pools and targets: file types, row formats, ids, and errors that name file and line."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import write_jsonl
from mona.data.formats import detect_format
from mona.data.readers import read_records, read_samples
from mona.errors import InputError, MissingFileError

ROWS = [
    {"id": "a", "text": "hello world"},
    {"text": "the cat sat"},
    {"id": "c", "text": "bake a cake"},
]


def _check_rows(samples):
    assert [s.id for s in samples] == ["a", "1", "c"]
    assert [s.text for s in samples] == ["hello world", "the cat sat", "bake a cake"]
    assert all(s.messages is None for s in samples)


def test_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    samples = read_samples(path)
    _check_rows(samples)
    # the raw line is kept so selected rows can be written back unchanged
    assert [s.record.raw for s in samples] == [json.dumps(r) for r in ROWS]
    assert [s.record.line for s in samples] == [1, 2, 3]


def test_jsonl_gz(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in ROWS)
    _check_rows(read_samples(path))


def test_jsonl_zst(tmp_path):
    import zstandard

    path = tmp_path / "p.jsonl.zst"
    data = "".join(json.dumps(r) + "\r\n" for r in ROWS).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    samples = read_samples(path)
    _check_rows(samples)
    assert [s.record.line for s in samples] == [1, 2, 3]


def test_json_list(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(ROWS, indent=2))
    samples = read_samples(path)
    _check_rows(samples)
    assert [s.record.line for s in samples] == [1, 2, 3]


def test_json_data_wrapper(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS}))
    _check_rows(read_samples(path))


def test_json_not_a_list(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(InputError, match="expected a JSON list") as info:
        read_samples(path)
    assert str(path) in str(info.value)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    table = pa.table({"id": ["a", None, "c"], "text": [r["text"] for r in ROWS]})
    pq.write_table(table, path)
    samples = read_samples(path)
    _check_rows(samples)
    assert samples[1].record.row == {"id": None, "text": "the cat sat"}


def test_save_to_disk_dir(tmp_path):
    from datasets import Dataset

    path = tmp_path / "ds"
    Dataset.from_list([{"id": "a", "text": "hello world"}, {"id": "", "text": "the cat sat"},
                       {"id": "c", "text": "bake a cake"}]).save_to_disk(str(path))
    _check_rows(read_samples(path))


def test_plain_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="save_to_disk"):
        read_samples(tmp_path / "d")


def test_unknown_extension(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("text\nhello\n")
    with pytest.raises(InputError, match="unknown file type") as info:
        read_samples(path)
    assert str(path) in str(info.value)


def test_crlf_line_endings(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS, newline="\r\n")
    samples = read_samples(path)
    _check_rows(samples)
    assert all("\r" not in s.record.raw for s in samples)


def test_crlf_error_line_number(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"text": "a"}\r\n{"text": "b"}\r\n{"text": \r\n')
    with pytest.raises(InputError) as info:
        read_samples(path)
    assert f"{path}:3:" in str(info.value)


def test_blank_lines_skipped_but_counted(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "hello"}\n\n   \n{"text": "world"}\n{"text": ""}\n')
    with pytest.raises(InputError, match="empty text") as info:
        read_samples(path)
    assert f"{path}:5:" in str(info.value)
    records = read_records(path)
    assert [(r.index, r.line) for r in records] == [(0, 1), (1, 4), (2, 5)]


# ---- row formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("row", "fmt"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ({"conversations": [{"from": "human", "value": "hi"}]}, "conversations"),
    ({"instruction": "do it", "input": "", "output": "done"}, "instruction"),
    ({"prompt": "q", "completion": "a"}, "prompt"),
    ({"prompt": "q", "response": "a"}, "prompt"),
    ({"text": "plain"}, "text"),
])
def test_detect_format(row, fmt):
    assert detect_format(row) == fmt


def test_detect_format_no_text():
    with pytest.raises(InputError, match="row has no text"):
        detect_format({"foo": 1, "prompt": "q"})  # a prompt alone is not a known format


def test_messages_format(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "add two numbers"},
        {"role": "assistant", "content": "four"}]}])
    (sample,) = read_samples(path)
    assert sample.messages == (("system", "be brief"), ("user", "add two numbers"), ("assistant", "four"))
    assert sample.text is None
    assert sample.plain_text() == "be brief\n\nadd two numbers\n\nfour"


def test_sharegpt_format(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"conversations": [
        {"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    (sample,) = read_samples(path)
    assert sample.messages == (("system", "s"), ("user", "q"), ("assistant", "a"))


def test_instruction_format(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"instruction": "add", "input": "two and three", "output": "five"},
        {"instruction": "tell me a story", "input": "", "output": "once"},
        {"instruction": "just a question"},
    ])
    a, b, c = read_samples(path)
    assert a.messages == (("user", "add\n\ntwo and three"), ("assistant", "five"))
    assert b.messages == (("user", "tell me a story"), ("assistant", "once"))
    assert c.messages == (("user", "just a question"),)


def test_prompt_formats(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "what is two plus two", "completion": "four"},
        {"prompt": "say hello", "response": "hello"},
    ])
    a, b = read_samples(path)
    assert a.messages == (("user", "what is two plus two"), ("assistant", "four"))
    assert b.messages == (("user", "say hello"), ("assistant", "hello"))


def test_mixed_formats_in_one_file(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "plain"}, {"prompt": "q", "completion": "a"}])
    a, b = read_samples(path)
    assert a.text == "plain"
    assert b.messages == (("user", "q"), ("assistant", "a"))


def test_text_field_override(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 7, "body": "the cat sat", "text": "ignored", "messages": [{"role": "user", "content": "no"}]},
        {"body": "bake a cake"},
    ])
    a, b = read_samples(path, text_field="body")
    assert (a.id, a.text, a.messages) == ("7", "the cat sat", None)
    assert (b.id, b.text) == ("1", "bake a cake")


def test_text_field_missing_names_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"body": "x"}, {"text": "y"}])
    with pytest.raises(InputError) as info:
        read_samples(path, text_field="body")
    msg = str(info.value)
    assert f"{path}:2:" in msg and "body" in msg


def test_ids_from_field_else_index(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": 10, "text": "a"}, {"text": "b"}, {"id": "x", "text": "c"},
                                              {"text": "d"}])
    assert [s.id for s in read_samples(path)] == ["10", "1", "x", "3"]


# ---- errors -------------------------------------------------------------------------------------------

def test_broken_json_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"\n{"text": "d"}\n')
    with pytest.raises(InputError, match="broken JSON") as info:
        read_samples(path)
    assert f"{path}:3:" in str(info.value)
    assert "\n" not in str(info.value)


def test_non_object_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match="expected a JSON object") as info:
        read_samples(path)
    assert f"{path}:2:" in str(info.value)


def test_broken_json_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('[\n{"text": "a"},\n{"text": }\n]')
    with pytest.raises(InputError, match="broken JSON") as info:
        read_samples(path)
    assert f"{path}:3:" in str(info.value)


def test_row_without_text(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "a"}, {"text": "b"}, {"title": "no text here"}])
    with pytest.raises(InputError, match="row has no text") as info:
        read_samples(path)
    msg = str(info.value)
    assert f"{path}:3:" in msg and "title" in msg


@pytest.mark.parametrize("row", [
    {"text": "   "},
    {"text": ""},
    {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": ""}]},
    {"instruction": "", "output": ""},
])
def test_empty_text(tmp_path, row):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "ok"}, row])
    with pytest.raises(InputError, match="empty text") as info:
        read_samples(path)
    assert f"{path}:2:" in str(info.value)


def test_empty_text_parquet_names_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a", "b", " "]}), path)
    with pytest.raises(InputError, match="empty text") as info:
        read_samples(path)
    assert f"{path}:3:" in str(info.value)


def test_bad_message_type(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": {"x": 1}}]}])
    with pytest.raises(InputError, match="expected text") as info:
        read_samples(path)
    assert f"{path}:1:" in str(info.value)


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"},
                                              {"id": "a", "text": "z"}])
    with pytest.raises(InputError, match="duplicate id 'a'") as info:
        read_samples(path)
    msg = str(info.value)
    assert f"{path}:3:" in msg and "line 1" in msg


def test_duplicate_between_explicit_id_and_index(tmp_path):
    # row 1 has no id, so its id is "1", which row 0 already claimed
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "1", "text": "x"}, {"text": "y"}])
    with pytest.raises(InputError, match="duplicate id '1'") as info:
        read_samples(path)
    assert f"{path}:2:" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(MissingFileError) as info:
        read_samples(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match="no rows") as info:
        read_samples(path)
    assert str(path) in str(info.value)
    assert read_samples(path, allow_empty=True) == []


def test_not_utf8(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match="UTF-8") as info:
        read_samples(path)
    assert f"{path}:2:" in str(info.value)


def test_error_exit_codes_differ():
    assert InputError("x").exit_code != 0
    assert MissingFileError("x").exit_code != 0
    assert str(InputError("bad", path="f.jsonl", line=4, field="text")) == "f.jsonl:4: bad (field 'text')"
    assert str(InputError("bad")) == "bad"
