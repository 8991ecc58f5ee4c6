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


def _fake_sae(tmp_path: Path) -> Path:
    # the refusal comes before the SAE is read: its files only need to exist
    sae = tmp_path / "sae"
    sae.mkdir(exist_ok=True)
    (sae / "cfg.json").write_text("{}")
    (sae / "sae.safetensors").write_bytes(b"weights")
    return sae


def _dir_with(tmp_path: Path, name: str, source: Path) -> Path:
    """A directory holding a copy of `source` as `name` (an input inside a directory that an output names)."""
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(source.read_bytes())
    return folder


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
    "judge --out = --selection": lambda f, t: ["judge", "--target", str(f["target"]), "--selection", str(f["pool"]),
                                               "--out", str(f["pool"])],
    "judge --out = --target": lambda f, t: ["judge", "--target", str(f["target"]), "--selection", str(f["pool"]),
                                            "--out", str(f["target"])],
    "judge --out inside --model": lambda f, t: ["judge", "--target", str(f["target"]), "--selection",
                                                str(f["pool"]), "--model", str(t), "--out", str(t / "j.json")],
    "plot scores --out over --scores": lambda f, t: [
        "plot", "scores", "--scores", str(_dir_with(t, "s.svg", f["pool"]) / "s.svg"), "--out", str(t / "run" / "s")],
    "plot profiles --out inside --model": lambda f, t: [
        "plot", "profiles", "--set", f"a={f['pool']}", "--set", f"b={f['target']}", "--model", str(t), "--out",
        str(t / "fig")],
    "finetune --out holding --data": lambda f, t: [
        "finetune", "--data", str(_dir_with(t, "train.json", f["pool"]) / "train.json"), "--out", str(t / "run")],
    "finetune --out = --data": lambda f, t: ["finetune", "--data", str(f["pool"]), "--out", str(f["pool"])],
    "eval --out = --data": lambda f, t: ["eval", "--data", str(f["pool"]), "--out", str(f["pool"])],
    "eval --out inside --adapter": lambda f, t: ["eval", "--data", str(f["target"]), "--adapter", str(t),
                                                 "--out", str(t / "eval.json")],
    "features label --out = an SAE file": lambda f, t: [
        "features", "label", "--sae", str(_fake_sae(t)), "--out", str(t / "sae" / "cfg.json")],
    "features label --out = --texts": lambda f, t: [
        "features", "label", "--sae", str(_fake_sae(t)), "--texts", str(f["pool"]), "--out", str(f["pool"])],
    "sae train --out = --texts": lambda f, t: ["sae", "train", "--texts", str(f["pool"]), "--out", str(f["pool"])],
    "sae train --out holding --texts": lambda f, t: [
        "sae", "train", "--texts", str(_dir_with(t, "texts.jsonl", f["pool"]) / "texts.jsonl"), "--out",
        str(t / "run")],
    "llm2vec train --out inside --model": lambda f, t: ["llm2vec", "train", "--model", str(t), "--out",
                                                        str(t / "adapter")],
    "bench speed --out-md = --pool": lambda f, t: ["bench", "speed", "--pool", str(f["pool"]), "--out-md",
                                                   str(f["pool"])],
    "bench speed --out = --pool": lambda f, t: ["bench", "speed", "--pool", str(f["pool"]), "--out", str(f["pool"])],
    "bench scoring --out-md = --source": lambda f, t: ["bench", "scoring", "--source", str(f["pool"]), "--target",
                                                       str(f["target"]), "--out-md", str(f["pool"])],
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
    run = tmp_path / "run"
    if run.exists():  # the copy of an input inside an output directory is untouched, and nothing was added
        assert sorted(p.name for p in run.iterdir()) in (["s.svg"], ["train.json"], ["texts.jsonl"])
        assert next(run.iterdir()).read_bytes() == before[files["pool"]]


def test_every_writing_command_is_covered():
    """Each command with an output option appears in CASES (a new one must add its case)."""
    import typer.main

    def commands(group, prefix: str = "") -> dict:
        found = {}
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a sub-app
                found.update(commands(cmd, f"{prefix}{name} "))
            else:
                found[f"{prefix}{name}"] = cmd
        return found

    writing = {name for name, cmd in commands(typer.main.get_command(app)).items()
               if any(o in p.opts for p in cmd.params for o in ("--out", "--out-md", "--scores", "--quarantine"))
               and name not in {"bench relevance", "bench downstream", "bench top-m"}}  # --out-dir: generated names
    groups = {"plot", "features", "sae", "bench", "llm2vec"}
    covered = {" ".join(c.split()[:2]) if c.split()[0] in groups else c.split()[0] for c in CASES}
    assert {"select", "judge", "sae train", "plot scores"} <= writing
    assert writing <= covered | {"bench memory"}, writing - covered  # bench memory: no inputs, see below


@pytest.mark.parametrize("args", [
    lambda f, t: _select(f, scores=f["out"]),
    lambda f, t: ["bench", "memory", "--out", str(t / "m.json"), "--out-md", str(t / "m.json")],
    lambda f, t: ["bench", "speed", "--pool", str(f["pool"]), "--out", str(t / "s"), "--out-md", str(t / "s")],
], ids=["select --out = --scores", "bench memory --out = --out-md", "bench speed --out = --out-md"])
def test_two_outputs_on_one_path_are_refused(tmp_path, args):
    files = make_files(tmp_path)
    result = _invoke(args(files, tmp_path), files["cache"])
    assert result.exit_code == 4, result.output
    assert "name the same file" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not files["out"].exists() and not (tmp_path / "m.json").exists()


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
