"""The relevance benchmark's shared LM pass fills every cache the per-method runs then read: pool rows in the
pool role (compact top-m keys) and target rows in the target role, so no target set is featurized again."""

from __future__ import annotations

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
