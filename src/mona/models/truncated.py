"""Run a causal LM truncated at decoder layer(s) L: the layers after the deepest L, the final norm and the
LM head never run. Batches are grouped by length; a pooling mask keeps padding, special tokens, the fixed
first token and template text out of anything pooled downstream. Besides the residual stream after each layer,
the output of a layer's attention or MLP branch can be captured (`BRANCH_SITES`), for SAEs trained there."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mona.data.render import Rendered
from mona.errors import ConfigError

MIN_SHARED_PREFIX = 4  # shorter common prefixes are not worth a cache copy
# sites (mona.sae.spec.Site kinds) read besides the residual stream: what a layer's attention / MLP branch adds
# to the residual stream, TransformerLens' hook_attn_out / hook_mlp_out
BRANCH_SITES = ("attn_out", "mlp_out")
_BRANCH_MODULES = {"attn_out": ("self_attn", "attn", "attention", "self_attention"),
                   "mlp_out": ("mlp", "feed_forward")}
# layers that norm each branch's output before adding it (Gemma 2 and 3, OLMo 2) carry both of these; their
# branch outputs are those norms' outputs (TransformerLens applies ln1_post / ln2_post before hook_attn_out /
# hook_mlp_out)
_POST_NORMS = {"attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm"}


@dataclass
class TokenBatch:
    """Activations of one length-bucketed batch. `positions[i]` is the input index of row i."""

    positions: list[int]
    input_ids: torch.Tensor  # [B, T]
    pool_mask: torch.Tensor  # [B, T] bool: tokens that may enter a pooled vector
    resid: dict[int, torch.Tensor]  # layer -> [B, T, d_model] residual stream after that layer
    gate: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, T, d_mlp] SiLU(W_gate x)
    offset: int = 0  # leading tokens every row shares and none pools, run once and left out of the tensors
    branches: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # (site, layer) -> [B, T, d_model]

    @property
    def n_tokens(self) -> int:
        return int(self.pool_mask.sum())

    def site(self, kind: str, layer: int) -> torch.Tensor:
        """The activations of site `kind` ('resid' or one of BRANCH_SITES) at `layer`, [B, T, d_model]."""
        return self.resid[layer] if kind == "resid" else self.branches[(kind, layer)]


@dataclass
class Tokenized:
    ids: list[int]
    pool: list[bool]
    truncated: bool


def first_and_pad_ids(tokenizer) -> tuple[int, int]:
    """(the fixed first token every sequence starts with, the padding token): the BOS token, else EOS (SmolLM2's
    tokenizer adds none, and without one the first content token becomes an attention sink of huge norm); the
    pad token, else that first token."""
    bos = tokenizer.bos_token_id
    first = int(bos if bos is not None else tokenizer.eos_token_id)
    return first, int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else first)


def length_batches(lengths: Sequence[int], batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Positions grouped into batches of similar length, longest first, each with at most `batch_tokens`
    padded tokens and `max_batch_size` rows (ties by position, so the plan is deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * width > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder block list of a causal LM (LLaMA-style `model.model.layers`, GPT-2-style `h`, ...)."""
    base = getattr(model, "base_model", model)
    for name in ("layers", "h", "blocks"):
        layers = getattr(base, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ConfigError(f"cannot find the decoder layers of {type(model).__name__}")


def branch_module(layer: nn.Module, kind: str) -> nn.Module:
    """The module of a decoder layer whose output is its branch `kind` (BRANCH_SITES) as added to the residual
    stream: `self_attn` / `mlp` in LLaMA-style layers (LLaMA, Mistral, Qwen, SmolLM2; GPT-2's `attn` / `mlp`),
    the post-branch norms in layers that have them (Gemma 2 and 3, OLMo 2). Refused in one line where the layer
    has neither."""
    if all(isinstance(getattr(layer, name, None), nn.Module) for name in _POST_NORMS.values()):
        return getattr(layer, _POST_NORMS[kind])
    for name in _BRANCH_MODULES[kind]:
        module = getattr(layer, name, None)
        if isinstance(module, nn.Module):
            return module
    what = "attention" if kind == "attn_out" else "MLP"
    raise ConfigError(f"cannot find the {what} module of {type(layer).__name__} (looked for "
                      f"{', '.join(_BRANCH_MODULES[kind])}): mona cannot read the {what} output of this "
                      "architecture; use a residual-stream SAE")


class TruncatedLM:
    """A causal LM cut after the deepest requested layer. The model object is modified in place."""

    def __init__(self, model: nn.Module, tokenizer, layers: Sequence[int] | int | None = None, *,
                 max_length: int = 512, batch_tokens: int = 8192, max_batch_size: int = 64,
                 capture_gate: bool = False, share_prefix: bool = True, sites: Sequence[str] = ()) -> None:
        all_layers = decoder_layers(model)
        n_layers = len(all_layers)
        if layers is None:
            layers = [n_layers - 2]  # the paper reads the penultimate layer
        if isinstance(layers, int):
            layers = [layers]
        self.layers = sorted({int(lyr) if lyr >= 0 else n_layers + int(lyr) for lyr in layers})
        for lyr in self.layers:
            if not 0 <= lyr < n_layers:
                raise ConfigError(f"layer {lyr} out of range: the model has {n_layers} decoder layers "
                                  f"(0..{n_layers - 1})")
        self.n_model_layers = n_layers
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.share_prefix = share_prefix
        self._prefix_cache: dict[tuple[int, ...], Any] = {}
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self.capture_gate = capture_gate
        self.d_model = int(model.config.hidden_size)
        self.device = next(model.parameters()).device  # inputs go there; activations come back to the CPU
        self.base = getattr(model, "base_model", model)
        deepest = self.layers[-1]
        # Drop the layers after the deepest one and the final norm: they never run.
        self._kept = nn.ModuleList(list(all_layers)[: deepest + 1])
        for name in ("layers", "h", "blocks"):
            if isinstance(getattr(self.base, name, None), nn.ModuleList):
                setattr(self.base, name, self._kept)
        for name in ("norm", "ln_f", "final_layernorm"):
            if isinstance(getattr(self.base, name, None), nn.Module):
                setattr(self.base, name, nn.Identity())
        self._captured: dict[tuple[str, int], torch.Tensor] = {}
        self.sites: list[str] = []  # the BRANCH_SITES captured at every layer read
        self.capture(sites)
        for lyr in self.layers:
            self._kept[lyr].register_forward_hook(self._site_hook("resid", lyr))
            if capture_gate:
                mlp = getattr(self._kept[lyr], "mlp", None)
                if mlp is None or not hasattr(mlp, "gate_proj"):
                    raise ConfigError("neuron features need a gated MLP (gate_proj), as in LLaMA-style models")
                mlp.gate_proj.register_forward_hook(self._gate_hook(lyr, mlp.act_fn))
        self.first_token, self.pad_id = first_and_pad_ids(tokenizer)
        self.special_ids = set(tokenizer.all_special_ids)

    def capture(self, sites: Iterable[str]) -> None:
        """Also capture these sites at every layer read ('resid' is always captured; each other site once, by a
        forward hook on its module, branch_module). The shared prefix's key/value reuse and the token offset
        apply to them as to the residual stream."""
        for kind in sites:
            if kind == "resid" or kind in self.sites:
                continue
            if kind not in BRANCH_SITES:
                raise ConfigError(f"mona reads the residual stream and the {' and '.join(BRANCH_SITES)} sites, "
                                  f"not {kind!r}")
            modules = [branch_module(self._kept[lyr], kind) for lyr in self.layers]  # all found, or none hooked
            for lyr, module in zip(self.layers, modules, strict=True):
                module.register_forward_hook(self._site_hook(kind, lyr))
            self.sites.append(kind)

    def _site_hook(self, kind: str, layer: int) -> Callable:
        def hook(_module, _inputs, output):
            # decoder layers and attention modules return tuples (hidden, attention weights, ...)
            self._captured[(kind, layer)] = output[0] if isinstance(output, tuple) else output
        return hook

    def _gate_hook(self, layer: int, act_fn: Callable) -> Callable:
        def hook(_module, _inputs, output):
            self._captured[("gate", layer)] = act_fn(output)
        return hook

    def tokenize(self, items: Sequence[Rendered]) -> list[Tokenized]:
        """Token ids with a fixed first token, and the mask of tokens that may be pooled: inside the
        sample's content spans, not special, not the first token."""
        texts = [item.text for item in items]
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True,
                             truncation=False)
        out = []
        for item, ids, offsets in zip(items, enc["input_ids"], enc["offset_mapping"], strict=True):
            pool = [tid not in self.special_ids and a < b
                    and any(a < end and b > start for start, end in item.spans)
                    for tid, (a, b) in zip(ids, offsets, strict=True)]
            if not ids or ids[0] != self.first_token:
                ids = [self.first_token, *ids]
                pool = [False, *pool]
            else:
                pool[0] = False
            truncated = len(ids) > self.max_length
            out.append(Tokenized(ids[: self.max_length], pool[: self.max_length], truncated))
        return out

    def plan(self, tokenized: Sequence[Tokenized]) -> list[list[int]]:
        """Group inputs of similar length into batches under the token budget (longest first)."""
        return length_batches([len(t.ids) for t in tokenized], self.batch_tokens, self.max_batch_size)

    def pad(self, tokenized: Sequence[Tokenized], positions: list[int]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One right-padded batch on the CPU: (input ids, attention mask, pooling mask), each [B, T]."""
        width = max(len(tokenized[i].ids) for i in positions)
        ids = torch.full((len(positions), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(positions), width), dtype=torch.long)
        pool = torch.zeros((len(positions), width), dtype=torch.bool)
        for row, i in enumerate(positions):
            n = len(tokenized[i].ids)
            ids[row, :n] = torch.tensor(tokenized[i].ids)
            attn[row, :n] = 1
            pool[row, :n] = torch.tensor(tokenized[i].pool)
        return ids, attn, pool

    def shared_prefix(self, tokenized: Sequence[Tokenized], positions: list[int]) -> int:
        """Length of the leading tokens every row of the batch has in common and none pools (the first token and a
        chat template's fixed system prompt), leaving each row at least one token of its own; 0 below
        MIN_SHARED_PREFIX."""
        rows = [tokenized[i] for i in positions]
        limit = min(len(t.ids) for t in rows) - 1
        first = rows[0].ids
        n = 0
        while n < limit and not any(t.pool[n] for t in rows) and all(t.ids[n] == first[n] for t in rows):
            n += 1
        return n if n >= MIN_SHARED_PREFIX else 0

    def _prefix_kv(self, prefix: tuple[int, ...]) -> Any:
        """The key/value cache of a shared prefix, computed once per distinct prefix."""
        from transformers import DynamicCache

        if prefix not in self._prefix_cache:
            if len(self._prefix_cache) >= 8:  # a few distinct system prompts at most; keep memory bounded
                self._prefix_cache.pop(next(iter(self._prefix_cache)))
            cache = DynamicCache()
            ids = torch.tensor([prefix], device=self.device)
            self.base(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True)
            self._prefix_cache[prefix] = cache
        return self._prefix_cache[prefix]

    @torch.inference_mode()
    def forward(self, tokenized: Sequence[Tokenized], positions: list[int]) -> TokenBatch:
        """Run one batch (right-padded) and return the captured activations. A prefix every row shares and none
        pools (`shared_prefix`) runs once and is reused from its key/value cache: with the chat template's
        system prompt that is about a quarter of a short row's tokens. The activations returned start after it
        (`input_ids` and `pool_mask` are cut to match); they agree with a full forward up to float rounding."""
        ids, attn, pool = self.pad(tokenized, positions)
        shared = self.shared_prefix(tokenized, positions) if self.share_prefix else 0
        cache = None
        if shared:  # may run the prefix itself, so before the hooks' captures are cleared
            cache = copy.deepcopy(self._prefix_kv(tuple(tokenized[positions[0]].ids[:shared])))
            cache.batch_repeat_interleave(len(positions))
            ids, pool = ids[:, shared:], pool[:, shared:]
        self._captured.clear()
        self.base(input_ids=ids.to(self.device), attention_mask=attn.to(self.device), past_key_values=cache,
                  use_cache=cache is not None)
        # .cpu() is a no-op for a model on the CPU; from a GPU it keeps every consumer of TokenBatch on the CPU
        resid = {lyr: self._captured[("resid", lyr)].float().cpu() for lyr in self.layers}
        gate = ({lyr: self._captured[("gate", lyr)].float().cpu() for lyr in self.layers} if self.capture_gate
                else {})
        branches = {(kind, lyr): self._captured[(kind, lyr)].float().cpu() for kind in self.sites
                    for lyr in self.layers}
        self._captured.clear()
        return TokenBatch(list(positions), ids, pool, resid, gate, shared, branches)

    def run(self, items: Sequence[Rendered]) -> Iterator[TokenBatch]:
        """Tokenize, bucket by length and yield one TokenBatch per forward pass."""
        tokenized = self.tokenize(items)
        self.last_truncated = sum(t.truncated for t in tokenized)
        for positions in self.plan(tokenized):
            yield self.forward(tokenized, positions)
