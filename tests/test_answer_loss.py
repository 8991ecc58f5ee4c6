"""The answer-token losses: the head runs on the scored positions only where that gives the model's own logits,
and models that cap or scale their logits (Gemma 2's final softcap) get their full forward."""

from __future__ import annotations

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from mona.models.answer_loss import IGNORE, batch_loss_sum, head_path, row_losses

SMALL = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8}


def _models():
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**SMALL)).eval()
    gemma = Gemma2ForCausalLM(Gemma2Config(**SMALL, final_logit_softcapping=2.0, query_pre_attn_scalar=8)).eval()
    return {"llama": llama, "gemma2": gemma}


def _reference(model, ids, attn, mask):
    """Per-row mean cross-entropy from the model's full forward (its own logits, softcap included)."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    targets = mask[:, 1:].float()
    return (ce * targets).sum(dim=1) / targets.sum(dim=1).clamp(min=1)


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_row_and_batch_losses_equal_the_full_forward(name):
    model = _models()[name]
    assert (head_path(model) is None) == (name == "gemma2")  # the softcapped model is never cut short
    ids = torch.tensor([[1, 5, 9, 13, 2, 0], [1, 7, 3, 0, 0, 0], [1, 4, 4, 4, 8, 6]])
    attn = (ids != 0).long()
    attn[:, 0] = 1
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        got = row_losses(model, ids, attn, mask)
        want = _reference(model, ids, attn, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got[1] == 0  # a row without a loss token
    rows = [ids[i, : int(attn[i].sum())].tolist() for i in range(3)]
    labels = [[t if m else IGNORE for t, m in zip(r, mask[i].tolist(), strict=False)] for i, r in enumerate(rows)]
    with torch.no_grad():
        total = batch_loss_sum(model, rows, labels, 0)
    counts = mask[:, 1:].sum(dim=1).float()
    torch.testing.assert_close(total, (want * counts).sum(), atol=1e-4, rtol=1e-5)
