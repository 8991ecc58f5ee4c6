"""TruncatedLM: only layers up to L run, the captured residual is the model's, pooling masks are right and
results do not depend on batching."""

from __future__ import annotations

import pytest
import torch

from conftest import N_LAYERS, make_tokenizer, sentences
from mona.data.formats import Record, Sample
from mona.data.render import Rendered, render
from mona.errors import ConfigError
from mona.models import TruncatedLM, decoder_layers


def _chat(tok, *turns: str) -> Rendered:
    roles = ["user", "assistant"] * len(turns)
    sample = Sample("0", tuple(zip(roles, turns, strict=False)), None, Record({}, 0, 1))
    return render(sample, tok, "chat")


def _plain(text: str) -> Rendered:
    return Rendered(text, ((0, len(text)),))


def _fresh(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()


def _all_rows(lm: TruncatedLM, items, layer: int):
    """{input position: (ids, pool mask, residual at layer)} over all batches, without padding."""
    out = {}
    for batch in lm.run(items):
        for row, pos in enumerate(batch.positions):
            n = len(lm.tokenize([items[pos]])[0].ids) - batch.offset
            out[pos] = (batch.input_ids[row, :n], batch.pool_mask[row, :n], batch.resid[layer][row, :n])
            assert not batch.pool_mask[row, n:].any()  # padding is never pooled
    return out


def test_later_layers_and_head_never_run(tiny_model, tokenizer):
    layers = decoder_layers(tiny_model)
    assert len(layers) == N_LAYERS
    calls = {"early": 0, "late": 0, "head": 0, "norm": 0}
    later, head, norm = layers[N_LAYERS - 1], tiny_model.lm_head, tiny_model.model.norm
    layers[0].register_forward_hook(lambda *_: calls.__setitem__("early", calls["early"] + 1))
    later.register_forward_hook(lambda *_: calls.__setitem__("late", calls["late"] + 1))
    head.register_forward_hook(lambda *_: calls.__setitem__("head", calls["head"] + 1))
    norm.register_forward_hook(lambda *_: calls.__setitem__("norm", calls["norm"] + 1))
    lm = TruncatedLM(tiny_model, tokenizer)  # default: penultimate layer
    assert lm.layers == [N_LAYERS - 2]
    batches = list(lm.run([_plain("hello world"), _chat(tokenizer, "add two numbers", "five")]))
    assert sum(len(b.positions) for b in batches) == 2
    assert calls["early"] == len(batches) > 0  # the hooks do fire for layers that run
    assert calls["late"] == 0 and calls["head"] == 0 and calls["norm"] == 0


def test_residual_equals_full_model_hidden_state(model_dir, tokenizer):
    full = _fresh(model_dir)  # untouched: never wrapped
    items = [_chat(tokenizer, "what is two plus two ?", "four"), _plain("the cat sat on the mat"),
             _plain("hello")]
    for layer in range(N_LAYERS):
        lm = TruncatedLM(_fresh(model_dir), tokenizer, layer)
        rows = _all_rows(lm, items, layer)
        for pos in range(len(items)):
            ids, _pool, resid = rows[pos]
            with torch.no_grad():
                ref = full(input_ids=ids.unsqueeze(0), output_hidden_states=True).hidden_states[layer + 1][0]
                if layer == N_LAYERS - 1:
                    # HF's last hidden state has the final norm applied; the truncated model never runs it
                    resid = full.model.norm(resid)
            torch.testing.assert_close(resid, ref, rtol=1e-4, atol=1e-5)


def test_pool_mask_chat(tiny_model, tokenizer):
    lm = TruncatedLM(tiny_model, tokenizer)
    item = _chat(tokenizer, "add two numbers", "five")
    (tok,) = lm.tokenize([item])
    # The ChatML text starts with <|im_start|> (the bos): nothing is prepended.
    assert tok.ids[0] == tokenizer.bos_token_id
    assert tok.ids.count(tokenizer.bos_token_id) == 2
    pooled = [i for i, p in zip(tok.ids, tok.pool, strict=True) if p]
    assert tokenizer.convert_ids_to_tokens(pooled) == ["add", "two", "numbers", "five"]
    # role names, specials and the first token are not pooled
    unpooled = tokenizer.convert_ids_to_tokens([i for i, p in zip(tok.ids, tok.pool, strict=True) if not p])
    assert unpooled == ["<|im_start|>", "user", "<|im_end|>", "<|im_start|>", "assistant", "<|im_end|>"]


def test_pool_mask_plain_prepends_first_token(tiny_model, tokenizer):
    lm = TruncatedLM(tiny_model, tokenizer)
    (tok,) = lm.tokenize([_plain("hello <|endoftext|> world")])
    assert tokenizer.convert_ids_to_tokens(tok.ids) == ["<|im_start|>", "hello", "<|endoftext|>", "world"]
    assert tok.pool == [False, True, False, True]
    assert not tok.truncated


def test_pool_mask_excludes_padding_in_batch(tiny_model, tokenizer):
    lm = TruncatedLM(tiny_model, tokenizer)
    items = [_plain("hello"), _plain("the cat sat on the mat please")]
    (batch,) = list(lm.run(items))
    assert batch.input_ids.shape == (2, 8)
    short = batch.positions.index(0)
    assert batch.input_ids[short, 2:].tolist() == [tokenizer.pad_token_id] * 6
    assert batch.pool_mask[short].tolist() == [False, True] + [False] * 6
    assert batch.n_tokens == 1 + 7


def test_truncation_is_counted(tiny_model, tokenizer):
    lm = TruncatedLM(tiny_model, tokenizer, max_length=4)
    items = [_plain("hello world"), _plain("the cat sat on the mat")]
    toks = lm.tokenize(items)
    assert [len(t.ids) for t in toks] == [3, 4]
    assert [t.truncated for t in toks] == [False, True]
    list(lm.run(items))
    assert lm.last_truncated == 1


def test_batch_invariance(model_dir, tokenizer):
    tok = make_tokenizer()
    items = [_plain(s) for s in sentences(9, seed=3)] + [_chat(tok, "add two numbers", "five"), _plain("hello")]
    layer = N_LAYERS - 2
    alone = TruncatedLM(_fresh(model_dir), tokenizer, batch_tokens=8)
    together = TruncatedLM(_fresh(model_dir), tokenizer, batch_tokens=100_000)
    assert len(together.plan(together.tokenize(items))) == 1
    assert len(alone.plan(alone.tokenize(items))) == len(items)
    a, b = _all_rows(alone, items, layer), _all_rows(together, items, layer)
    assert sorted(a) == sorted(b) == list(range(len(items)))
    for pos in a:
        assert torch.equal(a[pos][0], b[pos][0])
        assert torch.equal(a[pos][1], b[pos][1])
        torch.testing.assert_close(a[pos][2], b[pos][2], rtol=1e-4, atol=1e-5)


def test_plan_respects_budget(tiny_model, tokenizer):
    lm = TruncatedLM(tiny_model, tokenizer, batch_tokens=20, max_batch_size=3)
    items = [_plain(" ".join(["cat"] * n)) for n in (1, 9, 4, 4, 2, 3, 3, 3, 3)]
    toks = lm.tokenize(items)
    batches = lm.plan(toks)
    assert sorted(i for b in batches for i in b) == list(range(len(items)))
    for b in batches:
        width = max(len(toks[i].ids) for i in b)
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * width <= 20
    assert batches[0][0] == 1  # longest first


@pytest.mark.parametrize("layer", [N_LAYERS, -N_LAYERS - 1])
def test_layer_out_of_range(tiny_model, tokenizer, layer):
    with pytest.raises(ConfigError, match="out of range"):
        TruncatedLM(tiny_model, tokenizer, layer)


def test_negative_layer_counts_from_the_end(tiny_model, tokenizer):
    assert TruncatedLM(tiny_model, tokenizer, -1).layers == [N_LAYERS - 1]


def test_a_shared_prefix_runs_once_and_changes_nothing_pooled(model_dir, tokenizer):
    prefix = "the cat sat on the mat and "
    texts = ["add two numbers", "what is two plus two ?", "hello world", "the dog"]
    items = [Rendered(prefix + t, ((len(prefix), len(prefix) + len(t)),)) for t in texts]
    shared = TruncatedLM(_fresh(model_dir), tokenizer, 1)
    plain = TruncatedLM(_fresh(model_dir), tokenizer, 1, share_prefix=False)
    tokenized = shared.tokenize(items)
    assert shared.shared_prefix(tokenized, [0, 1, 2, 3]) == 1 + len(prefix.split())  # first token + prefix
    calls = []
    decoder_layers(shared.model)[0].register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[1]))
    got, want = {}, {}
    for lm, out in ((shared, got), (plain, want)):
        for batch in lm.run(items):
            for row, pos in enumerate(batch.positions):
                out[pos] = batch.resid[1][row][batch.pool_mask[row]]
    assert max(calls) < max(len(t.ids) for t in tokenized)  # no call saw a whole row: the prefix ran apart
    for pos in range(len(items)):
        assert got[pos].shape == want[pos].shape and got[pos].shape[0] > 0
        torch.testing.assert_close(got[pos], want[pos], atol=1e-5, rtol=1e-5)
