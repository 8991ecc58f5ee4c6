"""`mona finetune` and `mona eval` on the tiny model: answer-only labels, learning, kill-and-resume equivalence,
multiple-choice scoring, exact-match generation and the errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import ACCELERATORS, write_jsonl
from mona.data.readers import read_samples
from mona.errors import ConfigError, DependencyError
from mona.finetune.evaluate import normalise_answer, parse_options, run_lm_eval
from mona.finetune.sft import FinetuneConfig, conversation_tokens, encode_sample, finetune
from mona.models.answer_loss import IGNORE, batch_loss_sum

runner = CliRunner()
REPETITIVE = [{"id": f"r{i}", "instruction": q, "output": a} for i, (q, a) in enumerate([
    ("what is two plus two ?", "four ."), ("bake a cake", "mix flour sugar eggs butter ."),
    ("tell me a story", "the cat sat on the mat ."), ("what is three plus two ?", "five ."),
] * 3)]


def _cli(*args: str):
    from mona.cli import app

    return runner.invoke(app, list(args))


def test_labels_mask_everything_but_the_answers(tmp_path, tokenizer):
    rows = [{"instruction": "what is two plus two ?", "input": "please answer", "output": "four ."},
            {"messages": [{"role": "system", "content": "answer the question"},
                          {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hello world"},
                          {"role": "user", "content": "tell me a story"},
                          {"role": "assistant", "content": "the cat sat on the mat"}]}]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    expected = [["four", ".", "<|im_end|>"], ["hello", "world", "<|im_end|>", "the", "cat", "sat", "on", "the", "mat",
                                            "<|im_end|>"]]
    for sample, want in zip(read_samples(path), expected, strict=True):
        enc = encode_sample(sample, tokenizer, 512, path=str(path))
        kept = [i for i, label in zip(enc.ids, enc.labels, strict=True) if label != IGNORE]
        assert tokenizer.convert_ids_to_tokens(kept) == want
        assert all(label in (IGNORE, i) for i, label in zip(enc.ids, enc.labels, strict=True))
    # Truncation cuts ids and labels together.
    enc = encode_sample(read_samples(path)[1], tokenizer, 10, path=str(path))
    assert len(enc.ids) == len(enc.labels) == 10 and enc.truncated


def test_plain_text_rows_learn_every_token(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", [{"body": "the cat sat on the mat"}])
    enc = encode_sample(read_samples(path, text_field="body")[0], tokenizer, 512, path=str(path), plain_text=True)
    assert enc.labels == enc.ids and enc.ids[-1] == tokenizer.eos_token_id


def test_prompt_that_is_not_a_token_prefix_is_a_config_error(tokenizer):
    tok = copy.deepcopy(tokenizer)
    # The last message gets an extra "!": the prompt rendered alone differs from the same turn mid-conversation.
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                         "{% if loop.last %} !{% endif %}<|im_end|>\n{% endfor %}")
    with pytest.raises(ConfigError, match="prefix"):
        conversation_tokens(tok, [("user", "hello"), ("assistant", "world")], path="x.jsonl", line=3)


def test_head_on_selected_positions_matches_the_full_forward(model_dir, tiny_model, tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", REPETITIVE[:3])
    rows = [encode_sample(s, tokenizer, 512, path=str(path)) for s in read_samples(path)]
    fast = batch_loss_sum(tiny_model, [r.ids for r in rows], [r.labels for r in rows], tokenizer.pad_token_id)
    total = 0.0
    for r in rows:
        logits = tiny_model(input_ids=torch.tensor([r.ids])).logits[0, :-1]
        total += float(torch.nn.functional.cross_entropy(logits, torch.tensor(r.labels[1:]), ignore_index=IGNORE,
                                                         reduction="sum"))
    assert float(fast) == pytest.approx(total, rel=1e-5)


def test_training_lowers_the_loss(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", REPETITIVE)
    config = FinetuneConfig(model=str(model_dir), epochs=8, lr=2e-2, lora_r=4, batch_tokens=64, seed=1)
    summary = finetune(data, tmp_path / "run", config)
    losses = summary["epoch_losses"]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0]
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    train = json.loads((tmp_path / "run" / "train.json").read_text())
    assert train["steps"] == summary["steps"] == 8 * summary["batches_per_epoch"]
    assert train["lora_targets"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert train["tokens"] > train["target_tokens"] > 0 and train["seconds"] > 0


def test_killed_run_resumes_to_the_same_adapter(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", REPETITIVE)
    config = FinetuneConfig(model=str(model_dir), epochs=3, lr=1e-2, lora_r=4, batch_tokens=48, grad_accum=2,
                            save_every=2)
    whole = finetune(data, tmp_path / "whole", config)
    assert whole["steps"] >= 6
    stopped = finetune(data, tmp_path / "resumed", config, stop_after_steps=5)
    assert stopped == {"finished": False, "steps": 5, "total_steps": whole["steps"]}
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())["state"]["step"] == 4
    assert not (tmp_path / "resumed" / "adapter").exists()
    resumed = finetune(data, tmp_path / "resumed", config)
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == whole["steps"]
    a = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0)
    assert resumed["final_loss"] == pytest.approx(whole["final_loss"], abs=1e-5)
    # The same directory with other arguments is refused (exit 4) unless --overwrite.
    result = _cli("finetune", "--data", str(data), "--out", str(tmp_path / "resumed"), "--model", str(model_dir),
                  "--epochs", "3", "--lr", "0.02", "--lora-r", "4", "--batch-tokens", "48", "--grad-accum", "2",
                  "--quiet")
    assert result.exit_code == 4, result.output
    assert "other arguments" in result.output and "lr" in result.output


def test_rows_without_an_answer_exit_2_naming_the_line(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [REPETITIVE[0], {"text": "the cat sat on the mat"}])
    result = _cli("finetune", "--data", str(data), "--out", str(tmp_path / "run"), "--model", str(model_dir),
                  "--quiet")
    assert result.exit_code == 2, result.output
    assert "bad.jsonl:2" in result.output and "assistant" in result.output
    data = write_jsonl(tmp_path / "empty.jsonl", [REPETITIVE[0], {"instruction": "bake a cake", "output": ""}])
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--quiet")
    assert result.exit_code == 2 and "empty.jsonl:2" in result.output


def test_parse_options():
    text = "What is 0 plus 1?\nOptions:\n- 5\n- 4\n- 1"
    assert parse_options(text) == ["5", "4", "1"]
    assert parse_options("Q\nOptions:\n- yes\n- no\nAnswer briefly.\n- not an option") == ["yes", "no"]
    assert parse_options("no options here\n- a\n- b") is None
    assert parse_options("Options:\nnothing listed") is None
    assert normalise_answer("  The Cat.\n") == "the cat" and normalise_answer("] ]") == "] ]"


def _direct_logliks(model, tokenizer, question: str, options: list[str]) -> list[float]:
    """Sum of each option's token log-probs, computed straight from the full forward pass."""
    out = []
    for option in options:
        text = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": option}], tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        n = len(tokenizer(option, add_special_tokens=False)["input_ids"])
        end = len(ids) - 1  # the option's tokens sit right before the final <|im_end|>
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], dim=-1)
        out.append(sum(float(logprobs[p - 1, ids[p]]) for p in range(end - n, end)))
    return out


def test_eval_multiple_choice_and_exact_match(model_dir, tiny_model, tokenizer, tmp_path):
    question = "what is two plus two ?\nOptions:\n- four\n- five numbers\n- five"
    options = ["four", "five numbers", "five"]  # two options share their first token: the shared run holds it
    rows = [{"id": "mc1", "instruction": question, "output": "four"},
            {"id": "mc2", "instruction": "bake a cake", "options": ["flour", "sugar eggs"], "output": "sugar eggs"},
            {"id": "g1", "instruction": "tell me a story about a dog", "output": "the cat sat on the mat"}]
    data = write_jsonl(tmp_path / "heldout.jsonl", rows)
    out = tmp_path / "results.json"
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--out", str(out), "--max-new-tokens",
                  "6", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("NLL ") and "p(right)" in result.output
    res = json.loads(out.read_text())
    assert res["n"] == 3 and res["by_kind"]["mc"]["n"] == 2 and res["by_kind"]["generation"]["n"] == 1
    mc1 = res["predictions"][0]
    direct = _direct_logliks(tiny_model, tokenizer, question, options)
    assert mc1["loglik"] == pytest.approx(direct, abs=1e-4)
    assert mc1["prediction"] == options[max(range(3), key=direct.__getitem__)]
    assert mc1["correct"] == (mc1["prediction"] == "four")
    assert mc1["loglik_norm"][1] == pytest.approx(direct[1] / 2, abs=1e-4)
    # NLL of the reference (the right option), and the probability mass on it among the options
    assert mc1["nll"] == pytest.approx(-direct[0], abs=1e-4) and mc1["answer_tokens"] == 1
    assert mc1["p_correct"] == pytest.approx(float(torch.softmax(torch.tensor(direct), 0)[0]), abs=1e-4)
    assert res["predictions"][1]["options"] == ["flour", "sugar eggs"]
    g1 = res["predictions"][2]
    story = _direct_logliks(tiny_model, tokenizer, rows[2]["instruction"], [rows[2]["output"]])[0]
    assert g1["nll"] == pytest.approx(-story, abs=1e-4) and g1["answer_tokens"] == 6
    preds = res["predictions"]
    assert res["nll"] == pytest.approx(sum(p["nll"] for p in preds) / sum(p["answer_tokens"] for p in preds))
    assert res["by_kind"]["mc"]["p_correct"] == pytest.approx((mc1["p_correct"] + preds[1]["p_correct"]) / 2, abs=1e-5)
    generated = g1["prediction"]
    assert generated and not g1["correct"]
    # The same generation, written with other case and a final period, is an exact match.
    rows[2]["output"] = generated.upper() + " ."
    write_jsonl(data, rows[2:])
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--out", str(out), "--max-new-tokens", "6",
                  "--quiet")
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["predictions"][0]["prediction"] == generated and res["accuracy"] == 1.0
    # --max-new-tokens 0: no generation; the row keeps its NLL and accuracy counts judged rows only
    write_jsonl(data, rows)
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--out", str(out), "--max-new-tokens", "0",
                  "--quiet")
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert "prediction" not in res["predictions"][2] and res["predictions"][2]["nll"] > 0
    assert res["accuracy"] == res["by_kind"]["mc"]["accuracy"] and res["by_kind"]["generation"]["accuracy"] is None


def test_finetune_cli_then_eval_with_the_adapter(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", REPETITIVE)
    run = tmp_path / "run"
    result = _cli("finetune", "--data", str(data), "--out", str(run), "--model", str(model_dir), "--epochs", "1",
                  "--lora-r", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (run / "adapter" / "adapter_model.safetensors").exists()
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--adapter", str(run / "adapter"),
                  "--limit", "2", "--max-new-tokens", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert "on 2 rows" in result.output
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--adapter", str(tmp_path / "nope"))
    assert result.exit_code == 3


def test_lm_eval_without_the_package_names_the_extra(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` raises ImportError
    with pytest.raises(DependencyError, match=r"pip install mona\[lm-eval\]"):
        run_lm_eval(["gsm8k"], model=str(model_dir), device="cpu")
    result = _cli("eval", "--lm-eval-tasks", "gsm8k,mmlu", "--model", str(model_dir))
    assert result.exit_code == 5 and "pip install mona[lm-eval]" in result.output


@pytest.mark.integration
def test_smollm2_template_labels_only_the_answer():
    from mona.models.loader import load_tokenizer

    tok, _ = load_tokenizer(None)
    path = Path(__file__).parent / "data" / "bigbench_4tasks.jsonl"
    for sample in read_samples(path)[:20]:
        enc = encode_sample(sample, tok, 4096, path=str(path))
        kept = [i for i, label in zip(enc.ids, enc.labels, strict=True) if label != IGNORE]
        assert tok.decode(kept) == sample.messages[-1][1] + "<|im_end|>"


def test_an_absent_gpu_is_refused_before_any_work(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = write_jsonl(tmp_path / "train.jsonl", REPETITIVE)
    result = _cli("finetune", "--data", str(data), "--out", str(tmp_path / "run"), "--model", str(model_dir),
                  "--device", "cuda", "--quiet")
    assert result.exit_code == 4 and "sees no CUDA GPU" in result.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    result = _cli("eval", "--data", str(data), "--model", str(model_dir), "--device", "cuda", "--out",
                  str(tmp_path / "res.json"), "--quiet")
    assert result.exit_code == 4 and "sees no CUDA GPU" in result.output and not (tmp_path / "res.json").exists()


def test_where_a_run_trains_is_not_part_of_what_it_resumes_from(tmp_path):
    from mona.finetune.sft import run_fingerprint

    data = write_jsonl(tmp_path / "train.jsonl", REPETITIVE)
    # a run checkpointed on a GPU resumes on the CPU (its checkpoint loads onto the CPU, see sft._restore)
    assert run_fingerprint(FinetuneConfig(device="cuda"), data, "fp32") == \
        run_fingerprint(FinetuneConfig(device="cpu"), data, "fp32")


@pytest.mark.parametrize("device", ACCELERATORS)
def test_finetune_and_eval_on_the_gpu_agree_with_the_cpu(model_dir, tmp_path, device):
    # fp32 on both: the GPU run follows the CPU's losses up to float rounding, its checkpoint resumes on the CPU,
    # and its adapter evaluates to the CPU's NLL
    from mona.finetune.evaluate import evaluate

    data = write_jsonl(tmp_path / "train.jsonl", REPETITIVE)
    config = FinetuneConfig(model=str(model_dir), epochs=2, lr=1e-2, lora_r=4, batch_tokens=64, save_every=2,
                            dtype="fp32", device="cpu")
    cpu = finetune(data, tmp_path / "cpu", config)
    gpu = finetune(data, tmp_path / "gpu", dataclasses.replace(config, device=device),
                   stop_after_steps=3)
    assert gpu["finished"] is False
    resumed = finetune(data, tmp_path / "gpu", config)  # on the CPU
    assert resumed["resumed_from_step"] == 2 and resumed["final_loss"] == pytest.approx(cpu["final_loss"], rel=1e-3)
    on_cpu = evaluate(data, model=str(model_dir), adapter=tmp_path / "cpu" / "adapter", max_new_tokens=3,
                      device="cpu")
    on_gpu = evaluate(data, model=str(model_dir), adapter=tmp_path / "cpu" / "adapter", max_new_tokens=3,
                      device=device)
    assert on_gpu["nll"] == pytest.approx(on_cpu["nll"], rel=1e-3)
    assert [p.get("prediction") for p in on_gpu["predictions"]] == [p.get("prediction") for p in on_cpu["predictions"]]
