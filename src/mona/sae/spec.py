"""The one description of an SAE that every converter fills (`SaeSpec`: how it encodes and which activations it
reads), the site parsed from a hookpoint name (`Site`), and the loaded SAE itself (`Sae`: a spec and its tensors).

Every public family differs only in the fields of `SaeSpec`; `mona.sae.encoders` holds one encode function per
architecture and reads nothing else."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ARCHITECTURES = ("topk", "groupmax", "jumprelu", "relu", "gated")
INPUT_NORMS = ("none", "scale", "constant_norm_rescale", "layer_norm")
SITE_KINDS = ("resid", "resid_mid", "mlp_out", "attn_out", "attn_z", "mlp_in", "mlp_hidden", "embed", "unknown")

_SITE_WORDS = {
    "resid": "the residual stream after decoder layer {layer}",
    "resid_mid": "the residual stream between attention and MLP of layer {layer}",
    "mlp_out": "the MLP output of layer {layer}",
    "attn_out": "the attention output of layer {layer}",
    "attn_z": "the attention heads' outputs before the output projection (hook_z) of layer {layer}",
    "mlp_in": "the MLP input of layer {layer} (a transcoder)",
    "mlp_hidden": "the MLP's hidden neurons of layer {layer}",
    "embed": "the token embeddings",
    "unknown": "an activation mona cannot place",
}


@dataclass(frozen=True)
class Site:
    """Where an SAE reads the model: `kind` (one of SITE_KINDS) at decoder layer `layer` (0-based, the HF module
    index), named `hookpoint` as the SAE's own files name it."""

    kind: str
    layer: int | None
    hookpoint: str = ""

    def describe(self) -> str:
        """The site in words, for messages."""
        return _SITE_WORDS[self.kind].format(layer=self.layer)


# TransformerLens hook names (SAELens, Gemma Scope, Llama Scope, OpenAI) -> site kinds. hook_resid_pre of block N
# is the stream *entering* block N, i.e. after decoder layer N - 1.
_TL_HOOKS = {
    "hook_resid_post": "resid", "hook_resid_pre": "resid", "hook_resid_mid": "resid_mid",
    "hook_mlp_out": "mlp_out", "hook_attn_out": "attn_out", "attn.hook_z": "attn_z", "hook_z": "attn_z",
    "mlp.hook_post": "mlp_hidden", "mlp.hook_pre": "mlp_hidden", "hook_mlp_in": "mlp_in",
    "ln2.hook_normalized": "mlp_in",
}


def parse_hookpoint(name: str) -> Site:
    """The site a hookpoint name denotes: sparsify's `layers.N` (residual stream after layer N) and `layers.N.mlp`
    (MLP output), TransformerLens' `blocks.N.hook_resid_post` (after layer N), `blocks.N.hook_resid_pre` (after
    layer N - 1; the embeddings for N = 0), `blocks.N.hook_mlp_out`, `blocks.N.hook_attn_out`,
    `blocks.N.attn.hook_z`, and HF module paths such as `model.layers.N`. Anything else is `unknown`."""
    name = name.strip()
    if m := re.fullmatch(r"(?:[\w.]*\.)?(?:layers|h)\.(\d+)(?:\.(\w+))?", name):
        layer, sub = int(m.group(1)), m.group(2)
        kind = {None: "resid", "mlp": "mlp_out", "self_attn": "attn_out", "attn": "attn_out",
                "attention": "attn_out"}.get(sub, "unknown")
        return Site(kind, layer, name)
    if m := re.fullmatch(r"blocks\.(\d+)\.(.+)", name):
        layer, hook = int(m.group(1)), m.group(2)
        kind = _TL_HOOKS.get(hook, "unknown")
        if hook == "hook_resid_pre":
            return Site("resid", layer - 1, name) if layer > 0 else Site("embed", None, name)
        return Site(kind, layer, name)
    if name in ("hook_embed", "embed", "embed_tokens"):
        return Site("embed", None, name)
    return Site("unknown", None, name)


@dataclass(frozen=True)
class SaeSpec:
    """How an SAE encodes, filled by its family's converter (mona.sae.formats):

    codes = act(W_enc (norm(x) - b_dec * apply_b_dec) + b_enc), where norm is `input_norm` (none; `scale`: times
    `input_scale`, SAELens' expected_average_only_in and Llama Scope's dataset-wise norm sqrt(d) / E|x|;
    `constant_norm_rescale`: x * sqrt(d) / |x|; `layer_norm`: per token (x - mean) / (std + 1e-5), OpenAI's and
    SAELens'), and act is `architecture`: topk (TopK(ReLU), `k` codes; `multi_topk`: trained to run at larger k
    too), groupmax (sparsify: the max of each of k groups), jumprelu (ReLU(pre) where pre > threshold, per latent:
    JumpReLU, BatchTopK's inference threshold), relu, gated (SAELens/dictionary_learning: gate pre > 0 times
    ReLU(magnitude)). `rescale_by_decoder_norm`: pre is multiplied by each latent's decoder norm before the
    activation (SAELens TopK's `rescale_acts_by_decoder_norm`)."""

    family: str
    architecture: str
    site: Site
    weights: Path  # the file holding the weights (its hash keys the cache)
    k: int | None = None
    multi_topk: bool = False
    apply_b_dec: bool = True
    input_norm: str = "none"
    input_scale: float = 1.0
    rescale_by_decoder_norm: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # the family's own config, as read

    def __post_init__(self) -> None:
        assert self.architecture in ARCHITECTURES, self.architecture
        assert self.input_norm in INPUT_NORMS, self.input_norm
        assert self.site.kind in SITE_KINDS, self.site.kind
        assert self.architecture not in ("topk", "groupmax") or self.k, "a TopK SAE needs its k"

    def metadata(self) -> dict[str, Any]:
        """The family's config with the canonical fields on top (`layer` is the decoder layer the SAE reads)."""
        return {**self.raw, "format": self.family, "architecture": self.architecture, "k": self.k,
                "site": self.site.kind, "hookpoint": self.site.hookpoint, "layer": self.site.layer}


class Sae:
    """A loaded SAE: its spec and float32 tensors. `W_enc` is [d_sae, d_in] (one row per latent, as nn.Linear and
    sparsify store it), `W_dec` [d_sae, d_in]; `threshold` [d_sae] for jumprelu; `b_mag`, `r_mag` for gated (whose
    `b_enc` is the gate bias)."""

    def __init__(self, spec: SaeSpec, *, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor,
                 b_dec: torch.Tensor, threshold: torch.Tensor | None = None, b_mag: torch.Tensor | None = None,
                 r_mag: torch.Tensor | None = None) -> None:
        self.spec = spec
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.threshold, self.b_mag, self.r_mag = threshold, b_mag, r_mag
        d_sae, d_in = W_enc.shape
        if b_enc.shape != (d_sae,) or W_dec.shape != (d_sae, d_in) or b_dec.shape != (d_in,):
            raise ValueError(f"inconsistent SAE shapes: W_enc {tuple(W_enc.shape)}, b_enc {tuple(b_enc.shape)}, "
                             f"W_dec {tuple(W_dec.shape)}, b_dec {tuple(b_dec.shape)}")
        if spec.architecture == "jumprelu" and (threshold is None or threshold.shape != (d_sae,)):
            raise ValueError("a JumpReLU SAE needs one threshold per latent")
        self._decoder_norm: torch.Tensor | None = None

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def num_latents(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def decoder_norm(self) -> torch.Tensor:
        """Each latent's decoder norm |W_dec[i]| (computed once)."""
        if self._decoder_norm is None:
            self._decoder_norm = self.W_dec.norm(dim=1)
        return self._decoder_norm

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec,
                "threshold": self.threshold, "b_mag": self.b_mag, "r_mag": self.r_mag}

    def to(self, device: str | torch.device) -> Sae:
        """This SAE with its tensors on `device`."""
        moved = {n: None if t is None else t.to(device) for n, t in self._tensors().items()}
        return Sae(self.spec, **moved)  # type: ignore[arg-type]

    @torch.inference_mode()
    def decode(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Reconstruction from codes (values, indices) [N, k] in the SAE's input space (before any input norm is
        undone): sum_i values_i W_dec[i] + b_dec, with the decoder-norm rescaling undone first."""
        values = values.to(self.dtype)
        if self.spec.rescale_by_decoder_norm:
            values = values / self.decoder_norm[indices]
        # a weighted sum of decoder rows: no dense [N, d_sae] matrix (zero-padded codes add nothing)
        return torch.nn.functional.embedding_bag(indices, self.W_dec, per_sample_weights=values,
                                                 mode="sum") + self.b_dec
