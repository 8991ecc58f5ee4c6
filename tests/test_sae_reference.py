"""mona's per-token codes against the SAE libraries' own encode, where they install on CPU: sae-lens (a dev
dependency) on its own saves of every architecture it has, and through its own converters on Gemma Scope,
dictionary_learning and Goodfire files; eai-sparsify (a dependency) on its SAEs. Small random SAEs in each
release's layout; the formula-level checks of every family are in tests/test_sae_formats.py.

Not compared with sae-lens: its sparsify converter (`get_sparsify_config_from_disk`) sets apply_b_dec_to_input to
`not normalize_decoder`, where sparsify's own `SparseCoder.encode` always subtracts b_dec (compared here with
sparsify itself), and its Llama Scope loader folds the dataset norm as `from_pretrained` does (scaling the
threshold), which a disk load does not reproduce (the lm_saes formula is checked in test_sae_formats.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mona.sae.topk import encode, load_sae
from test_sae_formats import D_IN, D_SAE, K, _dense, _dl, _gemma, _gen, _saelens_dir, _weights, _x

sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is a dev dependency: pip install -e '.[dev]'")


def _codes(path: Path, x: torch.Tensor) -> torch.Tensor:
    sae = load_sae(path)
    return _dense(*encode(sae, x), sae.num_latents)


def _same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-5)
    assert (ours > 0).any() and (ours == 0).any()  # neither trivially empty nor dense


def _randomize(sae: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random parameters (the libraries initialise biases to zero, thresholds to one value)."""
    g = _gen(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if "threshold" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.6)
            elif name == "W_dec":  # decoder rows of unequal norms, so decoder-norm rescaling matters
                p.copy_(torch.randn(p.shape, generator=g) * torch.rand(p.shape[0], 1, generator=g) * 2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1 / D_IN ** 0.5))
    return sae


# --- sae-lens on its own saves -------------------------------------------------------------------------------

_SAELENS_V6 = [
    ("standard", {}),
    ("standard", {"normalize_activations": "constant_norm_rescale"}),
    ("standard", {"normalize_activations": "layer_norm", "apply_b_dec_to_input": False}),
    ("topk", {"k": K}),
    ("topk", {"k": K, "rescale_acts_by_decoder_norm": True}),
    ("jumprelu", {}),
    ("gated", {}),
]


@pytest.mark.parametrize(("architecture", "options"), _SAELENS_V6)
def test_saelens_v6_saves_encode_as_saelens(tmp_path, architecture, options):
    name = {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE", "gated": "GatedSAE"}[architecture]
    cfg = getattr(sae_lens, name + "Config")(d_in=D_IN, d_sae=D_SAE, **options)
    theirs = _randomize(getattr(sae_lens, name)(cfg), seed=len(str(options)))
    theirs.cfg.metadata.hook_name = "blocks.2.hook_resid_post"
    theirs.save_model(tmp_path / "sae")  # sae-lens' own cfg.json + sae_weights.safetensors
    x = _x(96)
    with torch.no_grad():
        _same(_codes(tmp_path / "sae", x), theirs.encode(x))


def test_saelens_pre6_topk_config_encodes_as_saelens(tmp_path):
    from sae_lens.saes.sae import SAE

    w = _weights(21)
    # written by sae_lens < 6: standard + activation_fn_str topk + activation_fn_kwargs.k, boolean normalize
    path = _saelens_dir(tmp_path / "old", w, {"architecture": "standard", "activation_fn_str": "topk",
                                              "activation_fn_kwargs": {"k": K}, "normalize_activations": False,
                                              "hook_point": "blocks.3.hook_resid_pre", "sae_lens_version": "3.12.1",
                                              "dtype": "float32", "device": "cpu"})
    theirs = SAE.load_from_disk(path)  # handle_pre_6_0_config: a TopK SAE
    assert theirs.cfg.architecture() == "topk"
    x = _x(96)
    with torch.no_grad():
        _same(_codes(path, x), theirs.encode(x))


# --- sae-lens' converters of other families ------------------------------------------------------------------

def _through_saelens_loader(monkeypatch, loader_name: str, repo_id: str, folder: str, files: dict[str, Path],
                            **overrides):
    """The SAE sae-lens builds with its own converter `loader_name` for `repo_id`/`folder`, its hub downloads
    answered from the local `files` (name in the repository -> path)."""
    from sae_lens.loading import pretrained_sae_loaders as loaders
    from sae_lens.saes.sae import SAE

    def download(repo_id: str, filename: str, subfolder: str | None = None, **_kw) -> str:
        return str(files[f"{subfolder}/{filename}" if subfolder else filename])

    monkeypatch.setattr(loaders, "hf_hub_download", download)
    cfg, state, _ = getattr(loaders, loader_name)(repo_id, folder, device="cpu",
                                                  cfg_overrides={"d_in": D_IN, "d_sae": D_SAE, **overrides})
    return SAE.load_from_disk("(converted)", converter=lambda *_a, **_k: (cfg, state))


def test_gemma_scope_encodes_as_saelens_converts_it(tmp_path, monkeypatch):
    w = _weights(22)
    folder = _gemma(tmp_path, "gemma-scope-2b-pt-res", w, torch.rand(D_SAE, generator=_gen(23)) * 0.5)
    theirs = _through_saelens_loader(monkeypatch, "gemma_2_sae_huggingface_loader", "google/gemma-scope-2b-pt-res",
                                     "layer_2/width_16k/average_l0_7",
                                     {"layer_2/width_16k/average_l0_7/params.npz": folder / "params.npz"})
    assert theirs.cfg.apply_b_dec_to_input is False
    x = _x(96)
    with torch.no_grad():
        _same(_codes(folder, x), theirs.encode(x))


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "GatedAutoEncoder"])
def test_dictionary_learning_encodes_as_saelens_converts_it(tmp_path, monkeypatch, dict_class):
    w = _weights(24)
    g = _gen(25)
    state = {"encoder.weight": w["W_enc"].T.contiguous(), "decoder.weight": w["W_dec"].T.contiguous()}
    if dict_class == "GatedAutoEncoder":
        state |= {"gate_bias": torch.randn(D_SAE, generator=g) * 0.3, "mag_bias": torch.randn(D_SAE, generator=g),
                  "r_mag": torch.randn(D_SAE, generator=g) * 0.2, "decoder_bias": w["b_dec"]}
    else:
        state |= {"encoder.bias": w["b_enc"], "b_dec": w["b_dec"]}
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        state |= {"k": torch.tensor(K), "threshold": torch.tensor(0.4 if dict_class == "BatchTopKSAE" else -1.0)}
    folder = _dl(tmp_path / "pythia70m_sweep" / "resid_post_layer_2" / "trainer_0", dict_class, state)
    repo_folder = "pythia70m_sweep/resid_post_layer_2/trainer_0"
    theirs = _through_saelens_loader(monkeypatch, "dictionary_learning_sae_huggingface_loader_1", "canrager/lm_sae",
                                     repo_folder, {f"{repo_folder}/config.json": folder / "config.json",
                                                   f"{repo_folder}/ae.pt": folder / "ae.pt"})
    x = _x(96)
    with torch.no_grad():
        _same(_codes(folder, x), theirs.encode(x))


def test_goodfire_encodes_as_saelens_converts_it(tmp_path, monkeypatch):
    w = _weights(26)
    file = tmp_path / "Llama-3.1-8B-Instruct-SAE-l19.pth"
    torch.save({"encoder_linear.weight": w["W_enc"].T.contiguous(), "encoder_linear.bias": w["b_enc"],
                "decoder_linear.weight": w["W_dec"].T.contiguous(), "decoder_linear.bias": w["b_dec"]}, file)
    theirs = _through_saelens_loader(monkeypatch, "get_goodfire_huggingface_loader",
                                     "Goodfire/Llama-3.1-8B-Instruct-SAE-l19", file.name, {file.name: file})
    x = _x(96)
    with torch.no_grad():
        _same(_codes(file, x), theirs.encode(x))


# --- eai-sparsify on its own saves ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["topk", "groupmax"])
def test_sparsify_encodes_as_sparsify(tmp_path, activation):
    from mona.sae.topk import _sparsify

    SparseCoder, SparseCoderConfig = _sparsify()
    theirs = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K, activation=activation),
                         device="cpu", dtype=torch.float32)
    _randomize(theirs, seed=27)
    theirs.save_to_disk(tmp_path / "layers.2")  # sparsify's own cfg.json + sae.safetensors
    x = _x(96)
    with torch.no_grad():
        out = theirs.encode(x)
    reference = _dense(out.top_acts, out.top_indices)
    _same(_codes(tmp_path / "layers.2", x), reference)
