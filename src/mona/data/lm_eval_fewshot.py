"""Few-shot exemplars shipped inside the `lm-eval` wheel (GSM8K CoT, MMLU CoT by subject, MBPP, Minerva
math), as rows {id, instruction, output, task, subtask}. The wheel comes from PyPI via `pip download`, is
checked against its sha256 and read as a zip: lm-eval is never installed or imported. BBH's exemplars are
deliberately not extracted: they are kept for an external check."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

from mona.atomic import atomic_write
from mona.fetch import fetch_verified
from mona.paths import cache_root

LM_EVAL_VERSION = "0.4.13"
LM_EVAL_SHA256 = "5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a"


class _Loader(yaml.SafeLoader):
    """lm-eval YAML uses `!function module.name` tags; keep them as plain strings."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix} {loader.construct_scalar(node)}")


def _python_samples(source: str) -> list[dict[str, Any]]:
    """The literal list returned by `list_fewshot_samples()` in an lm-eval utils.py (parsed, not executed)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "list_fewshot_samples":
            for stmt in node.body:
                if isinstance(stmt, ast.Return) and stmt.value is not None:
                    return ast.literal_eval(stmt.value)
    return []


def _rows(zf: zipfile.ZipFile) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    gsm = yaml.load(zf.read("lm_eval/tasks/gsm8k/gsm8k-cot.yaml"), Loader=_Loader)
    for i, s in enumerate(gsm["fewshot_config"]["samples"]):
        rows.append({"id": f"gsm8k_cot/{i}", "instruction": s["question"], "output": s["target"],
                     "task": "gsm8k_cot", "subtask": ""})
    prefix = "lm_eval/tasks/mmlu/flan_cot_fewshot/mmlu_"
    for name in sorted(n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".yaml")):
        subject = name[len(prefix):-len(".yaml")]
        cfg = yaml.load(zf.read(name), Loader=_Loader)
        for i, s in enumerate((cfg.get("fewshot_config") or {}).get("samples") or []):
            rows.append({"id": f"mmlu_cot/{subject}/{i}", "instruction": s["question"], "output": s["target"],
                         "task": "mmlu_cot", "subtask": subject})
    for i, s in enumerate(_python_samples(zf.read("lm_eval/tasks/mbpp/utils.py").decode())):
        tests = "\n".join(s.get("test_list", []))
        rows.append({"id": f"mbpp/{i}", "instruction": f"{s['text']} Your code should pass these tests:\n\n{tests}",
                     "output": s["code"].replace("\r\n", "\n"), "task": "mbpp", "subtask": ""})
    for i, s in enumerate(_python_samples(zf.read("lm_eval/tasks/minerva_math/utils.py").decode())):
        rows.append({"id": f"minerva_math/{i}", "instruction": s["problem"], "output": s["solution"],
                     "task": "minerva_math", "subtask": ""})
    return rows


def prepare_lm_eval_fewshot(wheel: Path | None = None) -> Path:
    """Fetch (if needed), verify and extract the exemplars once; return the JSONL path."""
    out = cache_root() / "lm-eval-fewshot" / LM_EVAL_VERSION / "fewshot.jsonl"
    if out.exists():
        return out
    wheel = fetch_verified(f"lm-eval=={LM_EVAL_VERSION}", f"lm_eval-{LM_EVAL_VERSION}-*.whl", LM_EVAL_SHA256, wheel)
    with zipfile.ZipFile(wheel) as zf:
        rows = _rows(zf)
    with atomic_write(out) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
