"""`mona judge`: the prompt, the expected rating read off a local model's probabilities, an OpenAI-compatible
endpoint, and per-method means."""

from __future__ import annotations

import http.server
import json
import threading
from typing import ClassVar

import numpy as np
import pytest
import torch

from conftest import CHAT_TEMPLATE, SPECIALS, WORDS, make_model, write_jsonl
from mona.data.formats import Record, Sample
from mona.errors import ConfigError
from mona.explain.judge import CRITERIA, ApiJudge, LocalJudge, build_prompt, judge_selection
from mona.explain.options import JudgeConfig
from test_cli import _invoke


def _sample(i, text):
    return Sample(str(i), (("user", text), ("assistant", "ok")), None, Record({}, i, i + 1))


def _digit_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + [str(d) for d in range(10)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token="[UNK]")
    tok.chat_template = CHAT_TEMPLATE + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    return tok


def test_prompt_holds_targets_candidate_and_criterion():
    prompt = build_prompt([_sample(0, "add two and three")], _sample(1, "bake a cake"), "generalization")
    assert "1. add two and three" in prompt and "bake a cake" in prompt and CRITERIA["generalization"] in prompt


def test_local_judge_is_the_expected_rating():
    tok = _digit_tokenizer()
    model = make_model(len(tok), seed=3)
    judge = LocalJudge(model, tok)
    prompt = "what is the sum ?"
    rating = judge.rate(prompt)
    # by hand: P(d) for 2..9, P("1") split into "1" and "10" by the next token
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)
        one = tok.convert_tokens_to_ids("1")
        after = model(input_ids=torch.tensor([[*ids, one]])).logits[0, -1].softmax(-1)
    p = np.array([float(probs[tok.convert_tokens_to_ids(str(d))]) for d in range(1, 10)] + [0.0])
    p_zero = float(after[tok.convert_tokens_to_ids("0")])
    p[9], p[0] = p[0] * p_zero, p[0] * (1 - p_zero)
    assert rating == pytest.approx(float((p / p.sum()) @ np.arange(1, 11)), rel=1e-4)
    assert 1 <= rating <= 10


def test_local_judge_needs_digit_tokens(tiny_model, tokenizer):
    with pytest.raises(ConfigError, match="digits"):
        LocalJudge(tiny_model, tokenizer)


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append(body)
        reply = {"choices": [{"message": {"content": "Rating: 7 out of 10"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_api_judge_and_means_from_the_cli(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = write_jsonl(tmp_path / "t.jsonl", [{"instruction": f"add {w}", "output": "x"} for w in WORDS[:6]])
        sel = write_jsonl(tmp_path / "mona.jsonl", [{"instruction": f"sum {w}", "output": "y"} for w in WORDS[:30]])
        out = tmp_path / "judge.json"
        result = _invoke(["judge", "--target", str(target), "--selection", str(sel), "--n", "4", "--api-base",
                          f"http://127.0.0.1:{server.server_port}/v1", "--api-model", "m", "--out", str(out)],
                         tmp_path / "cache")
        assert result.exit_code == 0, result.stderr
    finally:
        server.shutdown()
    assert len(_Handler.seen) == 4 * len(CRITERIA)
    assert all(b["model"] == "m" and b["temperature"] == 0 for b in _Handler.seen)
    doc = json.loads(out.read_text())["results"]["mona"]
    assert doc["n"] == 4 and doc["mean"] == {**dict.fromkeys(CRITERIA, 7.0), "overall": 7.0}
    assert "| mona | 4 | 7.00 | 7.00 | 7.00 | 7.00 |" in result.stdout


def test_judge_selection_samples_with_the_seed():
    class Fake:
        def rate(self, prompt):
            return float(len(prompt) % 10 + 1)

    rows = [_sample(i, f"row {i}") for i in range(50)]
    first = judge_selection(Fake(), rows, rows[:3], JudgeConfig(n=5, seed=1))
    assert first == judge_selection(Fake(), rows, rows[:3], JudgeConfig(n=5, seed=1))
    assert [r["id"] for r in first["ratings"]] != [r["id"] for r in judge_selection(Fake(), rows, rows[:3],
                                                                                  JudgeConfig(n=5, seed=2))["ratings"]]
    assert ApiJudge("http://x", "m").api_key is None
