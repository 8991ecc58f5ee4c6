"""The hard suite's target transforms: lettered multiple choice, few-shot prompts, NaturalInstructions splits."""

from __future__ import annotations

from mona.bench.hard_suite import BBH_TASKS, FAMILIES, few_shot, lettered, ni_split


def test_lettered_options_answer_with_the_letter():
    row = {"instruction": "Which is a fruit?\nOptions:\n- stone\n- apple\n- chair\nA:", "output": "apple"}
    out = lettered(row)
    assert out == {"prompt": "Which is a fruit?\n(A) stone\n(B) apple\n(C) chair\nA:\n"
                             "Answer with the letter of the correct option.", "completion": "(B)"}
    at_end = lettered({"instruction": "Pick one.\nOptions:\n- x\n- y", "output": "y"})
    assert at_end is not None and at_end["prompt"].startswith("Pick one.\n(A) x\n(B) y\n")
    assert lettered({"instruction": "no options here", "output": "x"}) is None
    assert lettered({"instruction": "Q\nOptions:\n- a\n- b", "output": "c"}) is None  # answer not an option


def test_few_shot_prompts_concatenate_examples():
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(7)]
    prompts = few_shot(rows, per_prompt=3)
    assert prompts == [{"text": "Q: q0\nA: a0\n\nQ: q1\nA: a1\n\nQ: q2\nA: a2"},
                       {"text": "Q: q3\nA: a3\n\nQ: q4\nA: a4\n\nQ: q5\nA: a5"}]


def test_ni_split_separates_definition_and_instance():
    text = "Definition: do a thing. Emphasis: be nice.\n More. Prompt: Answer it.\nPassage: the cat sat."
    assert ni_split(text) == ("Definition: do a thing. Emphasis: be nice.\n More. Prompt: Answer it.",
                              "Passage: the cat sat.")
    assert ni_split("Definition: no prompt line") is None


def test_reserved_tasks_stay_out_of_the_families():
    assert not BBH_TASKS & set().union(*FAMILIES.values())
