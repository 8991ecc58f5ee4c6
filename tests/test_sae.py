"""TopK SAEs: the sparsify layout round trip, the SAELens layout, width/layer checks, training (every other
family: test_sae_formats.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mona.errors import ConfigError, MissingFileError
from mona.sae.topk import _sparsify, check_width, encode, load_sae, sae_fingerprint, sae_metadata
from mona.sae.train import SaeTrainConfig, evaluate_sae, save_sae, train_sae

D_IN, D_SAE, K = 8, 24, 4


def _dense_codes(values: torch.Tensor, indices: torch.Tensor, width: int) -> torch.Tensor:
    """Codes as a dense [N, width] matrix (TopK order is not defined, the set of codes is)."""
    return torch.zeros(values.shape[0], width).scatter_(1, indices, values.float())


def _random_sae(seed: int = 0):
    SparseCoder, SparseCoderConfig = _sparsify()
    torch.manual_seed(seed)
    sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K))
    with torch.no_grad():
        sae.encoder.bias.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.5)
    return sae


def test_sparsify_round_trip(tmp_path):
    sae = _random_sae()
    path = tmp_path / "sae"
    save_sae(sae, path, meta={"model": "tiny", "layer": 3})
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]  # no temp folder left beside it
    meta = sae_metadata(path)
    assert (meta["model"], meta["layer"], meta["d_in"], meta["k"]) == ("tiny", 3, D_IN, K)
    loaded = load_sae(path)
    assert loaded.dtype == torch.float32 and int(loaded.num_latents) == D_SAE and int(loaded.d_in) == D_IN
    x = torch.randn(50, D_IN, generator=torch.Generator().manual_seed(1))
    # save_sae stores float16 and leaves the in-memory SAE at those rounded weights
    v0, i0 = encode(sae, x)
    v1, i1 = encode(loaded, x)
    assert v1.shape == (50, K)
    torch.testing.assert_close(_dense_codes(v1, i1, D_SAE), _dense_codes(v0, i0, D_SAE), rtol=1e-5, atol=1e-6)
    assert len(sae_fingerprint(path)) == 16


def test_save_sae_replaces_existing(tmp_path):
    path = tmp_path / "sae"
    save_sae(_random_sae(0), path, meta={"layer": 1})
    fp0 = sae_fingerprint(path)
    save_sae(_random_sae(1), path, meta={"layer": 2})
    assert sae_metadata(path)["layer"] == 2
    assert sae_fingerprint(path) != fp0
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]


def test_a_failed_save_keeps_the_old_sae(tmp_path, monkeypatch):
    path = tmp_path / "sae"
    save_sae(_random_sae(0), path, meta={"layer": 1})
    fp0 = sae_fingerprint(path)
    broken = _random_sae(1)

    def fail(folder):
        (Path(folder) / "sae.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(broken, "save_to_disk", fail)
    with pytest.raises(OSError, match="disk full"):
        save_sae(broken, path, meta={"layer": 2})
    assert sae_fingerprint(path) == fp0 and sae_metadata(path)["layer"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]


def test_encode_smaller_k_keeps_largest():
    sae = _random_sae()
    x = torch.randn(20, D_IN, generator=torch.Generator().manual_seed(2))
    v4, i4 = encode(sae, x)
    v2, i2 = encode(sae, x, k=2)
    assert v2.shape == (20, 2)
    full = _dense_codes(v4, i4, D_SAE)
    top2 = full.topk(2, dim=1).values
    torch.testing.assert_close(v2.sort(dim=1, descending=True).values, top2)
    # each kept code is one of the k=4 codes, with the same value
    torch.testing.assert_close(full.gather(1, i2), v2)


def test_encode_matches_sparsify_encode():
    sae = _random_sae()
    x = torch.randn(200, D_IN, generator=torch.Generator().manual_seed(3))
    ours = _dense_codes(*encode(sae, x), D_SAE)
    out = sae.encode(x)
    theirs = _dense_codes(out.top_acts, out.top_indices, D_SAE)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert (ours > 0).sum() > 0


def _reference_codes(x, W_enc, b_enc, b_dec, k, apply_b_dec):
    pre = torch.relu((x - b_dec if apply_b_dec else x) @ W_enc + b_enc)
    vals, idx = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, idx, vals)


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_saelens_layout(tmp_path, apply_b_dec):
    gen = torch.Generator().manual_seed(3)
    W_enc = torch.randn(D_IN, D_SAE, generator=gen)
    b_enc = torch.randn(D_SAE, generator=gen) * 0.1
    W_dec = torch.randn(D_SAE, D_IN, generator=gen)
    b_dec = torch.randn(D_IN, generator=gen)
    path = tmp_path / "saelens"
    path.mkdir()
    (path / "cfg.json").write_text(json.dumps({
        "d_in": D_IN, "d_sae": D_SAE, "architecture": "topk", "activation_fn_kwargs": {"k": K},
        "apply_b_dec_to_input": apply_b_dec, "normalize_activations": "none", "hook_name": "blocks.1.hook_resid_post",
    }))
    save_file({"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}, str(path / "sae_weights.safetensors"))
    sae = load_sae(path)
    assert (int(sae.d_in), int(sae.num_latents), sae.spec.k) == (D_IN, D_SAE, K)
    x = torch.randn(40, D_IN, generator=gen) * 2
    values, indices = encode(sae, x)
    ref = _reference_codes(x, W_enc, b_enc, b_dec, K, apply_b_dec)
    torch.testing.assert_close(_dense_codes(values, indices, D_SAE), ref, rtol=1e-5, atol=1e-5)
    # the other convention gives different codes: the flag really matters
    other = _reference_codes(x, W_enc, b_enc, b_dec, K, not apply_b_dec)
    assert not torch.allclose(_dense_codes(values, indices, D_SAE), other, atol=1e-3)
    # decoding uses W_dec and b_dec as given
    torch.testing.assert_close(sae.decode(values, indices), ref @ W_dec + b_dec, rtol=1e-4, atol=1e-4)
    assert len(sae_fingerprint(path)) == 16


def _saelens_dir(tmp_path, cfg):
    path = tmp_path / "saelens"
    path.mkdir()
    (path / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, **cfg}))
    save_file({"W_enc": torch.zeros(D_IN, D_SAE), "b_enc": torch.zeros(D_SAE), "W_dec": torch.zeros(D_SAE, D_IN),
               "b_dec": torch.zeros(D_IN)}, str(path / "sae_weights.safetensors"))
    return path


@pytest.mark.parametrize("cfg", [
    {"architecture": "jumprelu_topk", "k": K},
    {"architecture": "standard", "activation_fn": "tanh-relu"},
    # the scale is neither folded in nor beside the weights (activation_scaler.json)
    {"architecture": "topk", "activation_fn_kwargs": {"k": K}, "normalize_activations": "expected_average_only_in"},
])
def test_saelens_unsupported(tmp_path, cfg):
    with pytest.raises(ConfigError) as info:
        load_sae(_saelens_dir(tmp_path, cfg))
    assert "cfg.json" in str(info.value)


def test_check_width_and_layer(tmp_path):
    sae = _random_sae()
    check_width(sae, D_IN, sae_path=tmp_path, layer=2, sae_layer=2)
    check_width(sae, D_IN, sae_path=tmp_path)  # no layer known: only the width is checked
    with pytest.raises(ConfigError, match="d_in is 8") as info:
        check_width(sae, D_IN * 2, sae_path=tmp_path / "x")
    assert str(tmp_path / "x") in str(info.value)
    with pytest.raises(ConfigError, match="layer 1, not layer 2"):
        check_width(sae, D_IN, sae_path=tmp_path, layer=2, sae_layer=1)


def test_missing_sae(tmp_path):
    with pytest.raises(MissingFileError):
        load_sae(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match=r"cfg\.json"):
        sae_metadata(tmp_path / "empty")
    (tmp_path / "empty" / "cfg.json").write_text("{}")
    with pytest.raises(MissingFileError, match="no layout"):
        load_sae(tmp_path / "empty")


def test_train_sae_learns_sparse_data():
    # Activations that really are sparse combinations of 16 directions (plus an offset): an SAE with k=4 and
    # 32 latents should explain most of their variance after a few passes.
    rng = np.random.default_rng(0)
    dictionary = rng.normal(size=(16, D_IN)).astype(np.float32)
    codes = np.zeros((2000, 16), dtype=np.float32)
    for row in codes:
        row[rng.choice(16, 2, replace=False)] = rng.uniform(0.5, 2.0, 2)
    acts = (codes @ dictionary + 3.0).astype(np.float16)
    cfg = SaeTrainConfig(expansion_factor=4, k=4, epochs=4, batch_tokens=128, lr=4e-3, dead_tokens=2000)
    sae, report = train_sae(acts, cfg, log=lambda _m: None)
    assert report.num_latents == 32 and report.k == 4
    assert report.heldout_tokens == 100 and report.train_tokens == 1900
    assert 0.0 <= report.fvu < 0.3  # ~0.11 measured
    assert 0 < report.l0 <= 4
    # the returned SAE reads raw (unscaled) activations: the training scale is folded into its weights
    fvu, l0, _dead = evaluate_sae(sae, acts[:500])
    assert fvu < 0.3 and l0 <= 4
