"""One encode function per SAE architecture, each reading only the canonical description (`SaeSpec`) and its
tensors. Each returns the per-token codes as (values [N, w], indices [N, w]): for TopK w = k; for the
architectures whose number of active latents varies per token (JumpReLU, ReLU, gated) w = the most any token of
the batch has (at least 1), the rest padded with zero values on distinct latents of that token."""

from __future__ import annotations

import math

import torch

from mona.sae.spec import Sae


def normalize_input(sae: Sae, x: torch.Tensor) -> torch.Tensor:
    """The SAE's input transform, then b_dec subtracted if the SAE does so (SAELens `process_sae_in`: norm first,
    then `- b_dec * apply_b_dec_to_input`; Llama Scope's lm_saes `encode` and OpenAI's `Autoencoder.encode` in the
    same order)."""
    spec = sae.spec
    x = x.to(sae.dtype)
    if spec.input_norm == "scale":
        x = x * spec.input_scale
    elif spec.input_norm == "constant_norm_rescale":  # SAELens: x * sqrt(d_in) / |x|
        x = x * (math.sqrt(sae.d_in) / x.norm(dim=-1, keepdim=True))
    elif spec.input_norm == "layer_norm":  # SAELens run_time_activation_ln_in and OpenAI's LN: eps outside std
        x = x - x.mean(dim=-1, keepdim=True)
        x = x / (x.std(dim=-1, keepdim=True) + 1e-5)
    return x - sae.b_dec if spec.apply_b_dec else x


def pre_activations(sae: Sae, x: torch.Tensor) -> torch.Tensor:
    """W_enc (normalized x) + b_enc, [N, d_sae], rescaled by the decoder norms if the SAE says so."""
    pre = torch.addmm(sae.b_enc, normalize_input(sae, x), sae.W_enc.T)
    if sae.spec.rescale_by_decoder_norm:  # SAELens TopKSAE.encode: hidden_pre * W_dec.norm(dim=-1)
        pre = pre * sae.decoder_norm
    return pre


def encode_topk(sae: Sae, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """TopK(ReLU(pre)) with k codes (sparsify `fused_encoder`, SAELens `TopK`, OpenAI `TopK`, dictionary_learning
    `AutoEncoderTopK`), computed as ReLU(TopK(pre)): ReLU is monotone, so the top k agree wherever a code is
    positive, and skipping the ReLU over all latents made encoding 12 % faster here (1.78 s vs 2.02 s for 4,000
    tokens x 9,216 latents on one thread)."""
    pre = pre_activations(sae, x)
    values, indices = pre.topk(min(k, sae.num_latents), dim=1, sorted=False)
    return values.clamp_(min=0), indices


def encode_groupmax(sae: Sae, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sparsify's groupmax: the latents split into k equal groups, the largest ReLU(pre) of each."""
    pre = pre_activations(sae, x).clamp_(min=0)
    values, within = pre.unflatten(-1, (k, -1)).max(dim=-1)
    offsets = torch.arange(0, sae.num_latents, sae.num_latents // k, device=pre.device)
    return values, within + offsets


def _active(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nonzero codes of a dense [N, d_sae] matrix as (values, indices) of the width of its densest row."""
    width = max(1, int((codes != 0).sum(dim=1).max())) if codes.shape[0] else 1
    return codes.topk(min(width, codes.shape[1]), dim=1, sorted=False)


def encode_jumprelu(sae: Sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU(pre) where pre > threshold (SAELens `JumpReLUSAE.encode`, Gemma Scope's `JumpReLUSAE.encode`,
    dictionary_learning `JumpReluAutoEncoder.encode`, and BatchTopK's inference threshold; Llama Scope's lm_saes
    `pre.where(pre > threshold, 0)` is the same for its positive threshold). A latent whose threshold no input
    reaches never fires: there is no TopK fallback."""
    pre = pre_activations(sae, x)
    assert sae.threshold is not None
    return _active(pre.relu() * (pre > sae.threshold))


def encode_relu(sae: Sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU(pre) (SAELens `StandardSAE`, dictionary_learning `AutoEncoder`, Goodfire, OpenAI's ReLU releases)."""
    return _active(pre_activations(sae, x).relu_())


def encode_gated(sae: Sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated SAE: 1[W x' + b_gate > 0] * ReLU(exp(r_mag) * (W x') + b_mag) (SAELens `GatedSAE.encode`,
    dictionary_learning `GatedAutoEncoder.encode`), with `b_enc` the gate bias."""
    assert sae.r_mag is not None and sae.b_mag is not None
    shared = normalize_input(sae, x) @ sae.W_enc.T
    gate = (shared + sae.b_enc) > 0
    magnitude = (shared * sae.r_mag.exp() + sae.b_mag).relu_()
    return _active(magnitude * gate)


def encode_codes(sae: Sae, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token codes of activations x [N, d_in] with the SAE's own architecture, on the SAE's device. `k`:
    keep at most the k largest (fewer than a TopK SAE's k, or any number for a MultiTopK SAE and for the
    architectures without a k)."""
    spec = sae.spec
    if spec.architecture == "topk":
        own = int(spec.k or 0)
        values, indices = encode_topk(sae, x, k if spec.multi_topk and k is not None else own)
    elif spec.architecture == "groupmax":
        values, indices = encode_groupmax(sae, x, int(spec.k or 0))
    elif spec.architecture == "jumprelu":
        values, indices = encode_jumprelu(sae, x)
    elif spec.architecture == "relu":
        values, indices = encode_relu(sae, x)
    else:
        values, indices = encode_gated(sae, x)
    if k is not None and k < values.shape[1]:
        values, order = values.topk(k, dim=1)
        indices = indices.gather(1, order)
    return values, indices
