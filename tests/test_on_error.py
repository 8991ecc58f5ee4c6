"""`--on-error skip`: bad rows of every kind are left out, written to the quarantine file with file, line and
reason, and counted; good rows are selected as if the bad ones had never been there."""

from __future__ import annotations

import json

import pytest

from test_cli import POOL_IDS, POOL_ROWS, _args, _invoke, _read_jsonl, make_files

BAD_ROWS = [  # (line content, expected reason fragment)
    ('{"id": "b1", "text": "oops"', "broken JSON"),
    ('["a", "list"]', "expected a JSON object"),
    ('{"id": "b3", "title": "no text here"}', "row has no text"),
    ('{"id": "b4", "text": "   "}', "empty text"),
    (POOL_ROWS[0], "duplicate id 'm1'"),
]


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


def _pool_with_bad_rows(path):
    lines: list[bytes] = []
    expected = {}
    for i, row in enumerate(POOL_ROWS):
        lines.append(row.encode())
        if i < len(BAD_ROWS):
            lines.append(BAD_ROWS[i][0].encode())
            expected[len(lines)] = BAD_ROWS[i][1]
    lines.append(b'{"id": "b6", "text": "caf\xe9"}')
    expected[len(lines)] = "undecodable bytes"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    return expected


def test_skip_quarantines_every_bad_row(files):
    expected = _pool_with_bad_rows(files["pool"])
    result = _invoke(_args(files, "--method", "bm25", "--on-error", "skip"), files["cache"])
    assert result.exit_code == 0, result.stderr
    assert f"{len(expected)} bad rows skipped" in result.stderr
    quarantine = files["out"].with_name(files["out"].name + ".rejected.jsonl")
    rows = _read_jsonl(quarantine)
    assert {r["line"]: r["reason"] for r in rows}.keys() == expected.keys()
    for r in rows:
        assert expected[r["line"]] in r["reason"] and r["file"] == str(files["pool"]) and r["row"]
    assert [s["id"] for s in _read_jsonl(files["scores"])] == POOL_IDS

    # the same selection as on the clean file
    clean = files["pool"].with_name("clean.jsonl")
    clean.write_text("\n".join(POOL_ROWS) + "\n")
    first = files["out"].read_text()
    result = _invoke(["select", "--pool", str(clean), "--target", str(files["target"]), "--out",
                      str(files["out"]), "--method", "bm25", "--budget", "4"], files["cache"])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["id"] for x in first.splitlines()] == \
        [json.loads(x)["id"] for x in files["out"].read_text().splitlines()]


def test_fail_stops_at_the_first_bad_row(files):
    _pool_with_bad_rows(files["pool"])
    result = _invoke(_args(files, "--method", "bm25"), files["cache"])
    assert result.exit_code == 2
    assert f"{files['pool']}:2: broken JSON" in result.stderr
    assert not files["out"].exists()


def test_skip_with_every_row_bad_is_an_error(files):
    files["pool"].write_text('{"id": 1, "text": ""}\n{"oops"\n')
    result = _invoke(_args(files, "--method", "bm25", "--on-error", "skip"), files["cache"])
    assert result.exit_code == 2 and "no usable rows" in result.stderr
    assert not files["out"].exists()


def test_unknown_on_error_value(files):
    result = _invoke(_args(files, "--method", "bm25", "--on-error", "ignore"), files["cache"])
    assert result.exit_code == 4 and "--on-error" in result.stderr


def test_too_long_rows_truncate_or_refuse(files, model_dir):
    long_row = '{"id": "long", "text": "' + " ".join(["the cat sat on the mat"] * 20) + '"}'
    files["pool"].write_text("\n".join([*POOL_ROWS, long_row]) + "\n")
    base = _args(files, "--method", "hidden", "--model", str(model_dir), "--max-length", "40")
    result = _invoke(base, files["cache"])
    assert result.exit_code == 0 and "1 truncated to 40 tokens" in result.stderr

    result = _invoke([*base, "--too-long", "refuse"], files["cache"])
    assert result.exit_code == 2
    assert f"{files['pool']}:13: row has" in result.stderr and "over --max-length 40" in result.stderr

    result = _invoke([*base, "--too-long", "refuse", "--on-error", "skip"], files["cache"])
    assert result.exit_code == 0, result.stderr
    (rejected,) = _read_jsonl(files["out"].with_name(files["out"].name + ".rejected.jsonl"))
    assert rejected["line"] == 13 and rejected["row"] == long_row
    assert "long" not in [s["id"] for s in _read_jsonl(files["scores"])]
