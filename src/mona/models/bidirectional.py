"""Bidirectional attention for a decoder LM (LLM2Vec's first step): every token attends to every token of its row
that is not padding, before it as well as after it.

How transformers 5 decides causality, and why both switches below are needed:
- The model builds its mask with `masking_utils.create_causal_mask`, which returns a 4-D mask it is given
  unchanged (`_preprocess_mask_arguments`: "If the mask is already 4D, simply return as-is"). So a 4-D additive
  mask that hides only padding keys (`padding_mask`) replaces the causal one in every layer.
- The sdpa kernel (`integrations/sdpa_attention.py`) is causal when the mask it gets is None and the attention
  module's `is_causal` is True (a 2-D mask without padding is dropped to None on that fast path); eager attention
  only adds the mask it gets. Setting `is_causal = False` on every attention module, and `config.is_causal =
  False` (with which `create_causal_mask` makes a bidirectional mask out of a 2-D one), keeps the model
  bidirectional even when it is called with a 2-D mask or none.
Everything here is in place and needs no copy of the model's code, so it works for any architecture whose
attention modules carry `is_causal` (LLaMA, Mistral, Qwen 2, Gemma, SmolLM2, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mona.errors import ConfigError
from mona.models.truncated import first_and_pad_ids, length_batches


def enable_bidirectional(model: nn.Module) -> int:
    """Make `model` (in place) attend in both directions; returns how many attention modules were switched.
    ConfigError if none carries `is_causal` (an architecture this cannot switch)."""
    switched = 0
    for module in model.modules():
        if isinstance(getattr(module, "is_causal", None), bool) and hasattr(module, "q_proj"):
            module.is_causal = False
            switched += 1
    if not switched:
        raise ConfigError(f"cannot switch {type(model).__name__} to bidirectional attention: none of its modules "
                          "is an attention module with an `is_causal` flag")
    config = getattr(model, "config", None)
    if config is not None:
        config.is_causal = False
    return switched


def is_bidirectional(model: nn.Module) -> bool:
    """Whether `enable_bidirectional` has been applied to `model`."""
    return any(getattr(m, "is_causal", None) is False and hasattr(m, "q_proj") for m in model.modules())


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] mask (1 = token, 0 = padding) -> [B, 1, T, T] additive mask: 0 where the key is a token, the dtype's
    minimum where it is padding, for every query (padding queries still see the row's tokens, so no row of the
    softmax is all -inf)."""
    keys = attention_mask[:, None, None, :].bool()
    mask = torch.zeros(keys.shape, dtype=dtype, device=attention_mask.device)
    mask = mask.masked_fill(~keys, torch.finfo(dtype).min)
    return mask.expand(-1, 1, attention_mask.shape[1], -1)


def set_attention_dropout(model: nn.Module, p: float) -> None:
    """Dropout on the attention weights of every attention module while training (SimCSE's noise: LLM2Vec uses
    0.3); the modules read `attention_dropout` on each forward."""
    for module in model.modules():
        if hasattr(module, "attention_dropout") and hasattr(module, "q_proj"):
            module.attention_dropout = p


@dataclass
class TextBatch:
    """Right-padded token ids of some texts, each after a fixed first token, [B, T] each."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor  # 1 = token, 0 = padding
    pool_mask: torch.Tensor  # bool: tokens that enter a pooled vector (not the first token, padding, specials)


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int) -> TextBatch:
    """`texts` as one batch: the fixed first token, then the text's tokens, cut to `max_length` in all."""
    first, pad = first_and_pad_ids(tokenizer)
    special = set(tokenizer.all_special_ids)
    rows = [[first, *ids][:max_length] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
    pool = attn.bool() & ~torch.isin(ids, torch.tensor(sorted(special), dtype=torch.long))
    pool[:, 0] = False
    return TextBatch(ids, attn, pool)


def final_hidden(model: nn.Module, batch: TextBatch) -> torch.Tensor:
    """The last decoder layer's output after the final norm, [B, T, d], of a causal LM (its LM head never runs):
    with a padding-only 4-D mask when the model is bidirectional, else with the usual causal mask."""
    base = getattr(model, "base_model", model)
    device = next(model.parameters()).device
    attn = batch.attention_mask.to(device)
    mask = padding_mask(attn, next(model.parameters()).dtype) if is_bidirectional(model) else attn
    return base(input_ids=batch.input_ids.to(device), attention_mask=mask).last_hidden_state


def mean_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, d] -> [B, d]: the mean over each row's pooled tokens (a row without any gets zeros), in fp32."""
    weights = pool_mask.to(hidden.device, torch.float32)[..., None]
    return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@torch.inference_mode()
def embed_batches(model: nn.Module, tokenizer, texts: Sequence[str], *, max_length: int, batch_tokens: int = 8192,
                  max_batch_size: int = 64) -> Iterator[tuple[list[int], torch.Tensor, int, int]]:
    """Mean-pooled final hidden states of `texts` in batches of similar length (at most `batch_tokens` padded
    tokens and `max_batch_size` rows each, longest first): (positions in `texts`, [n, d] fp32 vectors on the CPU,
    tokens pooled, rows cut at `max_length`) per batch."""
    lengths = [len(ids) + 1 for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    for rows in length_batches([min(n, max_length) for n in lengths], batch_tokens, max_batch_size):
        batch = tokenize_texts(tokenizer, [texts[i] for i in rows], max_length)
        vectors = mean_pool(final_hidden(model, batch), batch.pool_mask).cpu()
        yield rows, vectors, int(batch.pool_mask.sum()), sum(lengths[i] > max_length for i in rows)


def embed_texts(model: nn.Module, tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int = 16,
                progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """[len(texts), d] mean-pooled final hidden states (fp32, on the CPU), in input order, `batch_size` rows of
    similar length at a time; `progress(rows done)` after each batch."""
    out = torch.zeros(len(texts), int(model.config.hidden_size))
    done = 0
    for rows, vectors, _tokens, _cut in embed_batches(model, tokenizer, texts, max_length=max_length,
                                                      batch_tokens=batch_size * max_length,
                                                      max_batch_size=batch_size):
        out[rows] = vectors
        done += len(rows)
        if progress:
            progress(done)
    return out
