"""TruncatedLM: only layers up to L run, the captured residual is the model's, pooling masks are right and
results do not depend on batching."""

from __future__ import annotations

import itertools

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


def _sites_of(lm: TruncatedLM, items) -> dict[int, dict[tuple[str, int], torch.Tensor]]:
    """{input position: {(site, layer): activations of its pooled tokens}} over all batches."""
    out: dict[int, dict[tuple[str, int], torch.Tensor]] = {}
    for batch in lm.run(items):
        for row, pos in enumerate(batch.positions):
            mask = batch.pool_mask[row]
            out[pos] = {(kind, lyr): batch.site(kind, lyr)[row][mask]
                        for kind in ("resid", *lm.sites) for lyr in lm.layers}
    return out


def _branches_add_up(rows, layers: list[int]) -> None:
    """Each layer's residual stream is the one before it plus what its attention and MLP branches add."""
    for sites in rows.values():
        for before, lyr in itertools.pairwise(layers):
            torch.testing.assert_close(sites[("resid", before)] + sites[("attn_out", lyr)]
                                       + sites[("mlp_out", lyr)], sites[("resid", lyr)], rtol=1e-4, atol=1e-5)
        # the branches are not the stream itself: a capture of the wrong module would not add up
        assert not torch.allclose(sites[("mlp_out", layers[-1])], sites[("resid", layers[-1])])


def test_attention_and_mlp_outputs_add_up_to_the_residual_stream(model_dir, tokenizer):
    lm = TruncatedLM(_fresh(model_dir), tokenizer, [0, 1], sites=("mlp_out", "attn_out"))
    assert lm.sites == ["mlp_out", "attn_out"]
    items = [_chat(tokenizer, "what is two plus two ?", "four"), _plain("the cat sat on the mat")]
    _branches_add_up(_sites_of(lm, items), [0, 1])


def test_gemma2_branch_outputs_are_read_after_their_post_norms(tokenizer):
    # Gemma 2 norms each branch's output before adding it; TransformerLens' hook_mlp_out (Gemma Scope's -mlp
    # SAEs) is after that norm, so hooking `mlp` itself would be wrong
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                          bos_token_id=0, eos_token_id=1, pad_token_id=2, initializer_range=0.2)
    model = Gemma2ForCausalLM(config).eval()
    for norm in ("post_attention_layernorm", "post_feedforward_layernorm"):  # non-trivial norm weights
        for layer in model.model.layers:
            torch.nn.init.normal_(getattr(layer, norm).weight, std=0.5)
    lm = TruncatedLM(model, tokenizer, [0, 1], sites=("attn_out", "mlp_out"))
    _branches_add_up(_sites_of(lm, [_plain("the cat sat on the mat"), _plain("add two numbers")]), [0, 1])


def test_branch_sites_with_a_shared_prefix_agree_with_a_full_run(model_dir, tokenizer):
    prefix = "the cat sat on the mat and "
    items = [Rendered(prefix + t, ((len(prefix), len(prefix) + len(t)),)) for t in ("add two numbers", "hello")]
    shared = TruncatedLM(_fresh(model_dir), tokenizer, 1, sites=("mlp_out",))
    plain = TruncatedLM(_fresh(model_dir), tokenizer, 1, share_prefix=False)
    plain.capture(["mlp_out", "resid", "mlp_out"])  # added after construction, once
    assert plain.sites == ["mlp_out"]
    (batch,) = list(shared.run(items))
    assert batch.offset > 0  # the prefix did run apart
    got, want = _sites_of(shared, items), _sites_of(plain, items)
    for pos in range(len(items)):
        torch.testing.assert_close(got[pos][("mlp_out", 1)], want[pos][("mlp_out", 1)], atol=1e-5, rtol=1e-5)


def test_a_site_the_architecture_lacks_is_refused_in_one_line(tiny_model, tokenizer):
    from mona.models.truncated import branch_module

    with pytest.raises(ConfigError, match="cannot find the MLP module of Linear") as info:
        branch_module(torch.nn.Linear(2, 2), "mlp_out")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="not 'attn_z'"):
        TruncatedLM(tiny_model, tokenizer, 1, sites=("attn_z",))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)")
def test_sites_on_cuda_in_bf16_agree_with_the_cpu(model_dir, tokenizer):
    # the GPU default: the model in bf16 on the device; every site comes back as fp32 on the CPU, within bf16
    # rounding of the CPU's fp32 run, the shared prefix reused there too
    prefix = "the cat sat on the mat and "
    items = [Rendered(prefix + t, ((len(prefix), len(prefix) + len(t)),)) for t in ("add two numbers", "hello")]
    gpu = TruncatedLM(_fresh(model_dir).to("cuda", torch.bfloat16), tokenizer, [0, 1], sites=("mlp_out", "attn_out"))
    cpu = TruncatedLM(_fresh(model_dir), tokenizer, [0, 1], sites=("mlp_out", "attn_out"))
    got, want = _sites_of(gpu, items), _sites_of(cpu, items)
    for pos in range(len(items)):
        for site, value in want[pos].items():
            assert got[pos][site].device.type == "cpu" and got[pos][site].dtype == torch.float32
            torch.testing.assert_close(got[pos][site], value, rtol=0.05, atol=0.05 * float(value.abs().max()))
