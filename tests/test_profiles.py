"""`mona plot profiles` and `mona plot scores` on the tiny model and SAE."""

from __future__ import annotations

import json
import random

import numpy as np

from conftest import COOK, MATH, write_jsonl
from mona.explain.profiles import top_variant_units
from test_cli import _invoke


def _topic_file(path, words, seed):
    rng = random.Random(seed)
    return write_jsonl(path, [{"text": " ".join(rng.choice(words) for _ in range(8))} for _ in range(12)])


def test_top_variant_units_orders_by_variance():
    x = np.array([[0, 5, 1, 0], [0, -5, 1, 2], [0, 5, 1, 0]], dtype=float)
    assert top_variant_units(x, 2).tolist() == [1, 3]
    assert top_variant_units(x, 10).tolist() == [1, 3, 0, 2]  # ties by index


def test_plot_profiles_and_scores(tmp_path, model_dir, sae_dir):
    math = _topic_file(tmp_path / "math.jsonl", MATH, 1)
    cook = _topic_file(tmp_path / "cook.jsonl", COOK, 2)
    out = tmp_path / "fig" / "profiles"
    result = _invoke(["plot", "profiles", "--set", f"math={math}", "--set", f"cook={cook}", "--n", "10",
                      "--units", "20", "--model", str(model_dir), "--sae", str(sae_dir), "--out", str(out)],
                     tmp_path / "cache")
    assert result.exit_code == 0, result.stderr
    for suffix in (".png", ".svg"):
        assert out.with_suffix(suffix).stat().st_size > 10_000
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["neurons", "mona"]
    assert all(-1 <= float(line.split("silhouette ")[1].split()[0]) <= 1 for line in lines)

    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"id": str(i), "score": i / 10, "rank": 10 - i, "selected": i > 6}) + "\n"
                              for i in range(10)))
    result = _invoke(["plot", "scores", "--scores", str(scores), "--out", str(tmp_path / "s")], tmp_path / "cache")
    assert result.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 5_000

    result = _invoke(["plot", "profiles", "--set", f"math={math}", "--out", str(out)], tmp_path / "cache")
    assert result.exit_code == 4 and "at least two" in result.stderr
