"""`mona bench downstream` on the tiny model: a hand-made pool, targets and evaluation rows; end to end with two
methods, resume without redoing finished steps, the report, and the held-out split."""

from __future__ import annotations

import json
import random

import pytest

import mona.bench.downstream as downstream
from mona.bench.downstream import (
    DownstreamConfig,
    DownstreamData,
    DownstreamTask,
    conclusion,
    held_out,
    run_downstream,
    write_report,
)
from mona.errors import ConfigError

MATH_Q = ["what is two plus two ?", "what is three plus two ?", "add two numbers", "what is four minus two ?",
          "multiply three times two", "what is the sum of two numbers ?"]
MATH_A = ["four .", "five .", "the sum .", "two .", "five .", "the sum ."]
COOK_Q = ["bake a cake", "mix flour sugar eggs", "stir the soup", "salt and pepper the soup"]
COOK_A = ["mix flour sugar eggs butter .", "bake a cake .", "stir the soup .", "the soup ."]


def _rows(prefix: str, group: str, qs: list[str], answers: list[str], n: int) -> list[dict]:
    return [{"id": f"{prefix}{i}", "instruction": qs[i % len(qs)] + (" please" if i >= len(qs) else ""),
             "output": answers[i % len(answers)], "group": group} for i in range(n)]


def _data() -> DownstreamData:
    pool = _rows("m", "math", MATH_Q, MATH_A, 8) + _rows("c", "cook", COOK_Q, COOK_A, 8)
    random.Random(0).shuffle(pool)
    targets = _rows("tm", "math", MATH_Q[:3], MATH_A[:3], 3)
    evals = [{"id": "e0", "instruction": "what is two plus two ?\nOptions:\n- four\n- five", "output": "four",
              "group": "math"},
             {"id": "e1", "instruction": "what is three plus two ?", "output": "five .", "group": "math"}]
    return DownstreamData(pool, [DownstreamTask("math", targets, evals)], {"pool_size": len(pool), "per_task": 8,
                                                                            "n_target": 3, "eval_rows": 2, "seed": 0,
                                                                            "tasks": ["math"]})


@pytest.fixture
def counting(monkeypatch):
    """Count the fine-tuning and evaluation calls the benchmark makes."""
    calls = {"finetune": 0, "evaluate": 0}
    real_ft, real_eval = downstream.finetune, downstream.evaluate

    def ft(*args, **kwargs):
        calls["finetune"] += 1
        return real_ft(*args, **kwargs)

    def ev(*args, **kwargs):
        calls["evaluate"] += 1
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(downstream, "finetune", ft)
    monkeypatch.setattr(downstream, "evaluate", ev)
    return calls


def test_end_to_end_resume_and_report(tmp_path, model_dir, sae_dir, cache_env, counting):
    data = _data()
    config = DownstreamConfig(methods=("mona", "random"), random_seeds=(0, 1), budget=6, model=str(model_dir),
                              sae=str(sae_dir), epochs=1, max_new_tokens=4)
    work = tmp_path / "run"
    logs: list[str] = []
    results = run_downstream(data, config, work, cache_env, log=logs.append)
    # base + (mona, random-s0, random-s1): three fine-tunes, four evaluations
    assert counting == {"finetune": 3, "evaluate": 4}
    task = results["tasks"][0]
    assert [r["label"] for r in task["runs"]] == ["mona", "random-s0", "random-s1"]
    assert task["relevant_in_pool"] == 8 and task["eval_rows"] == 2 and task["majority_accuracy"] == 0.5
    assert all(0.5 <= r["top_answer_share"] <= 1.0 for r in task["runs"])
    for r in task["runs"]:
        selected = [json.loads(line) for line in (work / "math" / r["label"] / "selection.jsonl").open()]
        assert len(selected) == 6
        assert r["relevant_share"] == sum(row["group"] == "math" for row in selected) / 6
        assert 0.0 <= r["accuracy"] <= 1.0
        assert (work / "math" / r["label"] / "ft" / "adapter" / "adapter_config.json").exists()
    # mona ranks the math rows first for math targets on this pool
    assert task["runs"][0]["relevant_share"] >= 0.5
    assert any("fine-tuning" in line and line.startswith("[0:") for line in logs)

    # A re-run redoes nothing and gives the same numbers.
    mtimes = {p: p.stat().st_mtime_ns for p in work.rglob("*.json") if p.name != "results.json"}
    again = run_downstream(data, config, work, cache_env, log=lambda _m: None)
    assert counting == {"finetune": 3, "evaluate": 4}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert again["tasks"] == results["tasks"]

    # A lost evaluation: --report-only leaves that run out and runs nothing; a re-run redoes it alone.
    (work / "math" / "random-s1" / "eval.json").unlink()
    partial = run_downstream(data, config, work, cache_env, log=lambda _m: None, only_finished=True)
    assert counting == {"finetune": 3, "evaluate": 4}
    assert not partial["complete"] and [r["label"] for r in partial["tasks"][0]["runs"]] == ["mona", "random-s0"]
    _, partial_md = write_report(partial, "mona bench downstream --report-only", 1.0, tmp_path / "out", "partial")
    assert "Partial report" in partial_md.read_text() and "(1 of 2 seeds)" in partial_md.read_text()
    run_downstream(data, config, work, cache_env, log=lambda _m: None)
    assert counting == {"finetune": 3, "evaluate": 5}

    json_path, md_path = write_report(results, "mona bench downstream --test", 12.5, tmp_path / "out", "down")
    md = md_path.read_text()
    assert "Command: `mona bench downstream --test`" in md and "random mean ± std" in md
    assert "| math | 0.500 |" in md and "## Conclusion" in md and "beats random's mean on" in md
    assert "fine-tuned runs gave the same answer to at least 90 % of the rows" in md
    report = json.loads(json_path.read_text())
    assert report["summary"][0]["random"]["seeds"] == [r["accuracy"] for r in task["runs"][1:]]
    assert report["wall_seconds"] == 12.5


def test_held_out_rows_avoid_pool_and_targets():
    rows = [{"id": str(i), "instruction": f"q {i % 30}", "output": "a"} for i in range(60)]
    pool = rows[:10]
    targets, evals = held_out(rows, pool, 5, 15, random.Random(0))
    pool_texts = {r["instruction"] for r in pool}
    assert len(targets) == 5 and len(evals) == 15
    assert not {r["instruction"] for r in evals} & (pool_texts | {r["instruction"] for r in targets})
    assert len({r["instruction"] for r in evals}) == 15
    assert held_out(rows, pool, 5, 15, random.Random(0)) == (targets, evals)


def test_conclusion_is_computed_from_the_numbers():
    def task(name, mona, randoms):
        runs = [{"method": "mona", "accuracy": mona}] + [{"method": "random", "accuracy": a} for a in randoms]
        return {"name": name, "eval_rows": 100, "base": {"accuracy": 0.5}, "runs": runs}

    results = {"methods": ["mona", "random"], "tasks": [task("a", 0.9, [0.5, 0.52, 0.48]),
                                                        task("b", 0.5, [0.5, 0.6, 0.4])]}
    text = " ".join(conclusion(results))
    assert "mona beats random's mean on 1 of 2 tasks (by more than 2 std of random's seeds on 1)" in text
    assert "tasks: mona 1 of 2, random 0 of 2." in text
    assert "MoNA minus random's mean, per task: +0.400, +0.000 (mean +0.200); 1 of 2 exceed" in text


def test_bad_config_is_refused():
    with pytest.raises(ConfigError):
        DownstreamConfig(methods=("mona",), budget=0).check()
    with pytest.raises(ConfigError):
        DownstreamConfig(epochs=0).check()
