"""The relevance benchmark's work dir: each finished target is kept, a rerun reads it instead of scoring again
(a crash loses one target at most), a record cut short is scored again, and other options never share
records."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from mona.bench import relevance
from mona.bench.options import RelevanceConfig
from mona.bench.relevance import record_dir, run_method, run_relevance
from mona.bench.suite import Suite, TargetSet
from mona.bench.sweep import SweepConfig
from mona.claims import claim
from mona.errors import ConfigError
from mona.selection.config import MethodOptions


def _suite() -> Suite:
    pool = ([{"id": f"d{i}", "text": f"add two numbers {i}"} for i in range(4)]
            + [{"id": f"c{i}", "text": f"bake a cake with flour {i}"} for i in range(4)])
    targets = [TargetSet("k/add", "k", [{"text": "add two numbers"}], {"d0", "d1"}),
               TargetSet("k/cake", "k", [{"text": "bake a cake"}], {"c0", "c1"})]
    return Suite(pool, targets, {"per_task": 2, "seed": 0})


def test_a_rerun_reads_finished_targets_and_scores_only_the_missing(tmp_path, monkeypatch):
    suite, options = _suite(), MethodOptions(method="bm25")
    records = record_dir(tmp_path / "work", "bm25", options, suite, 2, "fp32")
    first = run_method("bm25", options, suite, 2, tmp_path / "cache", log=lambda _: None, records=records)
    assert sorted(p.name for p in records.glob("*.json")) == ["k__add.json", "k__cake.json"]
    assert {p[0] for p in first.picks["k/add"]} == {"d"} and {p[0] for p in first.picks["k/cake"]} == {"c"}
    # a text scorer is charged its wall time and the pool rows it scored, once per target
    assert first.featurize_seconds > 0 and first.computed == 2 * len(suite.pool)

    calls = []
    real = relevance.compute_scores
    monkeypatch.setattr(relevance, "compute_scores", lambda *a, **kw: calls.append(a[1]) or real(*a, **kw))
    (records / "k__cake.json").write_text('{"target": "k/cake", "metr')  # a crash while writing
    lines = []
    again = run_method("bm25", options, suite, 2, tmp_path / "cache", log=lines.append, records=records)
    assert len(calls) == 1 and calls[0][0].text == "bake a cake"  # only the cut-short target was scored
    assert again.per_target == first.per_target and again.picks == first.picks
    assert again.computed == first.computed
    assert "from the work dir" in lines[0] and "from the work dir" not in lines[1]
    assert json.loads((records / "k__cake.json").read_text())["picks"] == first.picks["k/cake"]


def test_invocations_on_one_work_dir_share_the_targets(tmp_path, monkeypatch):
    suite, options = _suite(), MethodOptions(method="bm25")
    records = record_dir(tmp_path / "work", "bm25", options, suite, 2, "fp32")
    reference = run_method("bm25", options, suite, 2, tmp_path / "cache", log=lambda _: None,
                           records=tmp_path / "reference")
    calls = []
    real = relevance.compute_scores
    monkeypatch.setattr(relevance, "compute_scores", lambda *a, **kw: calls.append(a[1]) or real(*a, **kw))
    holding, left = threading.Event(), threading.Event()

    def other_process() -> None:  # holds k/add until this one has moved past it, then leaves its record
        with claim(records / "k__add.claim"):
            holding.set()
            left.wait(30)
            shutil.copy(tmp_path / "reference" / "k__add.json", records / "k__add.json")

    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if "left to" in line:
            left.set()

    thread = threading.Thread(target=other_process)
    thread.start()
    assert holding.wait(10)
    run = run_method("bm25", options, suite, 2, tmp_path / "cache", log=log, records=records)
    thread.join(10)
    assert [c[0].text for c in calls] == ["bake a cake"]  # k/add was the other's: waited for, then read
    assert "k/add" in lines[0] and "left to" in lines[0] and "k/cake" in lines[1]
    assert "k/add" in lines[2] and "from the work dir" in lines[2]
    assert run.per_target == reference.per_target and list(run.per_target) == ["k/add", "k/cake"]


def test_records_of_other_options_budgets_dtypes_or_suites_lie_apart(tmp_path):
    suite = _suite()
    base = record_dir(tmp_path, "dsir", MethodOptions(method="dsir"), suite, 2, "fp32")
    assert base == record_dir(tmp_path, "dsir", MethodOptions(method="dsir"), suite, 2, "fp32")
    other_suite = Suite(suite.pool, suite.targets, {**suite.config, "seed": 1})
    others = [record_dir(tmp_path, "dsir", MethodOptions(method="dsir", diversity=0.5), suite, 2, "fp32"),
              record_dir(tmp_path, "dsir", MethodOptions(method="dsir", seed=1), suite, 2, "fp32"),
              record_dir(tmp_path, "dsir", MethodOptions(method="dsir"), suite, 3, "fp32"),
              record_dir(tmp_path, "dsir", MethodOptions(method="dsir"), suite, 2, "bf16"),
              record_dir(tmp_path, "dsir", MethodOptions(method="dsir"), other_suite, 2, "fp32")]
    assert len({base, *others}) == 6


def test_a_sweep_refuses_a_work_dir(tmp_path):
    with pytest.raises(ConfigError, match="--work-dir"):
        run_relevance(RelevanceConfig(), "mona bench relevance --sweep", tmp_path, tmp_path, sweep=SweepConfig(),
                      work_dir=tmp_path / "work")


def test_targets_pick_a_half_names_or_patterns_and_refuse_what_matches_nothing():
    from mona.bench.relevance import pick_targets

    targets = [TargetSet("few-shot/a", "few-shot", [], set(), half="A"),
               TargetSet("few-shot/b", "few-shot", [], set(), half="B"),
               TargetSet("template/c", "template", [], set(), half="B")]
    suite = Suite([], targets, {"suite": "hard"})

    def names(spec: str) -> list[str]:
        return [t.name for t in pick_targets(suite, spec).targets]

    assert names("all") == ["few-shot/a", "few-shot/b", "template/c"]
    assert names("B") == ["few-shot/b", "template/c"]
    assert names("few-shot/*") == ["few-shot/a", "few-shot/b"]
    assert names("template/c, few-shot/a") == ["few-shot/a", "template/c"]  # in the suite's order
    assert pick_targets(suite, "A").config == suite.config  # records of a piece serve the whole run
    with pytest.raises(ConfigError, match="matches no target set"):
        pick_targets(suite, "mc-letter/*")


def test_the_report_says_where_records_from_the_work_dir_were_scored(tmp_path):
    suite, options = _suite(), MethodOptions(method="bm25")
    records = record_dir(tmp_path / "work", "bm25", options, suite, 2, "fp32")
    run_method("bm25", options, suite, 2, tmp_path / "cache", log=lambda _: None, records=records)
    assert json.loads((records / "k__add.json").read_text())["stats"]["machine"] == relevance.machine()
    # one record from another machine, one from before records kept it
    for name, machine in (("k__add.json", "other box, 1 torch threads"), ("k__cake.json", None)):
        record = json.loads((records / name).read_text())
        if machine is None:
            del record["stats"]["machine"]
        else:
            record["stats"]["machine"] = machine
        (records / name).write_text(json.dumps(record))
    run = run_method("bm25", options, suite, 2, tmp_path / "cache", log=lambda _: None, records=records)
    _, md = relevance.write_report([run], suite, 2, "mona bench relevance", tmp_path / "out")
    line = next(x for x in md.read_text().splitlines() if x.startswith("Machine:"))
    assert "(this invocation)" in line and "other box, 1 torch threads: 1 targets" in line
    assert "not recorded: 1 targets" in line
