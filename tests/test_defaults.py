"""Method defaults: options left unset take the method's own values (mona: the dev suite's choices; mona-paper:
the published configuration), and giving them explicitly changes nothing."""

from __future__ import annotations

import pytest

from mona.features.options import MonaOptions
from mona.selection.registry import MethodOptions, get_method, with_defaults
from test_cli import _args, _invoke, make_files


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


def test_unset_options_take_the_method_defaults():
    mona = with_defaults(MethodOptions(method="mona"))
    assert (mona.pooling, mona.prototype, mona.top_m, mona.similarity) == (
        MonaOptions.pooling, MonaOptions.prototype, MonaOptions.top_m, "jaccard")
    paper = with_defaults(MethodOptions(method="mona-paper"))
    assert (paper.pooling, paper.prototype, paper.top_m) == ("mean", "single", 0)
    hidden = with_defaults(MethodOptions(method="hidden", pooling="max"))
    assert (hidden.pooling, hidden.similarity) == ("max", "cosine")  # what is given stays


def test_mona_builds_its_chosen_representation(model_dir, sae_dir):
    from mona.features.lm import LMConfig, LMRunner

    runner = LMRunner(LMConfig(model=str(model_dir)))
    mona = get_method("mona").build(MethodOptions(sae=str(sae_dir)), runner)
    paper = get_method("mona-paper").build(MethodOptions(method="mona-paper", sae=str(sae_dir)), runner)
    assert mona.pooling == MonaOptions.pooling and mona.top_m == MonaOptions.top_m
    assert mona.k == min(MonaOptions.codes, mona.sae_k)  # 16 codes per token, or all of a smaller SAE's
    assert paper.pooling == "mean" and paper.top_m is None and paper.k is None
    assert mona.key_config() != paper.key_config()


@pytest.mark.parametrize(("method", "explicit"), [
    ("mona", ["--pooling", MonaOptions.pooling, "--top-m", str(MonaOptions.top_m)]),
    ("mona-paper", ["--pooling", "mean", "--top-m", "0", "--prototype", "single"]),
])
def test_explicit_defaults_select_the_same(files, model_dir, sae_dir, method, explicit):
    base = _args(files, "--method", method, "--model", str(model_dir), "--sae", str(sae_dir))
    outputs = []
    for extra in ([], explicit):
        result = _invoke([*base, *extra], files["cache"])
        assert result.exit_code == 0, result.stderr
        outputs.append((files["out"].read_bytes(), files["scores"].read_bytes()))
    assert outputs[0] == outputs[1]
