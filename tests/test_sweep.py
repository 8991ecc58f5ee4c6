"""The sweep's building blocks: multi-layer activation shards in input order, vectors from stored activations
equal to the featurizers' own, reciprocal rank fusion, and a killed collection resuming."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import N_LAYERS, SAE_LAYER, sentences
from mona.bench.relevance import generic_share
from mona.bench.sweep import (
    SweepConfig,
    density_weights,
    hidden_vectors,
    latent_weights,
    rrf,
    sae_vectors,
    token_turns,
    turn_aware,
    variants,
)
from mona.data.formats import Sample
from mona.data.readers import Record
from mona.data.render import render
from mona.features.hidden import HiddenFeaturizer
from mona.features.lm import LMConfig, LMRunner
from mona.features.mona import MonaFeaturizer
from mona.features.pooling import keep_row_top
from mona.models import TruncatedLM
from mona.sae.collect import collect_activations, load_activations, load_by_sample
from mona.sae.topk import encode, load_sae


def _samples(n: int = 11) -> list[Sample]:
    return [Sample(str(i), (("user", t),), None, Record({}, i, i + 1)) for i, t in enumerate(sentences(n, seed=3))]


def _matrix(featurizer, samples):
    blocks = list(featurizer.featurize(samples))
    out = None
    for block in blocks:
        m = block.matrix.toarray() if hasattr(block.matrix, "toarray") else np.asarray(block.matrix)
        if out is None:
            out = np.zeros((len(samples), m.shape[1]), dtype=np.float32)
        out[block.positions] = m
    return out


@pytest.fixture
def collected(tiny_model, tokenizer, tmp_path):
    lm = TruncatedLM(tiny_model, tokenizer, [0, SAE_LAYER], batch_tokens=40)
    rendered = [render(s, tokenizer, "chat") for s in _samples()]
    n_shards = collect_activations(lm, rendered, tmp_path / "acts", shard_samples=4)
    return tmp_path / "acts", n_shards, rendered


def test_collect_keeps_every_layer_in_input_order(collected, model_dir, sae_dir):
    acts_dir, n_shards, _ = collected
    assert n_shards == 3
    for layer in (0, SAE_LAYER):
        x, offsets = load_by_sample(acts_dir, layer, n_shards)
        assert len(offsets) == 12 and offsets[-1] == len(x) == len(load_activations(acts_dir, layer, n_shards))
    # vectors from the stored activations equal the featurizers' own (fp16 storage: small tolerance)
    x, offsets = load_by_sample(acts_dir, SAE_LAYER, n_shards)
    runner = LMRunner(LMConfig(model=str(model_dir), layer=SAE_LAYER))
    np.testing.assert_allclose(hidden_vectors(x, offsets, "mean"), _matrix(HiddenFeaturizer(runner), _samples()),
                               rtol=2e-2, atol=2e-3)
    sae = load_sae(sae_dir)
    ours = sae_vectors(sae, x, offsets, "mean", None).toarray()
    theirs = _matrix(MonaFeaturizer(LMRunner(LMConfig(model=str(model_dir), layer=SAE_LAYER)), str(sae_dir)),
                     _samples())
    np.testing.assert_allclose(ours, theirs, rtol=5e-2, atol=5e-3)
    assert N_LAYERS > SAE_LAYER


def test_collect_resumes_from_complete_shards(collected, tiny_model, tokenizer):
    acts_dir, n_shards, rendered = collected
    before = load_by_sample(acts_dir, SAE_LAYER, n_shards)[0]
    # a shard whose index was never written (killed mid-shard) is redone; complete ones are not touched
    (acts_dir / "shard-00001.index.npy").unlink()
    stamp = (acts_dir / "shard-00000.L0.npy").stat().st_mtime_ns
    lm = TruncatedLM(tiny_model, tokenizer, [0, SAE_LAYER], batch_tokens=40)
    assert collect_activations(lm, rendered, acts_dir, shard_samples=4) == n_shards
    assert (acts_dir / "shard-00000.L0.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(load_by_sample(acts_dir, SAE_LAYER, n_shards)[0], before)


def test_rrf_rewards_agreement():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = np.array([1.0, 4.0, 3.0, 2.0, 5.0])
    fused = rrf(a, b)
    assert fused.argmax() == 1  # 2nd in both rankings beats 1st in one and last in the other
    np.testing.assert_allclose(fused[[0, 4]], 1 / 61 + 1 / 65)
    np.testing.assert_allclose(rrf(a), 1 / (60 + np.arange(1, 6)))


def test_every_variant_changes_one_thing_from_a_base():
    all_variants = variants(SweepConfig())
    bases = [v for v in all_variants if v.axis == "base"]
    assert len(bases) == 2
    fields = ("render", "layer", "sae", "pooling", "k", "similarity", "prototype", "centre", "fuse", "weighting",
              "normalise", "row_top", "answer_weight")
    # things that go together count as one change: a layer and the SAE trained for it; a representation (or
    # centring) and its similarity
    together = [{"layer", "sae"}, {"sae", "similarity"}, {"centre", "similarity"}, {"layer", "sae", "similarity"},
                {"centre", "sae", "similarity"}, {"row_top", "similarity"}]
    combined = [v for v in all_variants if v.axis == "combinations"]
    bases.append(combined[0])  # the combinations change one thing from their own base
    bases += [v for v in all_variants if v.axis == "combinations, per-row prototypes" and v.label.endswith("max "
                                                                                                    "prototype")]
    for v in all_variants[2:]:
        changes = [{f for f in fields if getattr(v, f) != getattr(b, f)} for b in bases]
        assert any(len(c) <= 1 or c in together for c in changes), (v, changes)


def test_latent_weights_and_row_caps():
    pool = sp.csr_matrix(np.array([[1.0, 2.0, 0.0, 0.0], [1.0, 0.0, 3.0, 0.0], [1.0, 0.0, 0.0, 4.0]]))
    targets = sp.csr_matrix(np.array([[1.0, 0.0, 0.0, 5.0]]))
    idf = latent_weights(pool, targets, "idf")
    assert idf[0] < idf[1] == idf[2] == idf[3]  # latent 0 fires on every row, the others on one each
    np.testing.assert_array_equal(latent_weights(pool, targets, "drop-common"), [0.0, 1.0, 1.0, 1.0])
    spec = latent_weights(pool, targets, "specificity")
    assert spec[3] > spec[0] > 0 and spec[1] == spec[2]  # latent 3 holds most of the target's mass
    capped = keep_row_top(pool, 1).toarray()
    np.testing.assert_array_equal(capped, [[0, 2, 0, 0], [0, 0, 3, 0], [0, 0, 0, 4]])
    # latent 0 fires on all three rows: all of a pick's shared mass on it counts as generic
    proto = np.array([1.0, 0.0, 0.0, 5.0])
    assert generic_share(pool, proto, np.array([0, 1])) == 1.0
    assert generic_share(pool, proto, np.array([2])) == 1.0 / 5.0


def test_density_weights_favour_rare_latents(sae_dir):
    sae = load_sae(sae_dir)
    acts = np.random.default_rng(0).normal(size=(400, int(sae.b_dec.shape[0]))).astype(np.float16)
    w = density_weights(sae, acts)
    values, indices = encode(sae, torch.from_numpy(acts.astype(np.float32)))
    counts = np.bincount(indices[values > 0].numpy(), minlength=len(w))
    # log((N + 1) / (count + 1)): the weight falls as a latent fires on more tokens
    np.testing.assert_allclose(w, np.log(401 / (counts + 1)), rtol=1e-6)
    assert w[counts.argmax()] < w[counts.argmin()]


def test_token_turns_line_up_with_collected_tokens(collected, tiny_model, tokenizer):
    acts_dir, n_shards, rendered = collected
    lm = TruncatedLM(tiny_model, tokenizer, [0, SAE_LAYER], batch_tokens=40)
    turns = token_turns(lm, rendered)
    _, offsets = load_by_sample(acts_dir, SAE_LAYER, n_shards)
    assert [len(t) for t in turns] == list(np.diff(offsets))
    two_turns = Sample("q", (("user", "what is two plus two ?"), ("assistant", "four , of course")), None,
                       Record({}, 0, 1))
    (t,) = token_turns(lm, [render(two_turns, tokenizer, "chat")])
    assert t[0] == 0 and t[-1] == 1 and (np.diff(t) >= 0).all()  # the question's tokens, then the answer's


def test_turn_aware_pooling_fixes_the_answer_share():
    instruction = sp.csr_matrix(np.array([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    answer = sp.csr_matrix(np.array([[0.0, 4.0, 4.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
    out = turn_aware(instruction, answer, 0.25).toarray()
    np.testing.assert_allclose(out, [[1.5, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0]])


def test_sweep_caches_are_keyed_by_model_and_dtype(model_dir, tiny_model, tokenizer, monkeypatch, tmp_path):
    from mona.bench.sweep import SweepSaes, lm_key
    from mona.models import model_fingerprint

    monkeypatch.setenv("MONA_CACHE", str(tmp_path))
    fp32 = TruncatedLM(tiny_model, tokenizer, [SAE_LAYER])
    assert lm_key(str(model_dir), fp32) == [model_fingerprint(str(model_dir))]
    bf16 = TruncatedLM(copy.deepcopy(tiny_model).to(torch.bfloat16), tokenizer, [SAE_LAYER])
    assert lm_key(str(model_dir), bf16) == [model_fingerprint(str(model_dir)), "bfloat16"]
    cfg = SweepConfig()
    paths = {SweepSaes(cfg, lm, tokenizer, model, print).path(SAE_LAYER, "x4-k8")
             for lm, model in ((fp32, str(model_dir)), (bf16, str(model_dir)), (fp32, str(tmp_path)))}
    assert len(paths) == 3  # another dtype or another model never reuses an SAE
