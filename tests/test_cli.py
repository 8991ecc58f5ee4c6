"""`mona select` end to end on the tiny model and SAE: outputs, ranks, cache, seeds and bad inputs."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mona.cli import app

MONA = Path(sys.executable).parent / "mona"

# Pool rows in several formats, written with unusual spacing so "unchanged" is checkable.
POOL_ROWS = [
    '{"id": "m1", "instruction": "add two numbers", "input": "three plus four", "output": "seven"}',
    '{"id":"c1","text":"bake a cake with flour sugar eggs butter"}',
    '{"id": "x1",   "prompt": "tell me a story about a dog", "completion": "the dog ran in the park ."}',
    '{"id": "m2", "messages": [{"role": "user", "content": "what is the sum of two and five ?"},'
    ' {"role": "assistant", "content": "seven"}]}',
    '{"id": "c2", "conversations": [{"from": "human", "value": "soup recipe please"},'
    ' {"from": "gpt", "value": "mix salt pepper in a bowl , stir"}]}',
    '{"text": "hello world , the cat sat on the mat", "id": "x2"}',
    '{"id": "m3", "prompt": "multiply four times five", "response": "the answer is twenty"}',
    '{"id": "c3", "text": "stir the soup for five minutes"}',
    '{"id": "x3", "text": "please answer the question"}',
    '{"id": "m4", "text": "subtract two from three equals what ?"}',
    '{"id": "c4", "instruction": "bake bread", "output": "oven ten minutes"}',
    '{"id": "x4", "text": "the cat ran to the park"}',
]
POOL_IDS = ["m1", "c1", "x1", "m2", "c2", "x2", "m3", "c3", "x3", "m4", "c4", "x4"]
TARGET_ROWS = [
    {"instruction": "add three and four", "output": "seven"},
    {"instruction": "what is two times five ?", "output": "ten"},
    {"instruction": "divide four by two", "output": "two"},
]


def make_files(tmp_path: Path) -> dict[str, Path]:
    """The pool, target and output paths every CLI test uses."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(POOL_ROWS) + "\n", encoding="utf-8")
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps(r) + "\n" for r in TARGET_ROWS), encoding="utf-8")
    return {"pool": pool, "target": target, "out": tmp_path / "out" / "sel.jsonl",
            "scores": tmp_path / "out" / "scores.jsonl", "cache": tmp_path / "cache"}


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


def _args(files, *extra: str, budget: int | None = 4) -> list[str]:
    args = ["select", "--pool", str(files["pool"]), "--target", str(files["target"]), "--out", str(files["out"]),
            "--scores", str(files["scores"])]
    if budget is not None:
        args += ["--budget", str(budget)]
    return args + list(extra)


def _run(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([str(MONA), *args], capture_output=True, text=True, env=env, timeout=300)


def _invoke(args: list[str], cache: Path):
    return CliRunner().invoke(app, args, env={"MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_outputs(files, n: int) -> list[dict]:
    scores = _read_jsonl(files["scores"])
    assert [s["id"] for s in scores] == POOL_IDS  # one line per pool row, in pool order
    assert sorted(s["rank"] for s in scores) == list(range(1, len(POOL_IDS) + 1))
    assert sum(s["selected"] for s in scores) == n
    assert all(s["selected"] == (s["rank"] <= n) for s in scores)
    by_rank = sorted(scores, key=lambda s: s["rank"])
    for better, worse in itertools.pairwise(by_rank):  # score descending, ties by id
        assert (better["score"], worse["id"]) >= (worse["score"], better["id"])
    out_lines = files["out"].read_text().splitlines()
    raw = dict(zip(POOL_IDS, POOL_ROWS, strict=True))
    assert out_lines == [raw[s["id"]] for s in by_rank[:n]]  # unchanged rows, best first
    assert not list(files["out"].parent.glob(".*.tmp"))
    return scores


def test_select_mona_end_to_end_and_cache(files, model_dir, sae_dir):
    extra = ["--model", str(model_dir), "--sae", str(sae_dir)]
    first = _run(_args(files, *extra), files["cache"])
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    scores = _check_outputs(files, 4)
    values = [s["score"] for s in scores]
    assert all(0.0 <= v <= 1.0 for v in values)  # generalized Jaccard
    assert len(set(values)) > 6  # real, varied scores
    summary = [line for line in first.stderr.splitlines() if line.startswith("selected ")]
    assert len(summary) == 1 and "selected 4 of 12 rows with mona" in summary[0]
    assert "cache hits 0/15" in summary[0]
    shards = sorted(files["cache"].glob("features/mona-*/shard-*.npz"))
    assert shards
    out_before, scores_before = files["out"].read_text(), files["scores"].read_text()

    files["out"].unlink()
    files["scores"].unlink()
    second = _invoke(_args(files, *extra), files["cache"])  # in process: no second interpreter start-up
    assert second.exit_code == 0, second.stderr
    assert "cache hits 15/15" in second.stderr
    assert sorted(files["cache"].glob("features/mona-*/shard-*.npz")) == shards
    assert files["out"].read_text() == out_before
    assert files["scores"].read_text() == scores_before


def test_select_in_process_matches_and_uses_cache(files, model_dir, sae_dir):
    # whole vectors (--top-m 0): the top-m storage is for Jaccard only, other similarities read whole vectors
    extra = ["--model", str(model_dir), "--sae", str(sae_dir), "--ratio", "0.25", "--top-m", "0"]
    result = _invoke(_args(files, *extra, budget=None), files["cache"])
    assert result.exit_code == 0, result.stderr
    _check_outputs(files, 3)
    assert "cache hits 0/15" in result.stderr
    # a different similarity reuses the cached features, and ranks under its own scores
    result = _invoke(_args(files, *extra, "--similarity", "cosine", budget=None), files["cache"])
    assert result.exit_code == 0, result.stderr
    assert "cache hits 15/15" in result.stderr
    _check_outputs(files, 3)


def test_random_method_is_seeded(files, tmp_path):
    outputs = []
    for seed in ("1", "1", "2"):
        result = _invoke(_args(files, "--method", "random", "--seed", seed, "--show", "2"), files["cache"])
        assert result.exit_code == 0, result.stderr
        _check_outputs(files, 4)
        assert len(result.stdout.splitlines()) == 2 and result.stdout.lstrip().startswith("1.")
        outputs.append((files["out"].read_text(), files["scores"].read_text()))
    assert outputs[0] == outputs[1]
    assert outputs[0][1] != outputs[2][1]
    assert not files["cache"].exists()  # random needs no features


def _broken_json(files):
    files["pool"].write_text("\n".join([*POOL_ROWS[:2], '{"id": "bad", "text": "oops"', *POOL_ROWS[3:]]) + "\n")
    return [], f"{files['pool']}:3:"


def _no_text_field(files):
    files["target"].write_text('{"instruction": "add"}\n{"title": "no text"}\n')
    return [], f"{files['target']}:2:"


def _empty_text(files):
    files["pool"].write_text("\n".join([*POOL_ROWS[:4], '{"id": "e", "text": "  "}']) + "\n")
    return [], f"{files['pool']}:5:"


def _empty_target(files):
    files["target"].write_text("")
    return [], str(files["target"])


def _duplicate_ids(files):
    files["pool"].write_text("\n".join([*POOL_ROWS, POOL_ROWS[1]]) + "\n")
    return [], f"{files['pool']}:13:"


def _undecodable_bytes(files):
    data = ("\n".join(POOL_ROWS[:3]) + "\n").encode() + b'{"id": "u", "text": "caf\xe9"}\n'
    files["pool"].write_bytes(data)
    return [], f"{files['pool']}:4: undecodable bytes"


def _ratio_outside(files):
    return ["--ratio", "1.5"], "--ratio"


def _missing_pool(files):
    files["pool"].unlink()
    return [], str(files["pool"])


def _budget_too_large(files):
    return ["--budget", "13"], "larger than the pool (12 rows)"


def _unknown_method(files):
    return ["--method", "nope"], "unknown method 'nope'"


def _both_budgets(files):
    return ["--budget", "2", "--ratio", "0.5"], "exactly one of --ratio or --budget"


def _missing_sae(files):
    return ["--sae", str(files["pool"].parent / "no-sae")], str(files["pool"].parent / "no-sae")


@pytest.mark.parametrize("case", [_broken_json, _no_text_field, _empty_text, _empty_target, _duplicate_ids,
                                  _undecodable_bytes, _ratio_outside, _missing_pool, _budget_too_large,
                                  _unknown_method, _both_budgets, _missing_sae])
def test_bad_input_fails_cleanly(files, case):
    extra, expected = case(files)
    budget = None if "--budget" in extra or "--ratio" in extra else 4
    result = _invoke(_args(files, *extra, budget=budget), files["cache"])
    assert result.exit_code not in (0, None)
    assert isinstance(result.exception, SystemExit)  # a handled error, not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not files["out"].exists() and not files["scores"].exists()
    assert not (files["out"].parent.exists() and list(files["out"].parent.iterdir()))


def test_sae_layer_mismatch_fails_cleanly(files, model_dir, sae_dir):
    result = _invoke(_args(files, "--model", str(model_dir), "--sae", str(sae_dir), "--layer", "0"),
                     files["cache"])
    assert result.exit_code not in (0, None) and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(sae_dir) in lines[0] and "layer" in lines[0]
    assert not files["out"].exists() and not files["scores"].exists()


def test_real_process_reports_bad_row_in_one_line(files):
    # The message holds '[/input/output]', which a console markup parser would choke on.
    files["pool"].write_text(POOL_ROWS[0] + "\n" + '{"id": "z", "body": "no text"}\n')
    proc = _run(_args(files, "--method", "random", budget=1), files["cache"])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(rf"error: {re.escape(str(files['pool']))}:2: row has no text", lines[0])
    assert "instruction[/input/output]" in lines[0]
    assert not files["out"].exists() and not files["scores"].exists()


def test_non_jsonl_pool_rows_are_written_as_json(files):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": f"r{i}", "text": t, "n": i} for i, t in enumerate(["hello world", "bake a cake", "add two"])]
    pool = files["pool"].with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist(rows), pool)
    args = ["select", "--pool", str(pool), "--target", str(files["target"]), "--out", str(files["out"]),
            "--scores", str(files["scores"]), "--ratio", "1", "--method", "random"]
    result = _invoke(args, files["cache"])
    assert result.exit_code == 0, result.stderr
    ranked = sorted(_read_jsonl(files["scores"]), key=lambda s: s["rank"])
    by_id = {r["id"]: r for r in rows}
    assert _read_jsonl(files["out"]) == [by_id[s["id"]] for s in ranked]


@pytest.mark.parametrize(("model", "code", "expected"), [
    ("/nonexistent/model", 3, "/nonexistent/model: no such model directory or file"),
    ("missing.gguf", 3, "missing.gguf: no such model directory or file"),
    ("nobody/no-such-model", 4, "cannot load model 'nobody/no-such-model' (not a local path"),
])
def test_unknown_model_fails_cleanly(files, model, code, expected):
    result = _invoke(_args(files, "--method", "hidden", "--model", model), files["cache"])
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert not files["out"].exists()
