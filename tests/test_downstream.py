"""`mona bench downstream` on the tiny model: a hand-made pool and two tasks end to end in both settings (shared
fine-tunes, resume without redoing finished steps, the partial report), the target formats, the paired
statistics and verdicts, the options generated from DownstreamConfig, and the real design's held-out split."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil

import pytest
import typer

import mona.bench.downstream as downstream
from mona.bench.downstream import (
    TASKS,
    DownstreamData,
    DownstreamTask,
    TaskSpec,
    _eval_row,
    _targets,
    answer_form,
    check,
    plan,
    run_downstream,
)
from mona.bench.downstream_report import TaskStats, conclusion, write_report
from mona.bench.options import DownstreamConfig
from mona.claims import CLAIM_FILE, claim
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
    """Two target tasks (math, cook), each with 8 pool rows; `sums` is related to math."""
    pool = (_rows("m", "math", MATH_Q, MATH_A, 8) + _rows("c", "cook", COOK_Q, COOK_A, 8)
            + _rows("s", "sums", MATH_Q[::-1], MATH_A[::-1], 4))
    random.Random(0).shuffle(pool)
    math = TaskSpec("math", "math", "in-format", related=("sums",))
    cook = TaskSpec("cook", "cook", "in-format", related=())
    math_evals = [{"id": "e0", "instruction": "what is two plus two ?\nOptions:\n- four\n- five", "output": "four"},
                  {"id": "e1", "instruction": "what is three plus two ?", "output": "five ."}]
    cook_evals = [{"id": "e2", "instruction": "bake a cake", "output": "mix flour sugar eggs ."},
                  {"id": "e3", "instruction": "stir the soup", "options": ["stir", "bake"], "output": "stir"}]
    tasks = [DownstreamTask(math, _rows("tm", "math", MATH_Q[:3], MATH_A[:3], 3), math_evals,
                            {r["id"] for r in pool if r["group"] == "math"}),
             DownstreamTask(cook, _rows("tc", "cook", COOK_Q[:3], COOK_A[:3], 3), cook_evals,
                            {r["id"] for r in pool if r["group"] == "cook"})]
    design = {"pool_size": len(pool), "per_task": 8, "n_target": 3, "eval_rows": 2, "max_chars": 200, "seed": 0,
              "tasks": [], "distractors": ["sums"], "groups": 3}
    return DownstreamData(pool, tasks, design)


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


def _config(model_dir, sae_dir, **kw) -> DownstreamConfig:
    base = {"tasks": "math,cook", "methods": "mona,random", "random_seeds": "0,1", "second_seed": "mona",
            "ratio": 0.25, "ratio_figure": "0.5", "ratio_tasks": "math", "model": str(model_dir),
            "sae": str(sae_dir), "batch_tokens": 256}
    return DownstreamConfig(**(base | kw))


def test_end_to_end_resume_and_report(tmp_path, model_dir, sae_dir, cache_env, counting):
    data = _data()
    config = _config(model_dir, sae_dir)
    work = tmp_path / "run"
    logs: list[str] = []
    results = run_downstream(data, config, work, cache_env, log=logs.append)
    assert results["complete"] and results["budget"] == 5  # 25 % of 20 rows, in both settings
    runs = {(r["setting"], r["task"], r["label"]): r for r in results["runs"]}
    # per task: mona, random-s0, random-s1; in the present setting mona-ft1, and for math the 50 % figure runs
    assert len(runs) == 2 * 2 * 3 + 2 + 3
    assert ("absent", "math", "mona-ft1") not in runs
    assert {lb for s, t, lb in runs if t == "math" and s == "present"} >= {"mona-50pct", "random-s1-50pct"}
    # random's present-setting selection is the same rows for both tasks: trained once, evaluated per task
    assert runs["present", "math", "random-s0"]["adapter"] == runs["present", "cook", "random-s0"]["adapter"]
    assert runs["absent", "math", "random-s0"]["adapter"] != runs["present", "math", "random-s0"]["adapter"]
    adapters = {r["adapter"] for r in results["runs"]}
    assert counting == {"finetune": len(adapters), "evaluate": len(runs) + 2}  # + the base model per task
    assert len(adapters) < len(runs)
    for (setting, task, label), r in runs.items():
        chosen = [json.loads(line) for line in (work / setting / task / label / "selection.jsonl").open()]
        assert len(chosen) == (10 if label.endswith("50pct") else 5) == r["rows"]
        assert r["task_share"] == sum(row["group"] == task for row in chosen) / len(chosen)
        if setting == "absent":  # the task's own rows are not in its absent pool
            assert r["task_share"] == 0
        ev = r["eval"]
        assert len(ev["row_nll"]) == len(ev["row_tokens"]) == 2 and ev["nll"] > 0
        assert ev["nll"] == pytest.approx(sum(ev["row_nll"]) / sum(ev["row_tokens"]), abs=1e-5)
    assert runs["present", "math", "mona-ft1"]["ft_seed"] == 1
    # mona finds the math rows for math targets on this pool, and the related rows when they are absent
    assert runs["present", "math", "mona"]["task_share"] >= 0.6
    assert runs["absent", "math", "mona"]["related_share"] >= 0.4
    assert any("fine-tuning" in line and line.startswith("[0:") for line in logs)

    # A re-run redoes nothing and gives the same numbers.
    mtimes = {p: p.stat().st_mtime_ns for p in work.rglob("*.json") if p.name != "results.json"}
    again = run_downstream(data, config, work, cache_env, log=lambda _m: None)
    assert counting == {"finetune": len(adapters), "evaluate": len(runs) + 2}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert again["runs"] == results["runs"]

    # The records alone (no adapters, no selected rows, no pool), carried to another work dir, are the whole
    # results there; a run whose evaluation is lost rebuilds its rows from the ids and trains again.
    carried = tmp_path / "carried"
    for path in work.rglob("*"):
        bulky = "adapters" in path.parts or path.name in ("selection.jsonl", "predictions.json", "pool.jsonl")
        if path.is_file() and not bulky:
            (carried / path.relative_to(work)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, carried / path.relative_to(work))
    moved = run_downstream(data, config, carried, cache_env, log=lambda _m: None)
    assert counting == {"finetune": len(adapters), "evaluate": len(runs) + 2}
    assert moved["runs"] == results["runs"] and moved["span_seconds"] == results["span_seconds"]
    (carried / "present" / "math" / "mona" / "eval.json").unlink()
    redone = run_downstream(data, config, carried, cache_env, log=lambda _m: None)
    assert counting == {"finetune": len(adapters) + 1, "evaluate": len(runs) + 3}
    assert (carried / "present" / "math" / "mona" / "selection.jsonl").read_bytes() == (
        work / "present" / "math" / "mona" / "selection.jsonl").read_bytes()
    assert [x for r in redone["runs"] for x in r["eval"]["row_nll"]] == pytest.approx(
        [x for r in results["runs"] for x in r["eval"]["row_nll"]], abs=1e-4)
    (carried / "tasks" / "math" / "eval.jsonl").write_text((carried / "tasks" / "cook" / "eval.jsonl").read_text())
    with pytest.raises(ConfigError, match="other data"):
        run_downstream(data, config, carried, cache_env, log=lambda _m: None)

    # A lost evaluation: only_finished runs nothing and lists it; a re-run redoes that evaluation alone.
    (work / "absent" / "cook" / "random-s1" / "eval.json").unlink()
    partial = run_downstream(data, config, work, cache_env, log=lambda _m: None, only_finished=True)
    assert counting["evaluate"] == len(runs) + 3
    assert partial["missing"] == ["absent cook random-s1"] and not partial["complete"]
    (work / "tasks" / "math" / "base" / "eval.json").rename(work / "base.json")
    lost = run_downstream(data, config, work, cache_env, log=lambda _m: None, only_finished=True)["missing"]
    assert lost == ["math base", "absent cook random-s1"]  # the base model once, not once per setting
    (work / "base.json").rename(work / "tasks" / "math" / "base" / "eval.json")
    json_path, md_path = write_report(partial, "mona bench downstream --test", 3.0, tmp_path / "out",
                                      tmp_path / "fig", "partial")
    md = md_path.read_text()
    # the dtype the runs trained in, with its count
    assert f": {len(partial['runs'])} fine-tunes (one dtype for every piece" in md
    assert "Partial report" in md and "- absent cook: random-s1" in md and "(1 of 2 seeds)" in md
    assert "## Against random" in md and "## MoNA against each baseline" not in md  # no baseline but random
    assert (tmp_path / "fig" / "partial.png").stat().st_size > 0 and (tmp_path / "fig" / "partial-ratio.png").exists()
    assert "![NLL change against random](../fig/partial.png)" in md
    report = json.loads(json_path.read_text())
    assert report["summary"][0]["task"] == "math" and report["wall_seconds"] == 3.0
    run_downstream(data, config, work, cache_env, log=lambda _m: None)
    assert counting["evaluate"] == len(runs) + 4 and counting["finetune"] == len(adapters) + 1


@pytest.fixture
def fake_steps(monkeypatch):
    """Selection, fine-tune and evaluation replaced by instant fakes (mona's selection fails); counts the
    fine-tunes."""
    calls = {"finetune": 0}

    def selection(pool, task, run, n, config, cache_dir):
        if run.method == "mona":
            raise ConfigError("no SAE here")
        return pool[run.seed: run.seed + n], 0.0  # each seed its own rows, so its own fine-tune

    def finetune(data, out, config):
        calls["finetune"] += 1
        (out / "adapter").mkdir(parents=True)
        (out / "adapter" / "adapter_config.json").write_text("{}")
        summary = {"finished": True, "seconds": 1.0, "tokens": 10, "rows_truncated": 0, "epoch_losses": [1.0]}
        (out / "train.json").write_text(json.dumps(summary))
        return summary

    def evaluate(path, **kwargs):
        preds = [{"nll": 1.0, "answer_tokens": 1}]
        return {"n": 1, "nll": 1.0, "accuracy": None, "by_kind": {}, "seconds": 0.1, "predictions": preds}

    monkeypatch.setattr(downstream, "_selection", selection)
    monkeypatch.setattr(downstream, "finetune", finetune)
    monkeypatch.setattr(downstream, "evaluate", evaluate)
    return calls


def test_a_failing_method_leaves_the_others_running(tmp_path, fake_steps):
    config = DownstreamConfig(tasks="math", settings="present", methods="mona,random", random_seeds="0",
                              second_seed="", ratio=0.25, ratio_tasks="")
    results = run_downstream(_data(), config, tmp_path / "run", log=lambda _m: None)
    assert [r["label"] for r in results["runs"]] == ["random-s0"]
    assert results["failed"] == ["present math mona: ConfigError: no SAE here"] and not results["complete"]


def test_steps_claimed_by_another_process_are_left_to_it(tmp_path, fake_steps):
    config = DownstreamConfig(tasks="math", settings="present", methods="random", random_seeds="0,1",
                              second_seed="", ratio=0.25, ratio_tasks="")
    work = tmp_path / "run"
    # another worker on the same work dir holds random-s0's step and the math base model's evaluation
    with claim(work / "present" / "math" / "random-s0" / CLAIM_FILE) as mine, \
            claim(work / "tasks" / "math" / "base" / CLAIM_FILE):
        assert mine
        logged: list[str] = []
        results = run_downstream(_data(), config, work, log=logged.append)
        reported: list[str] = []  # --report-only says which missing steps are running
        run_downstream(_data(), config, work, log=reported.append, only_finished=True)
        assert f"present math random-s0: running now, pid {os.getpid()}" in " ".join(reported)
    assert [r["label"] for r in results["runs"]] == ["random-s1"]
    assert results["busy"] == ["math base", "present math random-s0"] and not results["complete"]
    assert results["bases"] == {} and fake_steps["finetune"] == 1
    assert any(f"random-s0: left to pid {os.getpid()}" in m for m in logged)
    # released (the worker finished or died): a re-run does the two steps, and the finished one is only read
    results = run_downstream(_data(), config, work, log=lambda _m: None)
    assert [r["label"] for r in results["runs"]] == ["random-s0", "random-s1"] and results["complete"]
    assert fake_steps["finetune"] == 2 and "math" in results["bases"]


def _summary(row_nll, tokens) -> dict:
    return {"nll": sum(row_nll) / sum(tokens), "row_nll": list(row_nll), "row_tokens": list(tokens)}


def _run(label, method, row_nll, tokens, ft_seed=0) -> dict:
    return {"label": label, "method": method, "ft_seed": ft_seed, "figure": False,
            "eval": _summary(row_nll, tokens)}


def test_paired_differences_intervals_and_verdicts():
    rng = random.Random(0)
    tokens = [rng.randint(1, 4) for _ in range(200)]
    noise = [rng.gauss(0, 1) for _ in tokens]
    random_rows = [[2.0 * t + n + s for t, n in zip(tokens, noise, strict=True)] for s in (-0.02, 0.0, 0.02)]
    runs = [_run(f"random-s{i}", "random", rows, tokens) for i, rows in enumerate(random_rows)]
    mean_rows = [sum(col) / 3 for col in zip(*random_rows, strict=True)]
    # better: 0.5 less per token on every row; noisy: -0.5 per token on average but spread over rows
    runs.append(_run("mona", "mona", [m - 0.5 * t for m, t in zip(mean_rows, tokens, strict=True)], tokens))
    wobble = [rng.gauss(-0.5, 6) * t for t in tokens]
    runs.append(_run("bm25", "bm25", [m + w for m, w in zip(mean_rows, wobble, strict=True)], tokens))
    runs.append(_run("dense", "dense", [m + 0.3 * t for m, t in zip(mean_rows, tokens, strict=True)], tokens))
    # a second fine-tune seed of mona's selection, 0.05 per token off the first
    runs.append(_run("mona-ft1", "mona", [m - 0.45 * t for m, t in zip(mean_rows, tokens, strict=True)], tokens,
                     ft_seed=1))
    s = TaskStats("present", "math", runs, _summary(mean_rows, tokens))
    d, verdict = s.verdict("mona")
    assert d.value == pytest.approx(-0.5) and d.lo == pytest.approx(-0.5) and d.hi == pytest.approx(-0.5)
    assert verdict == "better"
    d, verdict = s.verdict("bm25")
    assert d.lo < 0 < d.hi and verdict == "tie"
    assert s.verdict("dense")[1] == "worse"
    assert s.seed_std() == pytest.approx(0.02 / (sum(tokens) / len(tokens)), rel=1e-6)
    assert s.diff("mona", "dense").value == pytest.approx(-0.8) and s.diff("mona", "dense").sign == -1
    # a seed spread larger than the gain makes it a tie even with a tight interval
    spread = [_run(f"random-s{i}", "random", [m + sh * t for m, t in zip(mean_rows, tokens, strict=True)], tokens)
              for i, sh in enumerate((-0.4, 0.0, 0.4))]
    wide = TaskStats("present", "math", [*spread, runs[3]], None)
    assert s.diff("mona-ft1", "mona").value == pytest.approx(0.05)
    assert wide.verdict("mona")[1] == "tie"
    results = {"config": {"methods": "mona,bm25,dense,random", "ratio_tasks": ""}, "tasks": [{"name": "math"}],
               "runs": [{**r, "setting": "present", "task": "math"} for r in runs], "bases": {}, "missing": []}
    lines = conclusion(results)
    assert lines[0].startswith("In short: fine-tuning on mona's selection gave a lower NLL than random beyond noise "
                               "on 1 of 1 task-settings and a higher one on 0; no other method did so on more "
                               "task-settings. Of mona's 2 differences with a baseline, 0 are smaller than the "
                               "0.050 that a second fine-tune seed alone moves the NLL on average, and 2 larger than "
                               "the most it moved (0.050).")
    text = " ".join(lines)
    assert "mona on 1 of 1 (math (present))" in text and "dense on 0 of 1, worse on 1" in text
    assert "MoNA against each baseline, task-settings won-tied-lost (paired 95 % interval of the NLL difference): " \
           "bm25 0-1-0, dense 1-0-0." in text


def test_answer_form_counts_exact_and_other_case_answers_and_enters_the_conclusion():
    spec = TaskSpec("yn", "yn", "few-shot", answers=("Yes", "No"), related=())
    task = DownstreamTask(spec, [], [{"id": "e0", "output": "Yes"}, {"id": "e1", "output": "No"}], set())
    pool = [{"id": "a", "output": "Yes"}, {"id": "b", "output": " no"}, {"id": "c", "output": "maybe"},
            {"id": "d", "output": "No"}]
    assert answer_form(["a", "b", "c", "d"], pool, task) == {"exact": 0.5, "other_case": 0.25}
    open_answers = DownstreamTask(TaskSpec("open", "open", "template", related=()), [],
                                  [{"id": f"e{i}", "output": str(i)} for i in range(11)], set())
    assert answer_form(["a"], pool, open_answers) is None
    # five runs at the main budget whose NLL falls as their exact share rises; a 1 % run and a second fine-tune
    # seed that would break the order stay out of the correlation
    tokens = [1] * 10
    runs = [{**_run(f"m{i}", f"m{i}", [3.0 - 0.4 * i] * 10, tokens), "ratio": 0.05,
             "answer_form": {"exact": i / 5, "other_case": 0.0}} for i in range(5)]
    runs += [{**_run("m0-1pct", "m0", [0.1] * 10, tokens), "ratio": 0.01,
              "answer_form": {"exact": 0.0, "other_case": 0.0}},
             {**_run("m0-ft1", "m0", [0.1] * 10, tokens, ft_seed=1), "ratio": 0.05,
              "answer_form": {"exact": 0.0, "other_case": 0.0}}]
    results = {"config": {"methods": ",".join(f"m{i}" for i in range(5)), "ratio_tasks": "", "ratio": 0.05},
               "tasks": [{"name": "yn"}], "runs": [{**r, "setting": "present", "task": "yn"} for r in runs],
               "bases": {}, "missing": []}
    assert "-1.00 on yn (present, 5 runs)" in " ".join(conclusion(results))


def test_the_conclusion_says_where_finding_the_task_raised_the_nll():
    tokens = [1] * 10

    def results(nll_per_share):
        # five runs at the main budget, the i-th with i/10 of its rows from the task and i/10 from related tasks
        runs = [{**_run(f"m{i}", f"m{i}", [nll_per_share(i)] * 10, tokens), "ratio": 0.05,
                 "task_share": i / 10, "related_share": i / 10} for i in range(5)]
        return {"config": {"methods": ",".join(f"m{i}" for i in range(5)), "ratio_tasks": "", "ratio": 0.05},
                "tasks": [{"name": "t"}], "runs": [{**r, "setting": "absent", "task": "t"} for r in runs],
                "bases": {}, "missing": []}

    hurt = " ".join(conclusion(results(lambda i: 1.0 + 0.3 * i)))
    assert "+1.00 on t (absent, 5 runs)" in hurt
    assert "the more of the task a selection found the worse it did: t (absent, +1.00)" in hurt
    helped = " ".join(conclusion(results(lambda i: 3.0 - 0.3 * i)))
    assert "-1.00 on t (absent, 5 runs)" in helped and "found the worse" not in helped


def test_target_formats():
    rows = [{"id": f"r{i}", "instruction": f"Is {i} even?\nOptions:\n- Yes\n- No", "output": "Yes"} for i in range(15)]
    letter = TaskSpec("x", "x", "mc-letter", related=())
    ev = _eval_row(letter, rows[0], rows, random.Random(0))
    assert ev["output"] == "(A)" and ev["options"] == ["(A)", "(B)"] and "(B) No" in ev["instruction"]
    assert _targets(letter, rows, 2)[1]["completion"] == "(A)"
    few = TaskSpec("x", "x", "few-shot", related=(), answers=("Yes", "No"))
    plain = [{"id": f"p{i}", "instruction": f"q{i}", "output": "No"} for i in range(15)]
    targets = _targets(few, plain, 5)
    assert len(targets) == 5 and targets[1]["text"].startswith("Q: q3\nA: No\n\nQ: q4")
    ev = _eval_row(few, {"id": "e", "instruction": "q99", "output": "Yes"}, plain, random.Random(0))
    assert ev["instruction"].count("Q: ") == 3 and ev["instruction"].endswith("Q: q99\nA:")
    assert ev["options"] == ["Yes", "No"] and ev["output"] == "Yes"
    template = TaskSpec("x", "x", "template", related=())
    ev = _eval_row(template, rows[0], rows, random.Random(0))
    assert ev["instruction"].endswith("### Response:") and ev["options"] == ["Yes", "No"]
    assert _targets(template, rows, 1)[0]["text"].endswith("### Response:\nYes")


def test_balanced_rows_keep_their_order():
    rows = [{"id": str(i), "output": a} for i, a in enumerate("YYYYNYNNYNX")]
    picked = downstream._balanced(rows, ("Y", "N"), 5)
    assert [r["id"] for r in picked] == ["0", "1", "2", "4", "6"]  # Y takes the odd one; X is no answer
    assert downstream._balanced(rows, ("Y", "N"), 12) == []


def test_plan_and_checks():
    config = DownstreamConfig()
    labels = [r.label for r in plan(config, "present", "strategyqa")]
    assert labels[:12] == ["mona", "mona-paper", "dense", "bm25", "hidden", "dsir", "rds", "llm2vec", "mates",
                           "random-s0", "random-s1", "random-s2"]
    assert labels[12:14] == ["mona-ft1", "hidden-ft1"] and "random-s2-10pct" in labels and "mona-1pct" in labels
    assert [r.label for r in plan(config, "absent", "strategyqa")] == labels[:12]
    assert not any(r.figure for r in plan(config, "present", "vitaminc"))
    check(config)
    for bad in ({"methods": ""}, {"tasks": "nope"}, {"settings": "both"}, {"ratio": 0}, {"ratio_figure": "x"},
                {"epochs": 0}, {"methods": "mona,unknown"}):
        with pytest.raises(ConfigError):
            check(dataclasses.replace(config, **bad))
    # at least six tasks, at least half with targets in another format than the pool's rows
    assert len(TASKS) >= 6 and sum(t.kind != "in-format" for t in TASKS) * 2 >= len(TASKS)


def test_cli_options_are_the_dataclass_fields():
    from mona.cli import app

    cmd = typer.main.get_command(app).commands["bench"].commands["downstream"]
    params = {p.name: p for p in cmd.params}
    for f in dataclasses.fields(DownstreamConfig):
        assert params[f.name].default == f.default and params[f.name].help.startswith(f.metadata["help"])


@pytest.mark.integration
def test_real_design_holds_out_evaluation_rows():
    from mona.bench.downstream import build_data

    config = DownstreamConfig()
    data = build_data(config)
    assert len(data.pool) >= 5000
    pool_ids = {r["id"] for r in data.pool}
    pool_texts = {" ".join(r["instruction"].split()).casefold() for r in data.pool}
    for task in data.tasks:
        assert len(task.eval_rows) == 200 and len(task.targets) == 5
        assert len(task.pool_ids) / len(data.pool) <= 0.02
        assert not {r["id"] for r in task.eval_rows} & pool_ids
        assert len({r["instruction"] for r in task.eval_rows}) == 200
        if task.spec.kind == "in-format":
            assert not {" ".join(r["instruction"].split()).casefold() for r in task.eval_rows} & pool_texts
        if task.spec.answers:  # balanced over the answers, and mixed in order
            counts = {a: sum(r["output"] == a for r in task.eval_rows) for a in task.spec.answers}
            assert max(counts.values()) - min(counts.values()) <= 1
            assert len({r["output"] for r in task.eval_rows[:20]}) == len(task.spec.answers)
        related = [r for r in data.pool if r["group"] in set(task.spec.related)]
        assert len(related) >= 100
