"""MonaFeaturizer on the tiny model and SAE: pooled SAE codes, batch invariance, SAE/model checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import HIDDEN, N_LAYERS, SAE_LAYER, sentences
from mona.data.formats import Record, Sample
from mona.errors import ConfigError
from mona.features.lm import LMConfig, LMRunner
from mona.features.mona import MonaFeaturizer
from mona.models import TruncatedLM
from mona.sae.topk import encode, load_sae


def _samples():
    out = []
    for i, text in enumerate(sentences(7, seed=5)):
        if i % 2:
            out.append(Sample(str(i), (("user", text), ("assistant", "five")), None, Record({}, i, i + 1)))
        else:
            out.append(Sample(str(i), None, text, Record({}, i, i + 1)))
    return out


def _features(model_dir, sae_dir, **config):
    runner = LMRunner(LMConfig(model=str(model_dir), **config))
    fz = MonaFeaturizer(runner, str(sae_dir))
    blocks = list(fz.featurize(_samples()))
    n = len(_samples())
    out = np.zeros((n, int(fz.sae.num_latents)), dtype=np.float32)
    for block in blocks:
        out[block.positions] = block.matrix.toarray()
    return out, blocks, fz


def test_mona_vectors_are_mean_of_token_codes(model_dir, sae_dir, tiny_model, tokenizer):
    out, blocks, fz = _features(model_dir, sae_dir)
    assert fz.runner.resolved_layer() == SAE_LAYER
    assert (out >= 0).all() and (out > 0).any(axis=1).all()
    # reference: run the truncated model by hand, encode each content token, average per sample
    lm = TruncatedLM(tiny_model, tokenizer, SAE_LAYER)
    sae = load_sae(sae_dir)
    items = [fz.runner.render(s) for s in _samples()]
    for pos, item in enumerate(items):
        (batch,) = list(lm.run([item]))
        x = batch.resid[SAE_LAYER][0][batch.pool_mask[0]]
        values, indices = encode(sae, x)
        dense = torch.zeros(x.shape[0], int(sae.num_latents)).scatter_(1, indices, values)
        np.testing.assert_allclose(out[pos], dense.mean(0).numpy(), rtol=1e-4, atol=1e-6)
    assert sum(b.tokens for b in blocks) == sum(int(b.pool_mask.sum()) for b in lm.run(items))


def test_mona_vectors_do_not_depend_on_batching(model_dir, sae_dir):
    small, small_blocks, _ = _features(model_dir, sae_dir, batch_tokens=8)
    large, large_blocks, _ = _features(model_dir, sae_dir, batch_tokens=100_000)
    assert len(small_blocks) == len(_samples()) and len(large_blocks) == 1
    np.testing.assert_allclose(small, large, rtol=1e-4, atol=1e-6)


def test_sum_and_max_pooling(model_dir, sae_dir):
    runner = LMRunner(LMConfig(model=str(model_dir)))
    vectors = {}
    for pooling in ("mean", "sum", "max"):
        fz = MonaFeaturizer(runner, str(sae_dir), pooling=pooling)
        vectors[pooling] = np.vstack([b.matrix.toarray() for b in fz.featurize(_samples()[:1])])
    n_tokens = len(_samples()[0].text.split())
    np.testing.assert_allclose(vectors["sum"], vectors["mean"] * n_tokens, rtol=1e-4)
    assert (vectors["max"] <= vectors["sum"] + 1e-6).all() and (vectors["max"] >= vectors["mean"] - 1e-6).all()


def test_sae_of_another_layer_is_refused(model_dir, sae_dir):
    runner = LMRunner(LMConfig(model=str(model_dir), layer=0))
    with pytest.raises(ConfigError, match=f"layer {SAE_LAYER}, not layer 0") as info:
        MonaFeaturizer(runner, str(sae_dir))
    assert str(sae_dir) in str(info.value)


def test_sae_of_another_width_is_refused(model_dir, tmp_path):
    from mona.sae.topk import _sparsify
    from mona.sae.train import save_sae

    SparseCoder, SparseCoderConfig = _sparsify()
    path = tmp_path / "wide"
    save_sae(SparseCoder(HIDDEN * 2, SparseCoderConfig(num_latents=16, k=4)), path, meta={"layer": SAE_LAYER})
    with pytest.raises(ConfigError, match=f"hidden size is {HIDDEN}"):
        MonaFeaturizer(LMRunner(LMConfig(model=str(model_dir))), str(path))


def test_k_larger_than_sae_k_is_refused(model_dir, sae_dir):
    with pytest.raises(ConfigError, match="exceeds"):
        MonaFeaturizer(LMRunner(LMConfig(model=str(model_dir))), str(sae_dir), k=1000)


def test_smaller_k_gives_sparser_vectors(model_dir, sae_dir):
    runner = LMRunner(LMConfig(model=str(model_dir)))
    full = MonaFeaturizer(runner, str(sae_dir))
    small = MonaFeaturizer(runner, str(sae_dir), k=2)
    assert full.key_config() != small.key_config()
    a = np.vstack([b.matrix.toarray() for b in full.featurize(_samples()[:2])])
    b = np.vstack([b.matrix.toarray() for b in small.featurize(_samples()[:2])])
    assert (b <= a + 1e-6).all() and (b > 0).sum() < (a > 0).sum()


def test_default_layer_is_the_shipped_saes_on_the_embedded_model_else_penultimate():
    from mona.sae.topk import default_layer, sae_metadata, shipped_sae_path

    shipped = int(sae_metadata(shipped_sae_path())["layer"])
    assert default_layer(None) == default_layer("smollm2-135m-instruct") == shipped
    assert 0 <= shipped < 30
    assert default_layer("/models/some-other-model") == -2


def test_layer_default_is_penultimate_on_other_models(model_dir):
    runner = LMRunner(LMConfig(model=str(model_dir)))
    assert runner.resolved_layer() == N_LAYERS - 2
    assert LMRunner(LMConfig(model=str(model_dir), layer=-1)).resolved_layer() == N_LAYERS - 1
    with pytest.raises(ConfigError, match="out of range"):
        LMRunner(LMConfig(model=str(model_dir), layer=N_LAYERS)).resolved_layer()


def test_row_latents_keep_each_vectors_largest(model_dir, sae_dir):
    runner = LMRunner(LMConfig(model=str(model_dir)))

    def vectors(**kw):
        fz = MonaFeaturizer(runner, str(sae_dir), pooling="max", **kw)
        out = np.zeros((len(_samples()), int(fz.sae.num_latents)), dtype=np.float32)
        for block in fz.featurize(_samples()):
            out[block.positions] = block.matrix.toarray()
        return out, fz.key_config()

    full, full_key = vectors()
    capped, capped_key = vectors(row_latents=3)
    assert ((capped > 0).sum(axis=1) == np.minimum(3, (full > 0).sum(axis=1))).all()
    for row_full, row_capped in zip(full, capped, strict=True):
        kept = row_capped > 0
        np.testing.assert_array_equal(row_capped[kept], row_full[kept])  # values unchanged
        assert row_full[~kept].max(initial=0) <= row_full[kept].min()  # and they are the largest
    assert "row_latents" not in full_key and capped_key["row_latents"] == 3  # a cache key of its own
    with pytest.raises(ConfigError):
        MonaFeaturizer(runner, str(sae_dir), row_latents=0)
