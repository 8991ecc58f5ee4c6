"""The relevance benchmark's shared LM pass fills every cache the per-method runs then read: pool rows in the
pool role (compact top-m keys) and target rows in the target role, so no target set is featurized again."""

from __future__ import annotations

import json

from conftest import sentences
from mona.bench.relevance import prefetch_lm_methods, run_method
from mona.bench.suite import Suite, TargetSet
from mona.features.lm import LMConfig
from mona.selection.config import MethodOptions


def test_shared_pass_leaves_nothing_to_compute(model_dir, sae_dir, tmp_path):
    texts = sentences(12, seed=7)
    pool = [{"id": f"p{i}", "text": t} for i, t in enumerate(texts[:9])]
    targets = [TargetSet("t/a", "in-format", [{"text": texts[9]}, {"text": texts[10]}], {"p0", "p1"}, half="A"),
               TargetSet("t/b", "in-format", [{"text": texts[11]}], {"p2"}, half="B")]
    suite = Suite(pool, targets, {"per_task": 2})
    options = [MethodOptions(method=m, lm=LMConfig(model=str(model_dir)), sae=str(sae_dir))
               for m in ("mona", "hidden")]
    covered, stats = prefetch_lm_methods(options, suite, tmp_path)
    assert sorted(covered) == ["hidden", "mona"] and stats.computed == len(pool) + 3
    for o in options:
        run = run_method(o.method, o, suite, 2, tmp_path, log=lambda _: None)
        assert run.computed == 0 and run.cache_hits == 2 * (len(pool)) + 3, o.method
        assert set(run.per_target) == {"t/a", "t/b"}
        # the generic-latent diagnostic is measured for SAE methods only, as a share
        shares = [m.get("generic_share") for m in run.per_target.values()]
        if o.method == "mona":
            assert all(0.0 <= v <= 1.0 for v in shares)
        else:
            assert shares == [None, None]


def test_report_has_halves_kinds_lengths_and_generic_share(tmp_path):
    from mona.bench.relevance import MethodRun, write_report

    targets = [TargetSet("k1/a", "k1", [{"text": "x"}], {"p0"}, half="A"),
               TargetSet("k2/b", "k2", [{"text": "y"}], {"p1"}, half="B")]
    suite = Suite([{"id": "p0", "text": "a"}, {"id": "p1", "text": "b"}], targets, {"suite": "hard", "per_task": 1})
    metrics = {"recall": 1.0, "ndcg": 1.0, "pick_words": 20.0, "relevant_words": 10.0}
    mona = MethodRun("mona", {"k1/a": {**metrics, "precision": 1.0, "generic_share": 0.2},
                              "k2/b": {**metrics, "precision": 0.5, "generic_share": 0.4}})
    dense = MethodRun("dense", {"k1/a": {**metrics, "precision": 0.0}, "k2/b": {**metrics, "precision": 1.0}},
                      featurize_seconds=3.0, tokens=600, computed=2)
    json_path, md_path = write_report([mona, dense], suite, 1, "mona bench relevance", tmp_path)
    md = md_path.read_text()
    assert "| method | P@k all | half A | half B | k1 | k2 |" in md
    assert "| mona | 0.750 | 1.000 | 0.500 | 1.000 | 0.500 | 1.000 | - | 2.00 | 0.30 | cached | - | - |" in md
    # featurization cost: seconds, seconds per 1,000 computed rows, tokens per second
    assert "| dense | 0.500 | 0.000 | 1.000 | 0.000 | 1.000 | 1.000 | - | 2.00 | - | 3 | 1500 | 200 |" in md
    data = json.loads(json_path.read_text())
    assert data["methods"][0]["mean_by_half"] == {"A": 1.0, "B": 0.5}
