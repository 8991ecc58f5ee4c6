"""The Python API: `mona.select` on a path, a list of dicts, a `datasets.Dataset` and a `pandas.DataFrame` picks what
`mona select` picks on the same rows and writes no file; `mona.Selector` featurizes the pool once and picks for
several targets as separate `select` calls do; option typos are errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mona
from mona.errors import ConfigError, InputError
from test_cli import POOL_IDS, POOL_ROWS, TARGET_ROWS, _args, _invoke, _read_jsonl, make_files

ROWS = [json.loads(line) for line in POOL_ROWS]


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


def _cli(files, *extra: str, budget: int = 4) -> tuple[list[str], list[dict]]:
    """What `mona select` picks (ids, best first) and its SCORES rows."""
    result = _invoke(_args(files, *extra, budget=budget), files["cache"])
    assert result.exit_code == 0, result.stderr
    return [r.get("id") for r in _read_jsonl(files["out"])], _read_jsonl(files["scores"])


def _inputs(kind: str):
    if kind == "list":
        return list(ROWS), list(TARGET_ROWS)
    if kind == "iterator":
        return iter(ROWS), (r for r in TARGET_ROWS)
    import pandas as pd

    return pd.DataFrame(ROWS), pd.DataFrame(TARGET_ROWS)


@pytest.mark.parametrize("kind", ["list", "iterator", "dataframe"])
def test_select_in_memory_picks_what_the_cli_picks(files, tmp_path, monkeypatch, model_dir, sae_dir, kind):
    ids, scores = _cli(files, "--model", str(model_dir), "--sae", str(sae_dir))
    monkeypatch.chdir(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    pool, target = _inputs(kind)
    picked = mona.select(pool, target, budget=4, model=str(model_dir), sae=str(sae_dir), cache_dir=files["cache"])
    assert picked.ids == ids
    assert picked.rows == [ROWS[POOL_IDS.index(i)] for i in ids]  # unchanged (a DataFrame's missing cells left out)
    np.testing.assert_allclose(picked.scores, [s["score"] for s in scores], atol=1e-7)
    assert list(picked.ranks) == [s["rank"] for s in scores]
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before  # no file written


def test_select_on_a_dataset_picks_what_the_cli_picks(files, tmp_path, model_dir, sae_dir):
    """A Dataset has one schema for all its rows, so the mixed-format pool goes in as one text column."""
    from datasets import Dataset

    texts = [{"id": r["id"], "text": " ".join(str(v) for k, v in r.items() if k != "id")} for r in ROWS]
    (tmp_path / "flat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in texts))
    files["pool"] = tmp_path / "flat.jsonl"
    ids, scores = _cli(files, "--model", str(model_dir), "--sae", str(sae_dir))
    picked = mona.select(Dataset.from_list(texts), Dataset.from_list(TARGET_ROWS), budget=4,
                         model=str(model_dir), sae=str(sae_dir), cache_dir=files["cache"])
    assert picked.ids == ids
    np.testing.assert_allclose(picked.scores, [s["score"] for s in scores], atol=1e-7)
    assert picked.to_dataset()["id"] == ids and list(picked.to_pandas()["id"]) == ids


def test_selection_write_writes_what_the_cli_writes(files, tmp_path):
    _cli(files, "--method", "bm25")
    picked = mona.select(files["pool"], files["target"], budget=4, method="bm25")
    picked.write(tmp_path / "out.jsonl", tmp_path / "scores.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == files["out"].read_bytes()
    assert (tmp_path / "scores.jsonl").read_bytes() == files["scores"].read_bytes()


def test_selector_fits_once_and_matches_separate_selects(files, model_dir, sae_dir):
    options = {"model": str(model_dir), "sae": str(sae_dir), "cache_dir": files["cache"]}
    targets = [TARGET_ROWS, TARGET_ROWS[:1], [{"text": "bake a cake with flour"}, {"text": "soup recipe"}]]
    selector = mona.Selector(**options).fit(ROWS)
    assert selector.pool_stats.samples == len(ROWS)
    for target in targets:
        alone = mona.select(ROWS, target, budget=3, **options)
        picked = selector.select(target, budget=3)
        assert picked.ids == alone.ids
        np.testing.assert_allclose(picked.scores, alone.scores, atol=1e-7)
    assert selector.pool_stats.samples == len(ROWS)  # selecting did not featurize the pool again
    bm25 = mona.Selector(method="bm25", combine="max").fit(ROWS)
    assert bm25.select(TARGET_ROWS, ratio=0.5).ids == mona.select(ROWS, TARGET_ROWS, ratio=0.5, method="bm25",
                                                                  combine="max").ids


def test_option_typos_and_bad_rows_are_errors(files):
    with pytest.raises(ConfigError, match="unknown option 'poolng' for method mona; did you mean 'pooling'"):
        mona.select(ROWS, TARGET_ROWS, budget=2, poolng="max")
    with pytest.raises(ConfigError, match="unknown option 'combine' for method mona"):
        mona.Selector(combine="max")  # bm25's option, not mona's
    with pytest.raises(ConfigError, match="unknown BM25 combination"):
        mona.select(ROWS, TARGET_ROWS, budget=2, method="bm25", combine="median")
    with pytest.raises(InputError, match=r"pool:2: duplicate id 'm1' \(first seen on line 1\)"):
        mona.select([ROWS[0], ROWS[0]], TARGET_ROWS, budget=1, method="random")
    with pytest.raises(InputError, match="target:1: row has no text"):
        mona.select(ROWS, [{"label": 3}], budget=1, method="random")
    picked = mona.select([*ROWS, {"id": "bad"}], TARGET_ROWS, budget=1, method="random", on_error="skip")
    assert [r.line for r in picked.rejected] == [len(ROWS) + 1] and len(picked.pool_ids) == len(ROWS)
    with pytest.raises(ConfigError, match="call fit"):
        mona.Selector(method="random").select(TARGET_ROWS, budget=1)
