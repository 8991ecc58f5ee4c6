"""Every public SAE family: a tiny SAE built here in that family's exact layout (file names and keys of the public
releases, random weights) loads, and mona's per-token codes equal a reference encode written from that library's
published formula (independently of mona.sae.encoders); the sites mona cannot read are refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from conftest import ACCELERATORS
from mona.errors import ConfigError
from mona.sae.spec import parse_hookpoint
from mona.sae.topk import check_width, encode, load_sae, resolve_sae_path, sae_fingerprint, sae_k, sae_metadata

D_IN, D_SAE, K = 16, 48, 6


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(n: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=_gen(seed)) * 2 + 0.5


def _dense(values: torch.Tensor, indices: torch.Tensor, width: int = D_SAE) -> torch.Tensor:
    return torch.zeros(values.shape[0], width).scatter_(1, indices, values.float())


def _topk_dense(acts: torch.Tensor, k: int) -> torch.Tensor:
    vals, idx = acts.topk(k, dim=1)
    return torch.zeros_like(acts).scatter_(1, idx, vals)


def _check(path, reference: torch.Tensor, x: torch.Tensor, **kw) -> None:
    sae = load_sae(path, **kw)
    ours = _dense(*encode(sae, x), sae.num_latents)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert (ours > 0).any()  # the reference is not trivially empty
    assert len(sae_fingerprint(resolve_sae_path(path, kw.get("layer")))) == 16


def _weights(seed: int = 0, d_in: int = D_IN) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {"W_enc": torch.randn(d_in, D_SAE, generator=g) / math.sqrt(d_in),
            "b_enc": torch.randn(D_SAE, generator=g) * 0.2,
            "W_dec": torch.randn(D_SAE, d_in, generator=g) * torch.rand(D_SAE, 1, generator=g) * 2,
            "b_dec": torch.randn(d_in, generator=g) * 0.3}


# --- sparsify --------------------------------------------------------------------------------------------------

def _sparsify_dir(path: Path, w: dict, **cfg) -> Path:
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"expansion_factor": 3, "normalize_decoder": True,
                                               "num_latents": D_SAE, "k": K, "d_in": len(w["b_dec"]), **cfg}))
    save_file({"encoder.weight": w["W_enc"].T.contiguous(), "encoder.bias": w["b_enc"], "W_dec": w["W_dec"],
               "b_dec": w["b_dec"]}, str(path / "sae.safetensors"))
    return path


def test_sparsify_release_folder_picks_the_layer(tmp_path):
    # EleutherAI/sae-llama-3-8b-32x layout: one folder per hookpoint, cfg.json with the legacy "signed": false
    release = tmp_path / "sae-llama-3-8b-32x"
    weights = {n: _weights(n) for n in range(3)}
    for n in range(3):
        _sparsify_dir(release / f"layers.{n}", weights[n], signed=False)
    _sparsify_dir(release / "layers.1.mlp", _weights(9))
    x = _x()
    w = weights[1]
    reference = _topk_dense(torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]), K)
    _check(release, reference, x, layer=1)
    assert resolve_sae_path(release, 1).name == "layers.1"
    meta = sae_metadata(release / "layers.1")
    assert (meta["format"], meta["layer"], meta["site"], meta["k"]) == ("sparsify", 1, "resid", K)
    with pytest.raises(ConfigError, match="pass --layer") as info:
        resolve_sae_path(release)
    assert "layers.0" in str(info.value)
    with pytest.raises(ConfigError, match="no hookpoint for layer 7"):
        resolve_sae_path(release, 7)


def test_sparsify_mlp_reads_the_mlp_output_and_transcoder_and_signed_are_refused(tmp_path):
    mlp = _sparsify_dir(tmp_path / "sae-llama-3.1-8b-64x" / "layers.23.mlp", _weights())
    check_width(load_sae(mlp), D_IN, sae_path=mlp, layer=23, sae_layer=23)  # a site mona reads
    assert (sae_metadata(mlp)["site"], sae_metadata(mlp)["layer"]) == ("mlp_out", 23)
    assert sae_fingerprint(mlp).endswith("@mlp_out")  # the site is in every cache key
    tc = _sparsify_dir(tmp_path / "tc" / "layers.4.mlp", _weights(), transcode=True)
    with pytest.raises(ConfigError, match="transcoder"):
        check_width(load_sae(tc), D_IN, sae_path=tc)
    signed = _sparsify_dir(tmp_path / "signed" / "layers.2", _weights(), signed=True)
    with pytest.raises(ConfigError, match="signed"):
        load_sae(signed)


def test_sparsify_multi_topk_runs_at_larger_k(tmp_path):
    path = _sparsify_dir(tmp_path / "layers.3", _weights(), multi_topk=True)
    assert sae_k(path) is None  # no cap: MultiTopK SAEs are trained to run at larger k
    x = _x()
    w = _weights()
    values, indices = encode(load_sae(path), x, k=4 * K)
    assert values.shape == (64, 4 * K)
    reference = _topk_dense(torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]), 4 * K)
    torch.testing.assert_close(_dense(values, indices), reference, rtol=1e-5, atol=1e-5)


# --- SAELens ---------------------------------------------------------------------------------------------------

def _saelens_dir(path: Path, w: dict, cfg: dict, extra: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"d_in": len(w["b_dec"]), "d_sae": D_SAE,
                                               "hook_name": "blocks.2.hook_resid_post", **cfg}))
    save_file({**w, **(extra or {})}, str(path / "sae_weights.safetensors"))
    return path


def _saelens_in(x, w, norm="none", apply_b_dec=True, scale=1.0):
    """sae_lens SAE.process_sae_in, written out."""
    if norm == "constant_norm_rescale":
        x = x * math.sqrt(D_IN) / x.norm(dim=-1, keepdim=True)
    elif norm == "layer_norm":
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.std(-1, keepdim=True) + 1e-5)
    x = x * scale
    return x - w["b_dec"] if apply_b_dec else x


def test_saelens_topk_rescales_by_decoder_norm(tmp_path):
    w = _weights()
    path = _saelens_dir(tmp_path / "s", w, {"architecture": "topk", "k": K, "rescale_acts_by_decoder_norm": True,
                                            "apply_b_dec_to_input": True, "normalize_activations": "none",
                                            "sae_lens_version": "6.5.1"})
    x = _x()
    hidden = (_saelens_in(x, w) @ w["W_enc"] + w["b_enc"]) * w["W_dec"].norm(dim=-1)
    reference = _topk_dense(hidden, K).relu()
    _check(path, reference, x)
    # without the rescaling the top-k set differs: the flag matters
    plain = _topk_dense(_saelens_in(x, w) @ w["W_enc"] + w["b_enc"], K).relu()
    assert not torch.equal(reference > 0, plain > 0)


def test_saelens_pre6_topk_and_boolean_normalize(tmp_path):
    w = _weights(2)
    # sae_lens < 6: architecture standard, activation_fn_str topk, k in activation_fn_kwargs, a boolean norm
    path = _saelens_dir(tmp_path / "old", w, {"architecture": "standard", "activation_fn_str": "topk",
                                              "activation_fn_kwargs": {"k": K}, "normalize_activations": False,
                                              "hook_point": "blocks.3.hook_resid_pre", "sae_lens_version": "3.12.1"})
    assert sae_k(path) == K and sae_metadata(path)["layer"] == 2  # resid_pre of block 3 = after layer 2
    x = _x()
    _check(path, _topk_dense(_saelens_in(x, w) @ w["W_enc"] + w["b_enc"], K).relu(), x)


@pytest.mark.parametrize("norm", ["constant_norm_rescale", "layer_norm", "expected_average_only_in"])
def test_saelens_standard_relu_with_input_norms(tmp_path, norm):
    w = _weights(3)
    path = _saelens_dir(tmp_path / "s", w, {"architecture": "standard", "activation_fn": "relu",
                                            "normalize_activations": norm, "apply_b_dec_to_input": False})
    scale = 1.0
    if norm == "expected_average_only_in":  # a checkpoint SAELens did not fold its scale into
        scale = 0.37
        (path / "activation_scaler.json").write_text(json.dumps({"scaling_factor": scale}))
    x = _x()
    norm_in = "none" if norm == "expected_average_only_in" else norm
    reference = torch.relu(_saelens_in(x, w, norm_in, apply_b_dec=False, scale=scale) @ w["W_enc"] + w["b_enc"])
    _check(path, reference, x)
    assert sae_k(path) is None


def test_saelens_jumprelu_and_gated(tmp_path):
    w = _weights(4)
    threshold = torch.rand(D_SAE, generator=_gen(5)) * 0.8
    jr = _saelens_dir(tmp_path / "jr", w, {"architecture": "jumprelu"}, {"threshold": threshold})
    x = _x()
    pre = _saelens_in(x, w) @ w["W_enc"] + w["b_enc"]
    _check(jr, pre.relu() * (pre > threshold), x)
    g = _gen(6)
    gated_w = {"W_enc": w["W_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    extra = {"b_gate": torch.randn(D_SAE, generator=g) * 0.3, "b_mag": torch.randn(D_SAE, generator=g) * 0.3,
             "r_mag": torch.randn(D_SAE, generator=g) * 0.2}
    gated = _saelens_dir(tmp_path / "gated", gated_w, {"architecture": "gated"}, extra)
    sae_in = _saelens_in(x, w)
    reference = ((sae_in @ w["W_enc"] + extra["b_gate"]) > 0) * torch.relu(
        sae_in @ (w["W_enc"] * extra["r_mag"].exp()) + extra["b_mag"])
    _check(gated, reference, x)


def test_jumprelu_threshold_nothing_reaches_fires_nothing(tmp_path):
    w = _weights(4)
    path = _saelens_dir(tmp_path / "jr", w, {"architecture": "jumprelu"}, {"threshold": torch.full((D_SAE,), 1e6)})
    values, _ = encode(load_sae(path), _x())
    assert values.shape[1] >= 1 and (values == 0).all()  # no TopK fallback


@pytest.mark.parametrize(("hook", "words"), [
    ("blocks.2.attn.hook_z", "hook_z"),
    ("blocks.2.hook_resid_mid", "between attention and MLP"),
    ("blocks.2.ln2.hook_normalized", "MLP input of layer 2"),
])
def test_saelens_sites_mona_does_not_read_are_refused(tmp_path, hook, words):
    path = _saelens_dir(tmp_path / "s", _weights(), {"architecture": "topk", "k": K, "hook_name": hook})
    with pytest.raises(ConfigError, match=words) as info:
        check_width(load_sae(path), D_IN, sae_path=path, layer=2, sae_layer=sae_metadata(path)["layer"])
    assert "residual stream" in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("hook", "kind"), [("blocks.2.hook_mlp_out", "mlp_out"),
                                            ("blocks.2.hook_attn_out", "attn_out")])
def test_saelens_mlp_and_attention_output_sites_are_read(tmp_path, hook, kind):
    path = _saelens_dir(tmp_path / "s", _weights(), {"architecture": "topk", "k": K, "hook_name": hook})
    check_width(load_sae(path), D_IN, sae_path=path, layer=2, sae_layer=sae_metadata(path)["layer"])
    assert sae_metadata(path)["site"] == kind


def test_hookpoint_names():
    assert parse_hookpoint("layers.5") == parse_hookpoint("layers.5").__class__("resid", 5, "layers.5")
    assert (parse_hookpoint("layers.5.mlp").kind, parse_hookpoint("layers.5.mlp").layer) == ("mlp_out", 5)
    assert (parse_hookpoint("blocks.7.hook_resid_post").kind, parse_hookpoint("blocks.7.hook_resid_post").layer) \
        == ("resid", 7)
    assert parse_hookpoint("blocks.7.hook_resid_pre").layer == 6
    assert parse_hookpoint("blocks.0.hook_resid_pre").kind == "embed"
    assert parse_hookpoint("model.layers.12").layer == 12
    assert parse_hookpoint("blocks.3.attn.hook_z").kind == "attn_z"
    assert parse_hookpoint("something.else").kind == "unknown"


# --- Gemma Scope -----------------------------------------------------------------------------------------------

def _gemma(root: Path, release: str, w: dict, threshold: torch.Tensor, layer: int = 2) -> Path:
    folder = root / release / f"layer_{layer}" / "width_16k" / "average_l0_7"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **{n: t.numpy() for n, t in w.items()}, threshold=threshold.numpy())
    return folder


def test_gemma_scope_jumprelu_without_b_dec_subtraction(tmp_path):
    w = _weights(7)
    threshold = torch.rand(D_SAE, generator=_gen(8)) * 0.5
    folder = _gemma(tmp_path, "gemma-scope-2b-pt-res", w, threshold)
    x = _x()
    pre = x @ w["W_enc"] + w["b_enc"]  # the Gemma Scope tutorial's JumpReLUSAE.encode: no b_dec subtraction
    reference = (pre > threshold) * torch.relu(pre)
    _check(folder, reference, x)
    _check(folder / "params.npz", reference, x)
    meta = sae_metadata(folder)
    assert (meta["format"], meta["site"], meta["layer"], meta["architecture"]) == ("gemma-scope", "resid", 2,
                                                                                   "jumprelu")
    mlp = _gemma(tmp_path, "gemma-scope-2b-pt-mlp", w, threshold)  # hook_mlp_out: read after Gemma 2's post-norm
    check_width(load_sae(mlp), D_IN, sae_path=mlp, layer=2, sae_layer=2)
    assert sae_metadata(mlp)["site"] == "mlp_out"
    att = _gemma(tmp_path, "gemma-scope-2b-pt-att", w, threshold)
    with pytest.raises(ConfigError, match="hook_z"):
        check_width(load_sae(att), D_IN, sae_path=att)
    loose = _gemma(tmp_path, "downloads", w, threshold)  # no release name above: the site is unknown
    with pytest.raises(ConfigError, match="gemma-scope"):
        check_width(load_sae(loose), D_IN, sae_path=loose)


# --- Llama Scope -----------------------------------------------------------------------------------------------

def _llama_scope(root: Path, w: dict, layer: int, average: float, threshold: float, **hyperparams) -> Path:
    """A Llama Scope hookpoint folder (fnlp/Llama3_1-8B-Base-LXR-8x layout) inside its release folder."""
    folder = root / "Llama3_1-8B-Base-LXR-8x" / f"Llama3_1-8B-Base-L{layer}R-8x"
    (folder / "checkpoints").mkdir(parents=True)
    hook = f"blocks.{layer}.hook_resid_post"
    (folder / "hyperparams.json").write_text(json.dumps({
        "hook_point_in": hook, "hook_point_out": hook, "d_model": len(w["b_dec"]), "d_sae": D_SAE,
        "act_fn": "jumprelu", "jump_relu_threshold": threshold, "norm_activation": "dataset-wise",
        "dataset_average_activation_norm": {"in": average, "out": average},
        "apply_decoder_bias_to_pre_encoder": False, "use_decoder_bias": True, "sparsity_include_decoder_norm": True,
        "top_k": 50, **hyperparams}))
    save_file({"encoder.weight": w["W_enc"].T.contiguous(), "encoder.bias": w["b_enc"],
               "decoder.weight": w["W_dec"].T.contiguous(), "decoder.bias": w["b_dec"]},
              str(folder / "checkpoints" / "final.safetensors"))
    return folder


@pytest.mark.parametrize("with_decoder_norm", [True, False])
def test_llama_scope_dataset_wise_norm_and_scalar_threshold(tmp_path, with_decoder_norm):
    w = _weights(9)  # decoder rows of norms between 0 and 2, as Llama Scope's (init_decoder_norm 0.5, not fixed)
    average, threshold = 7.5, 0.3
    folder = _llama_scope(tmp_path, w, 2, average, threshold, sparsity_include_decoder_norm=with_decoder_norm)
    x = _x()
    # lm_saes SparseAutoEncoder.encode: x * sqrt(d_model) / dataset norm, encoder; the mask compares the
    # pre-activations times each decoder row's norm (sparsity_include_decoder_norm) with the threshold; the code
    # is the pre-activation itself
    pre = (x * math.sqrt(D_IN) / average) @ w["W_enc"] + w["b_enc"]
    scores = pre * w["W_dec"].norm(dim=1) if with_decoder_norm else pre
    reference = pre * (scores > threshold)
    _check(folder, reference, x)
    _check(folder.parent, reference, x, layer=2)  # the release folder, picked by layer
    assert sae_metadata(folder)["layer"] == 2
    plain = pre * (pre > threshold)
    assert torch.equal(reference > 0, plain > 0) != with_decoder_norm  # the flag matters


# --- dictionary_learning ---------------------------------------------------------------------------------------

def _dl(path: Path, dict_class: str, state: dict, layer: int = 2) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"trainer": {"dict_class": dict_class, "activation_dim": D_IN,
                                                              "dict_size": D_SAE, "layer": layer, "k": K,
                                                              "lm_name": "EleutherAI/pythia-70m-deduped",
                                                              "submodule_name": f"resid_post_layer_{layer}"},
                                                  "buffer": {"ctx_len": 128}}))
    torch.save(state, path / "ae.pt")
    return path


def test_dictionary_learning_batchtopk_topk_and_relu(tmp_path):
    w = _weights(10)
    common = {"encoder.weight": w["W_enc"].T.contiguous(), "encoder.bias": w["b_enc"],
              "decoder.weight": w["W_dec"].T.contiguous(), "b_dec": w["b_dec"]}
    x = _x()
    post_relu = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    # BatchTopKSAE.encode(use_threshold=True): post_relu * (post_relu > threshold)
    bt = _dl(tmp_path / "batchtopk" / "trainer_0", "BatchTopKSAE",
             {**common, "k": torch.tensor(K, dtype=torch.int), "threshold": torch.tensor(0.4)})
    _check(bt, post_relu * (post_relu > 0.4), x)
    assert sae_k(bt) is None and sae_metadata(bt)["layer"] == 2
    # AutoEncoderTopK.encode(use_threshold=False): TopK of post_relu
    tk = _dl(tmp_path / "topk" / "trainer_0", "AutoEncoderTopK",
             {**common, "k": torch.tensor(K, dtype=torch.int), "threshold": torch.tensor(-1.0)})
    _check(tk, _topk_dense(post_relu, K), x)
    relu_state = {k: v for k, v in common.items() if k != "b_dec"} | {"bias": w["b_dec"]}
    ae = _dl(tmp_path / "relu" / "trainer_0", "AutoEncoder", relu_state)
    _check(ae, post_relu, x)
    mlp = _dl(tmp_path / "mlp_out_layer3" / "trainer_0", "AutoEncoder", relu_state, layer=3)
    mlp_cfg = json.loads((mlp / "config.json").read_text())
    mlp_cfg["trainer"]["submodule_name"] = None  # the site only in the folder name, as in the Pythia dictionaries
    (mlp / "config.json").write_text(json.dumps(mlp_cfg))
    assert (sae_metadata(mlp)["site"], sae_metadata(mlp)["layer"]) == ("mlp_out", 3)  # the MLP output, read as such


# --- OpenAI GPT-2 ----------------------------------------------------------------------------------------------

def _openai(root: Path, location: str, w: dict, layer: int = 2) -> Path:
    folder = root / f"{location}_v5_32k" / "autoencoders"
    folder.mkdir(parents=True)
    state = {"pre_bias": w["b_dec"], "encoder.weight": w["W_enc"].T.contiguous(), "latent_bias": w["b_enc"],
             "decoder.weight": w["W_dec"].T.contiguous(), "stats_last_nonzero": torch.zeros(D_SAE, dtype=torch.long),
             "activation": "TopK", "activation_state_dict": {"k": K, "postact_fn": "ReLU"}}
    torch.save(state, folder / f"{layer}.pt")
    return folder / f"{layer}.pt"


def test_openai_topk_layer_normalizes_each_token(tmp_path):
    w = _weights(11)
    file = _openai(tmp_path, "resid_post_mlp", w)
    x = _x()
    mu = x.mean(-1, keepdim=True)
    std = (x - mu).std(-1, keepdim=True)
    normed = (x - mu) / (std + 1e-5)  # sparse_autoencoder.model.LN
    reference = _topk_dense((normed - w["b_dec"]) @ w["W_enc"] + w["b_enc"], K).relu()
    _check(file, reference, x)
    _check(file.parent, reference, x, layer=2)  # autoencoders/ holding N.pt: picked by layer
    assert sae_metadata(file)["layer"] == 2 and sae_k(file) == K
    delta = _openai(tmp_path, "resid_delta_mlp", w)  # what the MLP adds to the stream: read as the MLP output
    assert (sae_metadata(delta)["site"], sae_metadata(delta)["layer"]) == ("mlp_out", 2)
    mid = _openai(tmp_path, "resid_post_attn", w)  # the stream between attention and MLP: not read
    with pytest.raises(ConfigError, match="between attention and MLP of layer 2"):
        check_width(load_sae(mid), D_IN, sae_path=mid)


# --- Goodfire --------------------------------------------------------------------------------------------------

def test_goodfire_relu_without_b_dec_subtraction(tmp_path):
    w = _weights(12)
    folder = tmp_path / "Llama-3.1-8B-Instruct-SAE-l2"
    folder.mkdir()
    torch.save({"encoder_linear.weight": w["W_enc"].T.contiguous(), "encoder_linear.bias": w["b_enc"],
                "decoder_linear.weight": w["W_dec"].T.contiguous(), "decoder_linear.bias": w["b_dec"]},
               folder / "Llama-3.1-8B-Instruct-SAE-l2.pth")
    x = _x()
    _check(folder, torch.relu(x @ w["W_enc"] + w["b_enc"]), x)
    meta = sae_metadata(folder)
    assert (meta["format"], meta["layer"], meta["architecture"]) == ("goodfire", 2, "relu")


# --- mona select on each layout ----------------------------------------------------------------------------------

def _layouts(root: Path, d_in: int = 32, layer: int = 1, average: float = 5.0) -> dict[str, Path]:
    """One SAE of each family reading the residual stream after `layer` (d_in 32: the tiny test model; 576: the
    embedded SmolLM2), and two of the MLP and attention outputs of that layer. `average`: Llama Scope's dataset
    norm of the activations."""
    w = _weights(13, d_in=d_in)
    threshold = torch.full((D_SAE,), 0.05)
    hook = f"blocks.{layer}.hook_resid_post"
    paths = {
        "sparsify": _sparsify_dir(root / "sparsify" / f"layers.{layer}", w).parent,  # a release folder
        "saelens": _saelens_dir(root / "saelens", w, {"architecture": "jumprelu", "hook_name": hook},
                                {"threshold": threshold}),
        "gemma-scope": _gemma(root, "gemma-scope-tiny-pt-res", w, threshold, layer=layer),
        "llama-scope": _llama_scope(root, w, layer, average, 0.05).parent,  # a release folder
        "openai": _openai(root, "resid_post_mlp", w, layer=layer),
        "dictionary-learning": _dl(root / "dl" / "trainer_0", "AutoEncoder",
                                   {"encoder.weight": w["W_enc"].T.contiguous(), "encoder.bias": w["b_enc"],
                                    "decoder.weight": w["W_dec"].T.contiguous(), "bias": w["b_dec"]}, layer=layer),
    }
    folder = root / "goodfire"
    folder.mkdir()
    torch.save({"encoder_linear.weight": w["W_enc"].T.contiguous(), "encoder_linear.bias": w["b_enc"],
                "decoder_linear.weight": w["W_dec"].T.contiguous(), "decoder_linear.bias": w["b_dec"]},
               folder / f"tiny-SAE-l{layer}.pth")
    paths["goodfire"] = folder
    # sites beyond the residual stream: EleutherAI's layers.N.mlp (the Llama-3.1-8B releases), SAELens attn_out
    paths["sparsify-mlp"] = _sparsify_dir(root / "sparsify-mlp" / f"layers.{layer}.mlp", w)
    paths["saelens-attn"] = _saelens_dir(root / "saelens-attn", w, {"architecture": "topk", "k": K,
                                                                   "hook_name": f"blocks.{layer}.hook_attn_out"})
    return paths


def _select(tmp_path: Path, pool: Path, target: Path, sae: Path, layer: int, *extra: str) -> list[float]:
    """`mona select --sae SAE --layer LAYER --no-cache` with `extra` options (a `--model` there gets a cache of
    its own; the embedded model is read from the user cache, where it was dequantized once): the scores."""
    from mona.cli import app

    out, scores = tmp_path / f"{sae.name}-out.jsonl", tmp_path / f"{sae.name}-scores.jsonl"
    args = ["select", "--pool", str(pool), "--target", str(target), "--budget", "2", "--out", str(out), "--scores",
            str(scores), "--sae", str(sae), "--layer", str(layer), "--no-cache", "--quiet", *extra]
    env = {"HF_HUB_OFFLINE": "1"} | ({"MONA_CACHE": str(tmp_path / "cache")} if "--model" in extra else {})
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, (sae, result.output)
    assert len(out.read_text().splitlines()) == 2
    return [json.loads(line)["score"] for line in scores.read_text().splitlines()]


def test_mona_select_with_each_layout(tmp_path, model_dir):
    from mona.cli import app

    pool = tmp_path / "pool.jsonl"
    target = tmp_path / "target.jsonl"
    pool.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(
        ["add two numbers", "bake a cake with flour", "the cat sat on the mat", "what is three plus four ?",
         "mix sugar and eggs in a bowl", "tell me a story about a dog"])))
    target.write_text(json.dumps({"text": "what is the sum of two numbers"}) + "\n")
    for sae in _layouts(tmp_path / "saes").values():
        _select(tmp_path, pool, target, sae, 1, "--model", str(model_dir))
    # a Gemma Scope folder saying layer 2: --layer 1 contradicts it, in one line
    other = _gemma(tmp_path / "other", "gemma-scope-tiny-pt-res", _weights(13, d_in=32), torch.zeros(D_SAE))
    args = ["select", "--pool", str(pool), "--target", str(target), "--budget", "2", "--out",
            str(tmp_path / "refused.jsonl"), "--model", str(model_dir), "--sae", str(other), "--layer", "1",
            "--no-cache", "--quiet"]
    result = CliRunner().invoke(app, args, env={"MONA_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"})
    assert result.exit_code != 0 and "layer 2, not layer 1" in result.output, result.output
    assert not (tmp_path / "refused.jsonl").exists()


@pytest.mark.integration
def test_mona_select_with_each_layout_on_the_embedded_model(tmp_path):
    # d_in 576 SAEs of every family on the embedded SmolLM2 (LLaMA architecture), residual stream, MLP and
    # attention outputs of layer 5, on real BIG-bench rows
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "bigbench_4tasks.jsonl").open()]
    pool, target = tmp_path / "pool.jsonl", tmp_path / "target.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows[:192:16]))
    target.write_text("".join(json.dumps(r) + "\n" for r in [r for r in rows if r["split"] == "target"][:2]))
    scores = {family: _select(tmp_path, pool, target, sae, 5)
              for family, sae in _layouts(tmp_path / "saes", d_in=576, layer=5, average=12.0).items()}
    for family, values in scores.items():
        assert len(values) == 12 and max(values) > 0, family  # codes fired: not an all-zero selection
    # the same weights read at the MLP or attention output score otherwise than on the residual stream
    assert scores["sparsify-mlp"] != scores["sparsify"]


def test_features_label_reads_the_layer_from_the_sae_and_checks_it(tmp_path, model_dir):
    from mona.cli import app

    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["add two numbers", "bake a cake", "cat sat"]))
    saes = _layouts(tmp_path / "saes")
    env = {"MONA_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def label(sae: Path, *extra: str):
        args = ["features", "label", "--sae", str(sae), "--model", str(model_dir), "--texts", str(texts),
                "--samples", "3", "--out", str(tmp_path / "labels.json.gz"), *extra]
        return CliRunner().invoke(app, args, env=env)

    result = label(saes["saelens"])  # blocks.1.hook_resid_post: layer 1, which no mona `layer` key says
    assert result.exit_code == 0, result.output
    assert (tmp_path / "labels.json.gz").exists()
    result = label(saes["saelens"], "--layer", "0")
    assert result.exit_code != 0 and "layer 1, not layer 0" in result.output
    narrow = _saelens_dir(tmp_path / "narrow", _weights(), {"architecture": "topk", "k": K,
                                                           "hook_name": "blocks.1.hook_resid_post"})
    result = label(narrow)  # d_in 16 against the model's 32
    assert result.exit_code != 0 and "d_in is 16" in result.output
    hook_z = _saelens_dir(tmp_path / "z", _weights(d_in=32), {"architecture": "topk", "k": K,
                                                              "hook_name": "blocks.1.attn.hook_z"})
    result = label(hook_z)
    assert result.exit_code != 0 and "hook_z" in result.output
    mlp = _saelens_dir(tmp_path / "mlp", _weights(d_in=32), {"architecture": "topk", "k": K,
                                                             "hook_name": "blocks.1.hook_mlp_out"})
    result = label(mlp)  # labelled on the MLP output of layer 1, which it reads
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("device", ACCELERATORS)
@pytest.mark.parametrize("architecture", ["topk", "jumprelu"])
def test_encode_on_the_gpu_matches_the_cpu(tmp_path, architecture, device):
    w = _weights(14)
    cfg = {"architecture": "topk", "k": K, "rescale_acts_by_decoder_norm": True} if architecture == "topk" else {
        "architecture": "jumprelu"}
    path = _saelens_dir(tmp_path / "s", w, cfg, {"threshold": torch.full((D_SAE,), 0.2)} if architecture ==
                        "jumprelu" else None)
    for x in (_x(256), _x(256).bfloat16()):  # fp32, and bf16 as a bf16 model on the GPU hands it over
        cpu = _dense(*encode(load_sae(path), x))
        gpu = _dense(*encode(load_sae(path, device=device), x.to(device)))  # codes come back on the CPU
        torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", ACCELERATORS)
def test_mona_select_on_the_gpu_agrees_with_the_cpu(tmp_path, model_dir, device):
    # the GPU path end to end: the model in the dtype auto picks there (bf16 on a bf16 CUDA GPU, fp32 on MPS),
    # the MLP output captured there, the SAE on the GPU; scores within bf16 rounding of the CPU's fp32 run
    pool, target = tmp_path / "pool.jsonl", tmp_path / "target.jsonl"
    pool.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(
        ["add two numbers", "bake a cake with flour", "the cat sat on the mat", "what is three plus four ?"])))
    target.write_text(json.dumps({"text": "what is the sum of two numbers"}) + "\n")
    sae = _layouts(tmp_path / "saes")["sparsify-mlp"]
    (tmp_path / "gpu").mkdir()
    (tmp_path / "cpu").mkdir()
    on_gpu = _select(tmp_path / "gpu", pool, target, sae, 1, "--model", str(model_dir), "--device", device)
    on_cpu = _select(tmp_path / "cpu", pool, target, sae, 1, "--model", str(model_dir), "--device", "cpu",
                     "--dtype", "fp32")
    np.testing.assert_allclose(on_gpu, on_cpu, atol=0.05)


@pytest.mark.parametrize(("hook", "kind"), [("blocks.1.hook_mlp_out", "mlp_out"),
                                            ("blocks.1.hook_attn_out", "attn_out")])
def test_mona_vectors_of_a_branch_sae_are_the_codes_of_that_branch(tmp_path, model_dir, tokenizer, hook, kind):
    from transformers import AutoModelForCausalLM

    from mona.data.formats import Record, Sample
    from mona.features.lm import LMConfig, LMRunner
    from mona.features.mona import MonaFeaturizer
    from mona.models import TruncatedLM

    path = _saelens_dir(tmp_path / "s", _weights(15, d_in=32), {"architecture": "topk", "k": K, "hook_name": hook})
    texts = ["add two numbers", "bake a cake with flour and sugar", "the cat sat on the mat ."]
    samples = [Sample(str(i), None, t, Record({}, i, i + 1)) for i, t in enumerate(texts)]
    featurizer = MonaFeaturizer(LMRunner(LMConfig(model=str(model_dir), layer=1, dtype="fp32")), str(path))
    assert featurizer.key_config()["sae"].endswith("@" + kind)
    got = np.zeros((len(samples), D_SAE), dtype=np.float32)
    for block in featurizer.featurize(samples):
        got[block.positions] = block.matrix.toarray()
    # reference: the branch captured by hand, every content token encoded, averaged per sample
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    lm = TruncatedLM(model, tokenizer, 1, sites=(kind,))
    sae = load_sae(path)
    for pos, sample in enumerate(samples):
        (batch,) = list(lm.run([featurizer.runner.render(sample)]))
        mask = batch.pool_mask[0]
        want = _dense(*encode(sae, batch.site(kind, 1)[0][mask])).mean(0).numpy()
        np.testing.assert_allclose(got[pos], want, rtol=1e-4, atol=1e-6)
        stream = _dense(*encode(sae, batch.resid[1][0][mask])).mean(0).numpy()
        assert not np.allclose(got[pos], stream)  # the residual stream would give other codes


def test_bf16_activations_are_encoded_in_fp32(tmp_path):
    # a bf16 model (the GPU default) hands over bf16 activations: the SAE (fp32, as read_sae loads every family)
    # casts them up before the matmul, so the codes are those of the same values in fp32, never bf16-rounded
    w = _weights(16)
    path = _saelens_dir(tmp_path / "s", w, {"architecture": "topk", "k": K, "rescale_acts_by_decoder_norm": True,
                                            "normalize_activations": "layer_norm"})
    sae = load_sae(path)
    assert sae.dtype == torch.float32
    x = _x(256).bfloat16()
    values, indices = encode(sae, x)
    assert values.dtype == torch.float32
    want_values, want_indices = encode(sae, x.float())
    torch.testing.assert_close(_dense(values, indices), _dense(want_values, want_indices), rtol=0, atol=0)
