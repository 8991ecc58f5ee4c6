"""The loss on answer tokens, written once for fine-tuning (finetune.sft), its evaluation and the gradient
methods (LESS, MATES): padding, the logits at the few positions that are scored, and per-batch / per-row
cross-entropy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

IGNORE = -100  # the label of a token that is not learnt (PyTorch's cross-entropy ignore_index)


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, fill_labels: bool = False) -> torch.Tensor:
    """Right-padded [B, T] tensor (labels are padded with IGNORE)."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), IGNORE if fill_labels else pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def attention_mask(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """[B, T] ones over each row's tokens, zeros over its right padding."""
    mask = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        mask[i, : len(r)] = 1
    return mask


def head_path(model: torch.nn.Module) -> tuple[Callable, torch.nn.Module] | None:
    """(decoder, output head) when logits are exactly head(decoder's last hidden state), so the head can run on
    the few positions that are scored only; None for models that rescale or cap their logits (Gemma 2's final
    softcap, Cohere's logit scale, Granite's logits scaling), whose full forward must run."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "final_logit_softcapping", None) is not None:
        return None
    if getattr(config, "logit_scale", None) not in (None, 1, 1.0) or \
            getattr(config, "logits_scaling", None) not in (None, 1, 1.0):
        return None
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or decoder is base or not isinstance(head, torch.nn.Linear):
        return None
    return decoder, head


def selected_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    select: torch.Tensor) -> torch.Tensor:
    """Logits [n, vocab] (fp32) at the positions where `select` [B, T] is true (the head runs only there when
    the model allows it). The inputs move to the model's device; the logits stay there."""
    device = next(model.parameters()).device
    input_ids, attention_mask, select = input_ids.to(device), attention_mask.to(device), select.to(device)
    path = head_path(model)
    if path is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return logits[select].float()
    decoder, head = path
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return head(hidden[select]).float()


def _predicting(targets: torch.Tensor) -> torch.Tensor:
    """[B, T] positions whose next token is a target (`targets` [B, T-1] marks the predicted tokens 1..T-1)."""
    select = torch.zeros((targets.shape[0], targets.shape[1] + 1), dtype=torch.bool)
    select[:, :-1] = targets
    return select


def batch_loss_sum(model: torch.nn.Module, ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
                   pad_id: int) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled tokens of a batch (labels IGNORE where none is taken)."""
    input_ids = pad_batch(ids, pad_id)
    targets = pad_batch(labels, pad_id, fill_labels=True)[:, 1:]
    logits = selected_logits(model, input_ids, attention_mask(ids), _predicting(targets != IGNORE))
    return torch.nn.functional.cross_entropy(logits, targets[targets != IGNORE].to(logits.device), reduction="sum")


def row_losses(model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, loss_mask: torch.Tensor
               ) -> torch.Tensor:
    """Mean next-token cross-entropy over each row's loss tokens ([B]; 0 for a row without any); `loss_mask`
    [B, T] marks the tokens predicted and counted. On the model's device."""
    device = next(model.parameters()).device
    ids, attn, loss_mask = ids.to(device), attn.to(device), loss_mask.to(device)
    targets = loss_mask[:, 1:]
    logits = selected_logits(model, ids, attn, _predicting(targets))
    ce = torch.nn.functional.cross_entropy(logits, ids[:, 1:][targets], reduction="none")
    rows = torch.nonzero(targets, as_tuple=True)[0]
    totals = torch.zeros(ids.shape[0], dtype=ce.dtype, device=device).index_add(0, rows, ce)
    return totals / targets.sum(dim=1).clamp(min=1)
