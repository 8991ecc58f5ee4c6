"""No command may write over its own inputs, two outputs may not share a path, and unwritable output locations
are refused before any work (exit 4 / exit 3, one line, inputs byte-identical afterwards)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mona.cli import app
from test_cli import make_files


def _invoke(args: list[str], cache: Path):
    return CliRunner().invoke(app, args, env={"MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})


def _select(files, **paths: Path) -> list[str]:
    args = ["select", "--pool", str(files["pool"]), "--target", str(files["target"]), "--budget", "2",
            "--method", "random"]
    paths = {"out": files["out"], **paths}
    for option, path in paths.items():
        args += [f"--{option.replace('_', '-')}", str(path)]
    return args


def _symlink_to(tmp_path: Path, target: Path) -> Path:
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    return link


# each case: a command line (from the test files and tmp_path) whose output names one of its inputs
CASES = {
    "select --out = --pool": lambda f, t: _select(f, out=f["pool"]),
    "select --out = --target": lambda f, t: _select(f, out=f["target"]),
    "select --out = symlink to --pool": lambda f, t: _select(f, out=_symlink_to(t, f["pool"])),
    "select --scores = --pool": lambda f, t: _select(f, scores=f["pool"]),
    "select --scores = --target": lambda f, t: _select(f, scores=f["target"]),
    "select --quarantine = --pool": lambda f, t: [*_select(f, quarantine=f["pool"]), "--on-error", "skip"],
    "select --out inside a pool directory": lambda f, t: _select(
        {**f, "pool": f["pool"].parent}, out=f["pool"].parent / "x" / "sel.jsonl"),
    "report --out = --pool": lambda f, t: ["report", "--pool", str(f["pool"]), "--scores", str(f["target"]),
                                           "--out", str(f["pool"])],
    "report --out = --scores": lambda f, t: ["report", "--pool", str(f["pool"]), "--scores", str(f["target"]),
                                             "--out", str(f["target"])],
    "explain --out = --target": lambda f, t: ["explain", "--pool", str(f["pool"]), "--target", str(f["target"]),
                                              "--ids", "m1", "--out", str(f["target"])],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_command_writes_over_its_inputs(tmp_path, case):
    files = make_files(tmp_path)
    before = {p: p.read_bytes() for p in (files["pool"], files["target"])}
    result = _invoke(CASES[case](files, tmp_path), files["cache"])
    assert result.exit_code == 4, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "would overwrite the input" in message
    assert {p: p.read_bytes() for p in before} == before
    assert not files["out"].exists()


def test_two_outputs_on_one_path_are_refused(tmp_path):
    files = make_files(tmp_path)
    result = _invoke(_select(files, scores=files["out"]), files["cache"])
    assert result.exit_code == 4
    assert "--out and --scores name the same file" in result.stderr
    assert not files["out"].exists()


@pytest.mark.parametrize("where", ["out is a directory", "out under a file", "cache-dir is a file"])
def test_unwritable_outputs_are_refused_before_work(tmp_path, where):
    files = make_files(tmp_path)
    extra: dict[str, Path] = {}
    if where == "out is a directory":
        extra["out"] = tmp_path
    elif where == "out under a file":
        extra["out"] = files["pool"] / "sel.jsonl"
    else:
        extra["cache_dir"] = files["target"]
    args = _select(files, **extra)
    if where == "cache-dir is a file":
        args[args.index("random")] = "bm25"  # a method that uses the cache
    result = _invoke(args, files["cache"])
    assert result.exit_code in (3, 4), result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not files["out"].exists()
