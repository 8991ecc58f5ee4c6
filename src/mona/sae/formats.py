"""Converters from the public SAE families' files to the canonical description (`SaeSpec`) and its tensors.

Each family is a `describe` (the config only, cheap: used for k, layer and checks before any weight is read) and
a `tensors` (the weights as mona.sae.spec.Sae takes them). What each follows:
- sparsify (EleutherAI): `cfg.json` + `sae.safetensors` in a hookpoint folder (`layers.N`, `layers.N.mlp`);
  `SparseCoder.encode` and `fused_encoder` (sparsify 1.3), the legacy `signed` flag of EleutherAI/sae's `Sae`.
- SAELens: `cfg.json` + `sae_weights.safetensors`; `handle_pre_6_0_config`, `SAE.process_sae_in` and the
  `encode` of StandardSAE, TopKSAE, JumpReLUSAE, GatedSAE (sae_lens 6); `activation_scaler.json` for the
  expected_average_only_in scale of a checkpoint it was not folded into (`ActivationScaler.save`).
- Gemma Scope: `layer_N/width_W/average_l0_L/params.npz` under its release folder (`gemma-scope-2b-pt-res`, ...);
  the JumpReLUSAE of the Gemma Scope tutorial (no b_dec subtraction).
- Llama Scope: `hyperparams.json` + `checkpoints/final.safetensors`; lm_saes `SparseAutoEncoder.encode` and
  `compute_norm_factor` (dataset-wise norm sqrt(d_model) / E|x| times the input, scalar JumpReLU threshold on
  pre-activations times the decoder norms, `sparsity_include_decoder_norm`).
- dictionary_learning: `ae.pt` + `config.json` (trainer.dict_class); `AutoEncoder`, `AutoEncoderTopK`,
  `BatchTopKSAE` (its inference threshold), `JumpReluAutoEncoder`, `GatedAutoEncoder` `encode`.
- OpenAI GPT-2: `<location>_v5_*/autoencoders/N.pt`; `sparse_autoencoder.model.Autoencoder.from_state_dict`
  (TopK releases layer-normalize each token).
- Goodfire: `*-l<N>.pth` with `encoder_linear`/`decoder_linear`; ReLU(encoder_linear(x)), no b_dec subtraction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from mona.errors import ConfigError, MissingFileError
from mona.sae.spec import Sae, SaeSpec, Site, parse_hookpoint

Tensors = dict[str, torch.Tensor]


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}", path=str(path)) from None


def _torch_load(path: Path) -> dict[str, Any]:
    """A .pt/.pth state dict, never unpickling code (weights_only), memory-mapped where the file allows."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unreadable file is one line for the user, whatever torch raised
        raise ConfigError(f"cannot read SAE weights {path.name}: {str(exc).splitlines()[0]}",
                          path=str(path)) from None


def _state(path: Path) -> dict[str, Any]:
    state = _torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("ae"), dict):  # dictionary_learning's mid-run backup
        state = state["ae"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path.name} holds no state dict", path=str(path))
    return state


def _need(state: dict[str, Any], names: tuple[str, ...], path: Path) -> None:
    missing = [n for n in names if n not in state]
    if missing:
        raise ConfigError(f"SAE weights lack {', '.join(missing)}", path=str(path))


def _refuse(message: str, path: Path) -> ConfigError:
    return ConfigError(message, path=str(path))


# --- sparsify --------------------------------------------------------------------------------------------------

def _describe_sparsify(path: Path) -> SaeSpec:
    cfg_path = path / "cfg.json"
    cfg = _json(cfg_path)
    if cfg.get("signed"):
        raise _refuse("sparsify SAE with \"signed\": true gives negative codes, which mona's sample vectors "
                      "(non-negative, Jaccard) cannot hold", cfg_path)
    if "layer" in cfg and isinstance(cfg["layer"], int):  # trained by mona: residual stream after that layer
        site = Site("resid", int(cfg["layer"]), f"layers.{cfg['layer']}")
    else:
        site = parse_hookpoint(path.name)
        if site.kind == "unknown":  # a renamed folder: sparsify's default hookpoints are the residual stream
            site = Site("resid", None, path.name)
    if cfg.get("transcode"):
        site = Site("mlp_in", site.layer, site.hookpoint)
    activation = cfg.get("activation", "topk")
    if activation not in ("topk", "groupmax"):
        raise _refuse(f"sparsify activation {activation!r} is not one mona knows (topk, groupmax)", cfg_path)
    return SaeSpec("sparsify", activation, site, path / "sae.safetensors", k=int(cfg.get("k", 32)),
                   multi_topk=bool(cfg.get("multi_topk")), raw=cfg)


def _tensors_sparsify(spec: SaeSpec) -> Tensors:
    from safetensors.torch import load_file

    w = load_file(str(spec.weights))
    _need(w, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), spec.weights)
    return {"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}


# --- SAELens ---------------------------------------------------------------------------------------------------

def _saelens_pre6(cfg: dict[str, Any]) -> bool:
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not version:
        return True
    major = re.match(r"(\d+)", str(version))
    return major is None or int(major.group(1)) < 6


def _describe_saelens(path: Path) -> SaeSpec:
    cfg_path = path / "cfg.json"
    cfg = _json(cfg_path)
    meta = cfg.get("metadata") or {}
    # sae_lens handle_pre_6_0_config: hook_point -> hook_name, activation_fn_str -> activation_fn, and a
    # "standard" SAE with activation_fn topk and activation_fn_kwargs.k is a TopK SAE
    hook = cfg.get("hook_name") or cfg.get("hook_point") or meta.get("hook_name") or ""
    activation = cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu"
    kwargs = cfg.get("activation_fn_kwargs") or {}
    arch = cfg.get("architecture") or "standard"
    k = cfg.get("k") or kwargs.get("k")
    if arch == "standard" and activation == "topk":
        if k is None:
            raise _refuse("SAELens config has activation_fn topk but no activation_fn_kwargs.k", cfg_path)
        arch = "topk"
    norm = cfg.get("normalize_activations")
    if isinstance(norm, bool) or norm is None:  # sae_lens < 6: a boolean, True meaning expected_average_only_in
        norm = "expected_average_only_in" if norm else "none"
    site = parse_hookpoint(hook) if hook else Site("unknown", None, "")
    if cfg.get("hook_head_index") is not None or cfg.get("reshape_activations") == "hook_z":
        site = Site("attn_z", site.layer, hook)
    scale, input_norm = 1.0, norm
    if norm == "expected_average_only_in":
        # sae_lens folds this scale into the weights when it saves a final checkpoint (and sets "none"); an SAE
        # still marked with it needs the scale, which SAELens keeps in activation_scaler.json
        scaler = path / "activation_scaler.json"
        factor = _json(scaler).get("scaling_factor") if scaler.exists() else cfg.get("norm_scaling_factor")
        if factor is None:
            raise _refuse("SAELens normalize_activations 'expected_average_only_in' needs its scale: no "
                          "activation_scaler.json beside cfg.json and no norm_scaling_factor in it", cfg_path)
        scale, input_norm = float(factor), "scale"
    elif norm not in ("none", "constant_norm_rescale", "layer_norm"):
        raise _refuse(f"SAELens normalize_activations {norm!r} is not one SAELens defines", cfg_path)
    common = {"site": site, "weights": path / "sae_weights.safetensors", "input_norm": input_norm,
              "input_scale": scale, "apply_b_dec": bool(cfg.get("apply_b_dec_to_input", True)), "raw": cfg}
    if arch == "topk":
        return SaeSpec("saelens", "topk", k=int(k), rescale_by_decoder_norm=bool(
            cfg.get("rescale_acts_by_decoder_norm", False)), **common)
    if arch == "standard":
        if activation != "relu":
            raise _refuse(f"SAELens activation_fn {activation!r} is not supported (relu, topk)", cfg_path)
        return SaeSpec("saelens", "relu", **common)
    if arch in ("jumprelu", "gated"):
        return SaeSpec("saelens", arch, **common)
    if arch in ("batchtopk", "matryoshka_batchtopk"):
        # sae_lens saves these for inference as jumprelu (their threshold); a training save has no threshold
        return SaeSpec("saelens", "jumprelu", **common)
    if "transcoder" in arch:
        return SaeSpec("saelens", "relu", **{**common, "site": Site("mlp_in", site.layer, hook)})
    raise _refuse(f"SAELens architecture {arch!r} is not one mona can encode (standard, topk, jumprelu, gated, "
                  "batchtopk)", cfg_path)


def _tensors_saelens(spec: SaeSpec) -> Tensors:
    from safetensors.torch import load_file

    w = load_file(str(spec.weights))
    _need(w, ("W_enc", "W_dec", "b_dec"), spec.weights)
    out = {"W_enc": w["W_enc"].T, "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    if spec.architecture == "gated":
        _need(w, ("b_gate", "b_mag", "r_mag"), spec.weights)
        out.update(b_enc=w["b_gate"], b_mag=w["b_mag"], r_mag=w["r_mag"])
        return out
    _need(w, ("b_enc",), spec.weights)
    out["b_enc"] = w["b_enc"]
    if spec.architecture == "jumprelu":
        if "threshold" in w:
            out["threshold"] = w["threshold"]
        elif "log_threshold" in w:  # a training save (JumpReLUTrainingSAE)
            out["threshold"] = w["log_threshold"].exp()
        else:
            raise _refuse("SAELens JumpReLU/BatchTopK weights have no threshold", spec.weights)
    return out


# --- Gemma Scope -----------------------------------------------------------------------------------------------

_GEMMA_SITES = (("-transcoders", "mlp_in"), ("-res", "resid"), ("-mlp", "mlp_out"), ("-att", "attn_z"))


def _describe_gemma_scope(file: Path) -> SaeSpec:
    layer, kind, release = None, "unknown", ""
    for part in reversed(file.parent.resolve().parts):
        if layer is None and (m := re.fullmatch(r"layer_(\d+)", part)):
            layer = int(m.group(1))
        if kind == "unknown" and "gemma-scope" in part:
            release = part
            kind = next((k for suffix, k in _GEMMA_SITES if re.search(re.escape(suffix) + r"(\b|-|$)", part)),
                        "unknown")
    hook = f"{release}/layer_{layer}" if release else f"layer_{layer} (no gemma-scope-*-res|mlp|att folder above)"
    return SaeSpec("gemma-scope", "jumprelu", Site(kind, layer, hook), file, apply_b_dec=False)


def _tensors_gemma_scope(spec: SaeSpec) -> Tensors:
    import numpy as np

    with np.load(spec.weights) as npz:
        w = {name: torch.from_numpy(npz[name]) for name in npz.files}
    _need(w, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), spec.weights)
    return {"W_enc": w["W_enc"].T, "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"],
            "threshold": w["threshold"]}


# --- Llama Scope -----------------------------------------------------------------------------------------------

def _describe_llama_scope(path: Path) -> SaeSpec:
    hp_path = path / "hyperparams.json"
    hp = _json(hp_path)
    hook_in = hp.get("hook_point_in") or hp.get("hook_point") or ""
    site = parse_hookpoint(hook_in)
    if hp.get("hook_point_out", hook_in) != hook_in:
        site = Site("mlp_in", site.layer, f"{hook_in} -> {hp['hook_point_out']}")
    if hp.get("use_glu_encoder"):
        raise _refuse("Llama Scope SAE with a GLU encoder is not supported", hp_path)
    # missing keys take lm_saes BaseSAEConfig's defaults (the releases write them all)
    mode = hp.get("norm_activation", "token-wise")
    d_model = int(hp["d_model"])
    if mode == "dataset-wise":  # lm_saes compute_norm_factor: sqrt(d_model) / dataset average norm of the input
        average = (hp.get("dataset_average_activation_norm") or {}).get("in")
        if not average:
            raise _refuse("Llama Scope dataset-wise norm without dataset_average_activation_norm.in", hp_path)
        norm, scale = "scale", math.sqrt(d_model) / float(average)
    elif mode == "token-wise":  # sqrt(d_model) / |x| per token, SAELens' constant_norm_rescale
        norm, scale = "constant_norm_rescale", 1.0
    elif mode == "inference":  # the norm already folded into the weights
        norm, scale = "none", 1.0
    else:
        raise _refuse(f"Llama Scope norm_activation {mode!r} is not supported", hp_path)
    act = str(hp.get("act_fn", "jumprelu")).lower()
    if act not in ("jumprelu", "relu"):
        raise _refuse(f"Llama Scope act_fn {act!r} is not supported (jumprelu, relu)", hp_path)
    weights = path / "checkpoints" / "final.safetensors"
    apply = bool(hp.get("use_decoder_bias", True) and hp.get("apply_decoder_bias_to_pre_encoder", True))
    return SaeSpec("llama-scope", act, site, weights, apply_b_dec=apply, input_norm=norm, input_scale=scale,
                   raw=hp)


def _tensors_llama_scope(spec: SaeSpec) -> Tensors:
    from safetensors.torch import load_file

    w = load_file(str(spec.weights))
    _need(w, ("encoder.weight", "encoder.bias", "decoder.weight"), spec.weights)
    d_model = w["encoder.weight"].shape[1]
    out = {"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"], "W_dec": w["decoder.weight"].T,
           "b_dec": w.get("decoder.bias", torch.zeros(d_model))}
    if spec.architecture == "jumprelu":
        # lm_saes SparseAutoEncoder.encode: the mask is (pre * |W_dec[i]| > threshold) when
        # sparsity_include_decoder_norm (its default, and true in the Llama Scope releases), the code is pre; that
        # is pre > threshold / |W_dec[i]|, one threshold per latent (a zero decoder row never fires)
        threshold = torch.full((w["encoder.weight"].shape[0],), float(spec.raw.get("jump_relu_threshold", 0.0)))
        if spec.raw.get("sparsity_include_decoder_norm", True):
            threshold = threshold / out["W_dec"].float().norm(dim=1)
        out["threshold"] = threshold
    return out


# --- dictionary_learning ---------------------------------------------------------------------------------------

_DL_SITE = re.compile(r"(resid_post|resid_out|resid|mlp_out|attn_out|mlp|attn)_layer_?(\d+)")


def _describe_dictionary_learning(file: Path) -> SaeSpec:
    cfg_path = file.parent / "config.json"
    cfg = _json(cfg_path) if cfg_path.exists() else {}
    trainer = cfg.get("trainer") or {}
    state = _state(file)
    dict_class = trainer.get("dict_class") or _guess_dl_class(state)
    layer = trainer.get("layer")
    names = [str(trainer.get("submodule_name") or ""), *(p for p in reversed(file.parent.parts))]
    site = None
    for name in names:
        if m := _DL_SITE.search(name):
            kind = {"mlp_out": "mlp_out", "mlp": "mlp_out", "attn_out": "attn_out", "attn": "attn_out"}.get(
                m.group(1), "resid")
            site = Site(kind, int(m.group(2)), name)
            break
    if site is None:  # dictionary_learning's trainers read the output of `model...layers[layer]`: the stream
        site = Site("resid", None if layer is None else int(layer), f"layers.{layer}")
    spec: dict[str, Any] = {"site": site, "weights": file, "raw": cfg}
    if dict_class == "AutoEncoderTopK":  # encode(use_threshold=False) by default: TopK
        return SaeSpec("dictionary-learning", "topk", k=int(state["k"]), **spec)
    if dict_class in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):  # encode(use_threshold=True) by default
        return SaeSpec("dictionary-learning", "jumprelu", k=int(state["k"]), **spec)
    if dict_class == "AutoEncoder":
        return SaeSpec("dictionary-learning", "relu", **spec)
    if dict_class == "JumpReluAutoEncoder":  # apply_b_dec_to_input is False unless loaded from SAELens
        return SaeSpec("dictionary-learning", "jumprelu", apply_b_dec=False, **spec)
    if dict_class == "GatedAutoEncoder":
        return SaeSpec("dictionary-learning", "gated", **spec)
    raise _refuse(f"dictionary_learning dict_class {dict_class!r} is not supported", cfg_path)


def _guess_dl_class(state: dict[str, Any]) -> str:
    if "r_mag" in state:
        return "GatedAutoEncoder"
    if "W_enc" in state and "threshold" in state:
        return "JumpReluAutoEncoder"
    if "k" in state:
        return "BatchTopKSAE" if float(state.get("threshold", -1)) >= 0 else "AutoEncoderTopK"
    return "AutoEncoder"


def _tensors_dictionary_learning(spec: SaeSpec) -> Tensors:
    w = _state(spec.weights)
    arch = spec.architecture
    if "r_mag" in w:
        _need(w, ("encoder.weight", "gate_bias", "mag_bias", "decoder.weight", "decoder_bias"), spec.weights)
        return {"W_enc": w["encoder.weight"], "b_enc": w["gate_bias"], "b_mag": w["mag_bias"], "r_mag": w["r_mag"],
                "W_dec": w["decoder.weight"].T, "b_dec": w["decoder_bias"]}
    if "W_enc" in w:  # JumpReluAutoEncoder
        _need(w, ("b_enc", "W_dec", "b_dec", "threshold"), spec.weights)
        return {"W_enc": w["W_enc"].T, "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"],
                "threshold": w["threshold"]}
    _need(w, ("encoder.weight", "encoder.bias", "decoder.weight"), spec.weights)
    out = {"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"], "W_dec": w["decoder.weight"].T,
           "b_dec": w["b_dec"] if "b_dec" in w else w["bias"]}
    if arch == "jumprelu":  # BatchTopKSAE: relu(pre) * (relu(pre) > threshold), one scalar threshold
        out["threshold"] = torch.full((out["W_enc"].shape[0],), float(w["threshold"]))
    return out


# --- OpenAI GPT-2 ----------------------------------------------------------------------------------------------

_OPENAI_SITES = {"resid_post_mlp": "resid", "resid_post_attn": "resid_mid", "resid_delta_mlp": "mlp_out",
                 "resid_delta_attn": "attn_out", "mlp_post_act": "mlp_hidden"}


def _describe_openai(file: Path) -> SaeSpec:
    state = _state(file)
    activation = state.get("activation", "ReLU")
    layer = int(file.stem) if file.stem.isdigit() else None
    kind, hook = "unknown", file.name
    for part in reversed(file.parent.parts):
        if loc := next((name for name in _OPENAI_SITES if part.startswith(name)), None):
            kind, hook = _OPENAI_SITES[loc], f"{part}/{file.name}"
            break
    site = Site(kind, layer, hook)
    if activation == "TopK":  # Autoencoder.from_state_dict: TopK releases layer-normalize their inputs
        k = int((state.get("activation_state_dict") or {}).get("k", 0))
        return SaeSpec("openai", "topk", site, file, k=k, input_norm="layer_norm")
    if activation == "ReLU":
        return SaeSpec("openai", "relu", site, file)
    raise _refuse(f"OpenAI autoencoder activation {activation!r} is not supported (TopK, ReLU)", file)


def _tensors_openai(spec: SaeSpec) -> Tensors:
    w = _state(spec.weights)
    _need(w, ("pre_bias", "encoder.weight", "latent_bias", "decoder.weight"), spec.weights)
    return {"W_enc": w["encoder.weight"], "b_enc": w["latent_bias"], "W_dec": w["decoder.weight"].T,
            "b_dec": w["pre_bias"]}


# --- Goodfire --------------------------------------------------------------------------------------------------

def _describe_goodfire(file: Path) -> SaeSpec:
    m = re.search(r"-l(\d+)(?:\D|$)", file.stem)
    layer = int(m.group(1)) if m else None
    # Goodfire's SAEs read the residual stream output of model.model.layers[N] (the `-lN` of the file name)
    return SaeSpec("goodfire", "relu", Site("resid", layer, f"layers.{layer}"), file, apply_b_dec=False)


def _tensors_goodfire(spec: SaeSpec) -> Tensors:
    w = _state(spec.weights)
    _need(w, ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight", "decoder_linear.bias"),
          spec.weights)
    return {"W_enc": w["encoder_linear.weight"], "b_enc": w["encoder_linear.bias"],
            "W_dec": w["decoder_linear.weight"].T, "b_dec": w["decoder_linear.bias"]}


# --- detection -------------------------------------------------------------------------------------------------

_TENSORS: dict[str, Callable[[SaeSpec], Tensors]] = {
    "sparsify": _tensors_sparsify, "saelens": _tensors_saelens, "gemma-scope": _tensors_gemma_scope,
    "llama-scope": _tensors_llama_scope, "dictionary-learning": _tensors_dictionary_learning,
    "openai": _tensors_openai, "goodfire": _tensors_goodfire,
}
LAYOUTS = ("sparsify (cfg.json + sae.safetensors), SAELens (cfg.json + sae_weights.safetensors), Gemma Scope "
           "(params.npz), Llama Scope (hyperparams.json + checkpoints/final.safetensors), dictionary_learning "
           "(ae.pt + config.json), OpenAI (N.pt), Goodfire (.pth)")


def _describe_torch_file(file: Path) -> SaeSpec:
    state = _state(file)
    if "encoder_linear.weight" in state:
        return _describe_goodfire(file)
    if "pre_bias" in state and "latent_bias" in state:
        return _describe_openai(file)
    if any(n in state for n in ("encoder.weight", "W_enc")):
        return _describe_dictionary_learning(file)
    raise _refuse("SAE weights of no family mona knows (" + LAYOUTS + ")", file)


def describe_uncached(path: Path) -> SaeSpec:
    """The canonical description of the SAE at `path` (a folder or a weights file), read from its config."""
    if path.is_file():
        if path.suffix == ".npz":
            return _describe_gemma_scope(path)
        if path.suffix in (".pt", ".pth"):
            return _describe_torch_file(path)
        raise _refuse("not an SAE weights file (.npz, .pt, .pth) or folder", path)
    if (path / "sae.safetensors").exists():
        if not (path / "cfg.json").exists():
            raise MissingFileError("SAE directory has no cfg.json", path=str(path))
        return _describe_sparsify(path)
    if (path / "sae_weights.safetensors").exists():
        if not (path / "cfg.json").exists():
            raise MissingFileError("SAE directory has no cfg.json", path=str(path))
        return _describe_saelens(path)
    if (path / "hyperparams.json").exists() and (path / "checkpoints" / "final.safetensors").exists():
        return _describe_llama_scope(path)
    if (path / "params.npz").exists():
        return _describe_gemma_scope(path / "params.npz")
    if (path / "ae.pt").exists():
        return _describe_dictionary_learning(path / "ae.pt")
    files = sorted(p for p in path.iterdir() if p.suffix in (".pt", ".pth")) if path.is_dir() else []
    if len(files) == 1:
        return _describe_torch_file(files[0])
    raise MissingFileError("SAE directory in no layout mona knows: expected " + LAYOUTS, path=str(path))


@lru_cache(maxsize=32)
def _describe_cached(path: str, stamp: tuple) -> SaeSpec:
    return describe_uncached(Path(path))


def describe(path: Path) -> SaeSpec:
    """`describe_uncached`, kept while the SAE's files stay as they were (featurizers, the CLI and the checks each
    ask for it)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError("SAE not found", path=str(path))
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _describe_cached(str(path.resolve()), stamp)


def read_sae(path: Path) -> Sae:
    """The SAE at `path`, described and loaded, as float32 on the CPU."""
    spec = describe(path)
    if not spec.weights.exists():
        raise MissingFileError("SAE weights file not found", path=str(spec.weights))
    tensors = {n: t.float() for n, t in _TENSORS[spec.family](spec).items()}
    try:
        return Sae(spec, **tensors)
    except ValueError as exc:
        raise ConfigError(str(exc), path=str(spec.weights)) from None
