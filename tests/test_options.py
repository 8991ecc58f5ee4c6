"""One place for every default: each generated option of `mona select` and `mona bench relevance` has its
dataclass field's default and help; a method's own options are typed, and a method is one registry line."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from mona.bench.options import RelevanceConfig
from mona.cli import app
from mona.features.options import Bm25Options, DsirOptions, LessOptions, MonaOptions
from mona.selection.config import MethodOptions, SelectConfig
from mona.selection.registry import METHODS, get_method, with_defaults


def _command(name: str, group: str | None = None):
    click_app = typer.main.get_command(app)
    cmd = click_app.commands[group].commands[name] if group else click_app.commands[name]
    return cmd, {p.name: p for p in cmd.params}


@pytest.mark.parametrize(("name", "group"), [("select", None), ("relevance", "bench")])
def test_each_generated_option_has_its_fields_default_and_help(name, group):
    cmd, params = _command(name, group)
    generated = cmd.callback.__options__
    assert generated, "the command builds its options from dataclasses"
    for g in generated:
        f = next(f for f in dataclasses.fields(g.cls) if f.name == g.field)
        param = params[g.param]
        assert param.opts == [g.flag] or param.opts[0] == g.flag, (g, param.opts)
        assert param.help.startswith(f.metadata["help"]), g
        if g.method_default:  # the method's own option: unset on the command line, its default named in the help
            assert param.default in (None, False) and (f.type == "bool" or f"[default: {f.default}]" in param.help)
        elif f.default is dataclasses.MISSING or g.required:
            assert param.required, g
        else:
            assert param.default == f.default, g


def test_every_option_of_select_comes_from_a_dataclass():
    cmd, params = _command("select")
    from_fields = {g.param for g in cmd.callback.__options__}
    assert set(params) - from_fields == {"threads", "quiet", "show"}  # the command line's own
    # every select-level field is an option, and the contract's flags are there
    for cls in (SelectConfig, MethodOptions):
        names = {f.name for f in dataclasses.fields(cls) if "help" in f.metadata}
        assert names <= {g.field for g in cmd.callback.__options__ if g.cls is cls}
    flags = {o for p in cmd.params for o in p.opts}
    assert {"--pool", "--target", "--ratio", "--budget", "--out", "--method", "--scores", "--model", "--sae",
            "--layer", "--cache-dir", "--seed", "--bm25-combine", "--dsir-gumbel", "--less-dim",
            "--embedder"} <= flags


def test_relevance_defaults_are_the_dataclass_defaults():
    _, params = _command("relevance", "bench")
    assert params["methods"].default == RelevanceConfig.methods and params["suite"].default == "hard"


def test_method_defaults_live_in_their_options_class():
    mona = with_defaults(MethodOptions())
    assert (mona.pooling, mona.top_m, mona.params) == (MonaOptions.pooling, MonaOptions.top_m, MonaOptions())
    given = with_defaults(MethodOptions(pooling="mean"))
    assert given.pooling == "mean" and given.params.pooling == "mean"  # a shared knob overrides the default
    assert with_defaults(MethodOptions(method="bm25")).params == Bm25Options()
    assert get_method("dsir").options is DsirOptions and get_method("less").options is LessOptions
    for name, spec in METHODS.items():
        assert spec.help and (spec.featurizes or spec.text), name  # one line: options class + how it runs


def test_select_cli_reaches_the_methods_own_options(tmp_path):
    from test_cli import _args, _invoke, make_files

    files = make_files(tmp_path)
    outs = []
    for combine in ("mean", "max"):
        result = _invoke(_args(files, "--method", "bm25", "--bm25-combine", combine), files["cache"])
        assert result.exit_code == 0, result.stderr
        outs.append(files["scores"].read_text())
    assert outs[0] != outs[1]
    result = _invoke(_args(files, "--method", "bm25", "--bm25-combin", "max"), files["cache"])
    assert result.exit_code == 64 and "No such option" in result.output  # a typo is an error


def _commands(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


# options of the command line's own, with a default written only there (where a report goes)
CLI_OWN_DEFAULTS = {("bench top-m", "out_dir"), ("bench relevance", "out_dir"), ("bench downstream", "out_dir"),
                    ("bench downstream", "figures_dir")}


@pytest.mark.parametrize(("name", "cmd"), list(_commands()), ids=[n for n, _ in _commands()])
def test_no_command_writes_a_default_of_its_own(name, cmd):
    """Every option of every command with a default (other than unset or off) takes it from a dataclass field:
    none is written in the command line and again in the library."""
    generated = {g.param for g in getattr(cmd.callback, "__options__", [])}
    own = {p.name for p in cmd.params if p.name not in generated and p.name != "help"
           and p.default not in (None, False, [], ())}
    assert own <= {o for c, o in CLI_OWN_DEFAULTS if c == name}, own
    # and each generated one is its field's (checked in detail for select and relevance above)
    for g in getattr(cmd.callback, "__options__", []):
        f = next(f for f in dataclasses.fields(g.cls) if f.name == g.field)
        param = next(p for p in cmd.params if p.name == g.param)
        assert param.help.startswith(f.metadata["help"]), g
        if not g.method_default and f.default is not dataclasses.MISSING and not g.required:
            assert param.default == f.default, g


def test_bench_relevance_reaches_the_methods_own_options(monkeypatch, tmp_path):
    """`mona bench relevance` takes the same method flags as `mona select` and hands each method its own."""
    from typer.testing import CliRunner

    import mona.bench.relevance as relevance
    from mona.features.options import MatesOptions

    seen = {}

    def fake_run(config, command, out_dir, cache_dir, sweep=None, progress=None, log=print, params=None,
                 work_dir=None):
        seen.update(params=params, methods=config.method_names, work_dir=work_dir, targets=config.targets)
        md = tmp_path / "r.md"
        md.write_text("report")
        return tmp_path / "r.json", md

    monkeypatch.setattr(relevance, "run_relevance", fake_run)
    result = CliRunner().invoke(app, ["bench", "relevance", "--methods", "mates,bm25,dsir", "--mates-probes", "50",
                                      "--dsir-buckets", "64", "--out-dir", str(tmp_path), "--work-dir",
                                      str(tmp_path / "work"), "--targets", "B"])
    assert result.exit_code == 0, result.output
    assert seen["params"] == {"mates": MatesOptions(probes=50), "bm25": None, "dsir": DsirOptions(buckets=64)}
    assert seen["work_dir"] == tmp_path / "work" and seen["targets"] == "B"
