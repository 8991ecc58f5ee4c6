"""The `mona` command line: a thin Typer app over the library."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from mona.bench.options import (
    REPORTS,
    DownstreamConfig,
    MemoryConfig,
    RelevanceConfig,
    ScoringConfig,
    SpeedConfig,
    TopMConfig,
)
from mona.cli_options import Generated, generated, values_of, with_options
from mona.config import comma_ints
from mona.display import for_display
from mona.errors import USAGE_EXIT, ConfigError, Interrupted, MissingFileError, MonaError
from mona.explain.options import ExplainConfig, JudgeConfig, LabelConfig, ProfilesConfig
from mona.features.llm2vec_options import Llm2VecEvalConfig, Llm2VecTrainConfig
from mona.features.options import LMConfig
from mona.finetune.options import EvalConfig, FinetuneConfig
from mona.report.options import ReportConfig
from mona.sae.options import SaeBuildConfig, SaeTrainConfig
from mona.selection.config import MethodOptions, SelectConfig


def _usage_error() -> type[Exception]:
    try:  # typer >= 0.2x carries its own copy of click
        from typer._click.exceptions import UsageError
    except ImportError:  # pragma: no cover - older typer on the real click
        from click.exceptions import UsageError
    return UsageError


class MonaGroup(TyperGroup):
    """The top-level group: a command line that cannot be parsed exits USAGE_EXIT, not 2 (bad input); a MonaError
    is one line and its exit code; Ctrl-C prints one line and exits 130; a file operation that fails outside
    mona's own checks is one line, exit 3."""

    def make_context(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(*args, **kwargs)
        except _usage_error() as exc:
            exc.exit_code = USAGE_EXIT  # type: ignore[attr-defined]
            raise

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except _usage_error() as exc:
            exc.exit_code = USAGE_EXIT  # type: ignore[attr-defined]
            raise
        except MonaError as exc:  # every command's errors end here: one line, the error's exit code
            _fail(exc)
        except KeyboardInterrupt as exc:
            # Typer would turn this into a silent exit 130; say what happened (and, from select, how to resume)
            message = exc.message if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)"
            err.print(Text.assemble(("error:", "red"), " ", for_display(message, one_line=True)), soft_wrap=True)
            raise typer.Exit(Interrupted.exit_code) from None
        except OSError as exc:
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            _fail(MissingFileError(reason, path=None if exc.filename is None else str(exc.filename)))


app = typer.Typer(cls=MonaGroup,
                  help="Select task-specific instruction-tuning data from a language model's monosemantic "
                       "(sparse-autoencoder) features, or with any of the baselines.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
sae_app = typer.Typer(help="Train and inspect sparse autoencoders.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare offline data sets (BIG-bench, ...).", no_args_is_help=True)
app.add_typer(sae_app, name="sae")
bench_app = typer.Typer(help="Benchmarks (results go to docs/benchmarks).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
plot_app = typer.Typer(help="Figures: activation profiles, score distributions.", no_args_is_help=True)
app.add_typer(plot_app, name="plot")
features_app = typer.Typer(help="Label and inspect SAE latents (max-activating contexts).", no_args_is_help=True)
app.add_typer(features_app, name="features")
llm2vec_app = typer.Typer(help="Train and measure LLM2Vec adapters for the selection model (--method llm2vec).",
                          no_args_is_help=True)
app.add_typer(llm2vec_app, name="llm2vec")

# Everything printed holds text from the user's files (rows, ids, paths): never read it as rich markup, where
# "[INST]" or "[/b]" would vanish or raise, and never highlight it.
err = Console(stderr=True, markup=False, highlight=False)
stdout = Console(markup=False, highlight=False)


def _fail(exc: MonaError) -> None:
    err.print(Text.assemble(("error:", "red"), " ", for_display(str(exc), one_line=True)), soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")


def _method_groups() -> list[list[Generated]]:
    from mona.selection.registry import METHODS

    seen: set[type] = set()
    groups = []
    for spec in METHODS.values():
        cls = spec.options
        # a subclass (mona-paper's options of mona's) shares its parent's flags
        if not any(c in seen for c in cls.__mro__):
            seen.add(cls)
            groups.append(generated(cls, prefix=cls.prefix, method_default=True))
    return groups


def _method_params(method: str, values: dict, options: list[Generated]):
    """The chosen method's own options from the flags given (None: all its defaults)."""
    from mona.selection.registry import get_method

    cls = get_method(method).options
    own = {}
    for base in cls.__mro__:
        own.update({k: v for k, v in values_of(options, values, base).items() if k not in own})
    return cls(**own) if own else None


SELECT_OPTIONS = [generated(SelectConfig, required=("out",)), generated(MethodOptions), generated(LMConfig),
                  *_method_groups()]


@app.command()
@with_options(*SELECT_OPTIONS)
def select(
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    show: Annotated[int, typer.Option(help="Print this many top picks.")] = 0,
    **values: Any,
) -> None:
    """Select the pool rows most useful for the target task (writes OUT, and SCORES if asked)."""
    _quiet_libraries()
    from mona.progress import RichProgress
    from mona.selection.pipeline import select as run_select

    _set_threads(threads)
    options = select.__options__  # type: ignore[attr-defined]
    method = MethodOptions(**values_of(options, values, MethodOptions),
                           lm=LMConfig(**values_of(options, values, LMConfig)),
                           params=_method_params(values["method"], values, options))
    config = SelectConfig(**values_of(options, values, SelectConfig), options=method)
    result = run_select(config, RichProgress(err, enabled=not quiet))
    if not quiet:
        err.print(for_display(result.summary(config.out), one_line=True), soft_wrap=True)
    for rank_i, sample in enumerate(result.selected[:show], start=1):
        text = for_display(sample.plain_text(), one_line=True)
        score = result.scores[int(result.order[rank_i - 1])]
        stdout.print(f"{rank_i:>3}. [{score:.4f}] {for_display(sample.id, one_line=True)}: {text[:110]}",
                     soft_wrap=True)


def _show_report(json_path: Path, md_path: Path) -> None:
    """Print a written report (markdown on stdout) and where it lies (on stderr)."""
    stdout.print(md_path.read_text(), markup=False, highlight=False, soft_wrap=True)
    err.print(f"wrote {json_path} and {md_path}")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


@app.command()
def methods() -> None:
    """List the selection methods and what each does."""
    from mona.selection.registry import METHODS

    for name, spec in METHODS.items():
        sim = f"({spec.similarity})" if spec.similarity else ""
        defaults = ", ".join(f"{k} {v}" for k, v in spec.defaults().items())
        stdout.print(f"{name:<10} {sim:<11} {spec.help}" + (f" [defaults: {defaults}]" if defaults else ""),
                     highlight=False, markup=False)


@app.command()
@with_options(generated(ReportConfig))
def report(
    pool: Annotated[Path, typer.Option(help="The pool file the selection was made from.")],
    scores: Annotated[list[Path], typer.Option(help="SCORES file of `mona select --scores` (repeat to compare "
                                                    "methods; the first one's top rows are shown).")],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")],
    name: Annotated[list[str] | None, typer.Option(help="Method name per --scores file, in the same order "
                                                        "(default: the file names).")] = None,
    explanations: Annotated[Path | None, typer.Option(help="`mona explain` output: top rows with an "
                                                           "explanation show their latents and tokens.")] = None,
    **values: Any,
) -> None:
    """Write one self-contained HTML file about a selection: summary, score histograms, composition, top rows."""
    from mona.report.html import build_report

    config = ReportConfig(**values_of(report.__options__, values, ReportConfig))  # type: ignore[attr-defined]
    path = build_report(pool, scores, out, names=name or None, explanations=explanations, config=config)
    stdout.print(str(path), highlight=False, markup=False, soft_wrap=True)


@data_app.command("bigbench")
def data_bigbench(
    archive: Annotated[Path | None, typer.Option(help="Use this bigbench-1.0.0.tar.gz instead of "
                                                      "downloading it.")] = None,
) -> None:
    """Fetch BIG-bench's source archive via pip, verify it and normalise its tasks into the cache."""
    from mona.data.bigbench import prepare_bigbench, task_index

    with err.status("preparing BIG-bench (download, verify, extract)..."):
        path = prepare_bigbench(archive)
    index = task_index(path)
    stdout.print(f"{len(index)} task files, {sum(index.values())} rows in {path / 'rows'}")


@data_app.command("lm-eval-fewshot")
def data_lm_eval_fewshot(
    wheel: Annotated[Path | None, typer.Option(help="Use this lm_eval wheel instead of downloading it.")] = None,
) -> None:
    """Extract the few-shot exemplars inside the lm-eval wheel (GSM8K CoT, MMLU CoT, MBPP, Minerva math)."""
    from mona.data.lm_eval_fewshot import prepare_lm_eval_fewshot

    path = prepare_lm_eval_fewshot(wheel)
    n = sum(1 for _ in path.open(encoding="utf-8"))
    stdout.print(f"{n} exemplars in {path}")


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a command (MonaGroup.invoke handles it inside one)
        err.print("error: interrupted (Ctrl-C)")
        sys.exit(130)




@sae_app.command("train")
@with_options(generated(SaeBuildConfig), generated(SaeTrainConfig))
def sae_train(
    out: Annotated[Path, typer.Option(help="Directory to write the SAE to (sparsify layout + model card).")],
    **values: Any,
) -> None:
    """Train a TopK SAE on a layer's activations (collected once into the cache; a killed run resumes)."""
    _quiet_libraries()
    from mona.outputs import check_outputs, local_path
    from mona.sae.build import build_sae

    options = sae_train.__options__  # type: ignore[attr-defined]
    build = SaeBuildConfig(**values_of(options, values, SaeBuildConfig))
    command = "mona " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("mona") else ""
    # the SAE directory is replaced whole when training ends: nothing in it may be an input
    check_outputs({"--texts": local_path(build.texts), "--model": local_path(build.model)},
                  {"--out": [out, out.with_name(out.name + ".partial")]}, dirs=("--out",))
    meta = build_sae(out, build, SaeTrainConfig(**values_of(options, values, SaeTrainConfig)), command=command,
                     log=lambda m: err.print(m, highlight=False))
    err.print(f"SAE written to {out}: FVU {meta['fvu']}, L0 {meta['l0']}, dead {meta['dead_fraction']:.2%}",
              markup=False, highlight=False)


@bench_app.command("speed")
@with_options(generated(SpeedConfig), generated(LMConfig, only=("model", "layer", "render")),
              generated(MethodOptions, only=("sae",)))
def bench_speed(
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    **values: Any,
) -> None:
    """Tokens/s of MoNA featurization (truncated forward + SAE + pooling), of the bare truncated forward and of a
    naive MoNA (whole model, LM head, output_hidden_states), same rows and batches, in fp32, bf16 and any --dtype;
    what --dtype auto picks here; how far each dtype's selections are from fp32's."""
    _quiet_libraries()
    from mona.bench.host import command_line
    from mona.bench.speed import run_speed, speed_lines

    _set_threads(threads)
    options = bench_speed.__options__  # type: ignore[attr-defined]
    sae = values_of(options, values, MethodOptions)["sae"]
    result = run_speed(SpeedConfig(**values_of(options, values, SpeedConfig)),
                       LMConfig(**values_of(options, values, LMConfig)), sae, command_line())
    for line in speed_lines(result):
        stdout.print(line, highlight=False, soft_wrap=True)


@bench_app.command("memory")
@with_options(generated(MemoryConfig))
def bench_memory(**values: Any) -> None:
    """Peak memory and wall time of `mona select` on synthetic BIG-bench pools of growing size, one process
    per (method, size)."""
    from mona.bench.host import command_line
    from mona.bench.memory import run_line, run_memory

    config = MemoryConfig(**values_of(bench_memory.__options__, values, MemoryConfig))  # type: ignore[attr-defined]
    result = run_memory(config, command_line(), log=lambda m: err.print(m, highlight=False))
    for run in result["runs"]:
        stdout.print(run_line(run), highlight=False, soft_wrap=True)


@bench_app.command("scoring")
@with_options(generated(ScoringConfig))
def bench_scoring(
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: the user cache).")] = None,
    **values: Any,
) -> None:
    """Time and peak memory of scoring N pooled vectors streamed from feature-cache shards (a child process)."""
    _quiet_libraries()
    from mona.bench.host import command_line
    from mona.bench.scoring import run_scoring
    from mona.paths import cache_root

    config = ScoringConfig(**values_of(bench_scoring.__options__, values, ScoringConfig))  # type: ignore[attr-defined]
    run_scoring(config, command_line(), cache_dir or cache_root(), log=lambda m: stdout.print(m, highlight=False))


@bench_app.command("top-m")
@with_options(generated(TopMConfig))
def bench_top_m(
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: the user cache).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write top-m.json and top-m.md.")] = REPORTS,
    **values: Any,
) -> None:
    """How compact top-m storage changes MoNA's selections on the relevance dev suite (choose --top-m)."""
    _quiet_libraries()
    from mona.bench.host import command_line
    from mona.bench.topm import run_top_m
    from mona.paths import cache_root

    config = TopMConfig(**values_of(bench_top_m.__options__, values, TopMConfig))  # type: ignore[attr-defined]
    path = run_top_m(config, command_line(), cache_dir or cache_root(), out_dir,
                     log=lambda s: err.print(s, highlight=False))
    stdout.print(path.read_text(), markup=False, highlight=False, soft_wrap=True)


@bench_app.command("relevance")
@with_options(generated(RelevanceConfig), *_method_groups())
def bench_relevance(
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: the user cache).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write <name>.json and <name>.md.")] = REPORTS,
    work_dir: Annotated[Path | None, typer.Option(help="Keep each method's finished targets here (one JSON "
                                                       "each); a rerun reads them instead of scoring again, so a "
                                                       "long run resumes where it stopped (not with --sweep).")
                        ] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Sweep MoNA's design choices (layer, SAE width and k, "
                                                        "pooling, similarity, prototype, centring, rendering, "
                                                        "rank fusion) instead of comparing methods.")] = False,
    sweep_layers: Annotated[str | None, typer.Option(help="--sweep: layers read (hidden-state axis), "
                                                          "comma-separated (default: SweepConfig's).")] = None,
    sweep_sae_layers: Annotated[str | None, typer.Option(help="--sweep: layers an SAE is trained for.")] = None,
    sweep_widths: Annotated[str | None, typer.Option(help="--sweep: SAE widths (x hidden size) to train.")] = None,
    sweep_ks: Annotated[str | None, typer.Option(help="--sweep: SAE k values to train.")] = None,
    sweep_sae_samples: Annotated[int | None, typer.Option(help="--sweep: BIG-bench rows to train each SAE "
                                                               "on.")] = None,
    sweep_sae_epochs: Annotated[int | None, typer.Option(help="--sweep: epochs per SAE.")] = None,
    sweep_axis: Annotated[list[str] | None, typer.Option(help="--sweep: run only this axis (a table title of the "
                                                              "sweep report, e.g. 'latent weighting, mona'); "
                                                              "repeatable.")] = None,
    **values: Any,
) -> None:
    """Precision/recall/nDCG@k of every method on a labelled BIG-bench pool and a dev suite of targets
    (--sweep: of MoNA's variants)."""
    _quiet_libraries()
    from mona.bench.relevance import run_relevance
    from mona.paths import cache_root
    from mona.progress import RichProgress

    options = bench_relevance.__options__  # type: ignore[attr-defined]
    config = RelevanceConfig(**values_of(options, values, RelevanceConfig))
    params = {m: _method_params(m, values, options) for m in config.method_names}
    cfg = None
    if sweep:
        from mona.bench.sweep import SweepConfig

        given = {"layers": sweep_layers, "sae_layers": sweep_sae_layers, "widths": sweep_widths, "ks": sweep_ks}
        # left unset, each axis keeps SweepConfig's default (its one place)
        cfg = SweepConfig(seed=config.seed, **{f: tuple(comma_ints(v, "--sweep-" + f.replace("_", "-")))
                                                for f, v in given.items() if v is not None},
                          **{f: v for f, v in (("sae_samples", sweep_sae_samples), ("sae_epochs", sweep_sae_epochs))
                             if v is not None}, **({"axes": tuple(sweep_axis)} if sweep_axis else {}))
    json_path, md_path = run_relevance(config, "mona " + " ".join(sys.argv[1:]), out_dir, cache_dir or cache_root(),
                                       cfg, lambda: RichProgress(err), log=lambda s: err.print(s, highlight=False),
                                       params=params, work_dir=work_dir)
    _show_report(json_path, md_path)


@bench_app.command("downstream")
@with_options(generated(DownstreamConfig))
def bench_downstream(
    work_dir: Annotated[Path | None, typer.Option(help="Run directory (default: $MONA_CACHE/downstream/<hash of "
                                                       "what decides the results>); a re-run skips finished steps, "
                                                       "so pieces (--tasks, --settings) can run into one.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: the user cache).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write <name>.json and <name>.md.")] = REPORTS,
    figures_dir: Annotated[Path, typer.Option(help="Where to write the figures <name>.png and "
                                                   "<name>-ratio.png.")] = Path("docs/figures"),
    report_only: Annotated[bool, typer.Option("--report-only", help="Run nothing: report the finished steps of "
                                                                    "the run directory and list the missing.")] = False,
    **values: Any,
) -> None:
    """NLL per answer token on held-out rows of each target task after fine-tuning on each method's selection
    (random with several seeds), with the target task's rows in the pool and without; the report always covers
    the whole design's finished runs."""
    _quiet_libraries()
    import dataclasses
    import time

    from mona.bench.downstream import SETTINGS, build_data, check, run_downstream, run_key
    from mona.bench.downstream_report import write_report
    from mona.paths import cache_root

    t0 = time.perf_counter()
    config = DownstreamConfig(**values_of(bench_downstream.__options__, values, DownstreamConfig))  # type: ignore[attr-defined]
    check(config)
    # the command of the whole design: the options given that change results, not which piece ran
    given = [f"--{f.name.replace('_', '-')} {getattr(config, f.name)}" for f in dataclasses.fields(config)
             if f.name not in ("tasks", "settings") and getattr(config, f.name) != f.default]
    command = " ".join(["mona bench downstream", *given])
    data = build_data(config)
    run_dir = work_dir or cache_root() / "downstream" / run_key(data, config)
    err.print(f"run directory: {run_dir}", highlight=False)
    log = lambda s: err.print(s, highlight=False, markup=False)  # noqa: E731
    if not report_only:
        ran = run_downstream(data, config, run_dir, cache_dir or cache_root(), log=log)
        for failure in ran["failed"]:
            err.print(f"failed (left out of the report, retried by a re-run): {failure}", highlight=False,
                      markup=False)
    whole = dataclasses.replace(config, tasks="all", settings=",".join(SETTINGS))
    results = run_downstream(data, whole, run_dir, cache_dir or cache_root(), log=log, only_finished=True)
    json_path, md_path = write_report(results, command, time.perf_counter() - t0, out_dir,
                                      figures_dir, config.name)
    _show_report(json_path, md_path)


@features_app.command("label")
@with_options(generated(LabelConfig))
def features_label(
    out: Annotated[Path | None, typer.Option(help="Where to write labels.json.gz (default: beside the SAE if "
                                                  "it has one there, else the cache).")] = None,
    **values: Any,
) -> None:
    """Find each latent's max-activating token contexts in a text set and give it a short label."""
    _quiet_libraries()
    from mona.explain.labels import label_latents
    from mona.progress import RichProgress

    config = LabelConfig(**values_of(features_label.__options__, values, LabelConfig))  # type: ignore[attr-defined]
    doc, path = label_latents(config, out, RichProgress(err, unit="texts"))
    labelled = sum(1 for v in doc["latents"].values() if v["examples"])
    err.print(f"labelled {labelled} of {len(doc['latents'])} latents from {doc['tokens']} tokens -> {path}",
              markup=False, highlight=False)


@features_app.command("show")
def features_show(
    latent: Annotated[int, typer.Argument(help="Latent index.")],
    sae: Annotated[str | None, typer.Option(help="SAE directory (default: the shipped SAE).")] = None,
) -> None:
    """Print a latent's label, how often it fires and its max-activating contexts."""
    from mona.explain.labels import load_labels
    from mona.sae.topk import resolve_sae_path

    sae_path = resolve_sae_path(sae)
    doc = load_labels(sae_path)
    if doc is None:
        raise ConfigError(f"no labels for this SAE yet: run `mona features label{' --sae ' + sae if sae else ''}`",
                          path=str(sae_path))
    if str(latent) not in doc["latents"]:
        raise ConfigError(f"latent {latent} out of range: the SAE has {len(doc['latents'])} latents")
    entry = doc["latents"][str(latent)]
    stdout.print(f"latent {latent}: {entry['label'] or '(never fired on the labelling texts)'}  "
                 f"(fires on {entry['frequency']:.3%} of {doc['tokens']:,} tokens)", markup=False, highlight=False)
    for e in entry["examples"]:
        context = f"{e['left']}[[{e['token']}]]{e['right']}".replace("\n", "\\n")
        stdout.print(f"  {e['value']:8.3f}  {for_display(context)}", soft_wrap=True)


@app.command()
@with_options(generated(ExplainConfig), generated(MethodOptions, only=("method", "sae", "k")),
              generated(LMConfig, only=("model", "layer", "render")),
              generated(SelectConfig, only=("cache_dir", "text_field")))
def explain(
    pool: Annotated[Path, typer.Option(help="The pool the selection was made from.")],
    target: Annotated[Path, typer.Option(help="The target examples.")],
    selection: Annotated[Path | None, typer.Option(help="OUT of `mona select`: explain its first --top rows.")] = None,
    ids: Annotated[str | None, typer.Option(help="Comma-separated pool ids to explain instead.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the explanations as JSONL (for `mona report`).")] = None,
    **values: Any,
) -> None:
    """Why MoNA picked these rows: the latents that carry most of each row's Jaccard score against the target
    prototype, their labels, and the tokens where they fire."""
    _quiet_libraries()
    from mona.explain.explain import explain_files, format_explanation

    options = explain.__options__  # type: ignore[attr-defined]
    where = values_of(options, values, SelectConfig)
    method = MethodOptions(lm=LMConfig(**values_of(options, values, LMConfig)),
                           **values_of(options, values, MethodOptions))
    items = explain_files(pool, target, method, ExplainConfig(**values_of(options, values, ExplainConfig)),
                          selection=selection, ids=[i.strip() for i in (ids or "").split(",") if i.strip()],
                          out=out, cache_dir=where["cache_dir"], text_field=where["text_field"])
    for item in items:
        stdout.print(for_display(format_explanation(item)), soft_wrap=True)


@plot_app.command("profiles")
@with_options(generated(ProfilesConfig), generated(LMConfig, only=("model", "layer", "render")),
              generated(MethodOptions, only=("sae",)))
def plot_profiles_cmd(
    set_: Annotated[list[str], typer.Option("--set", help="NAME=bigbench:TASK or NAME=FILE; give two (or more).")],
    out: Annotated[Path, typer.Option(help="Output path without suffix: writes .png and .svg.")],
    **values: Any,
) -> None:
    """The paper's Figure 4: raw MLP neurons (top) vs SAE latents (bottom) for sample sets, one faint line per
    sample and a bold line per set mean; prints how well each panel separates the sets (silhouette)."""
    _quiet_libraries()
    from mona.explain.profiles import plot_profile_sets
    from mona.paths import cache_root

    options = plot_profiles_cmd.__options__  # type: ignore[attr-defined]
    summary = plot_profile_sets(set_, out, ProfilesConfig(**values_of(options, values, ProfilesConfig)),
                                lm=LMConfig(**values_of(options, values, LMConfig)),
                                sae=values_of(options, values, MethodOptions)["sae"], cache_dir=cache_root())
    for name, panel in summary["panels"].items():
        mean_j = panel["mean_jaccard"]
        shared = f"; Jaccard of the two set means {mean_j:.3f}" if mean_j is not None else ""
        stdout.print(f"{name}: silhouette {panel['silhouette']:.3f} on its {len(panel['units'])} most variant units"
                     f"{shared}", soft_wrap=True)
    err.print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.svg')}", markup=False, highlight=False)


@plot_app.command("scores")
def plot_scores_cmd(
    scores: Annotated[list[Path], typer.Option(help="SCORES file(s) of `mona select`.")],
    out: Annotated[Path, typer.Option(help="Output path without suffix: writes .png and .svg.")],
    name: Annotated[list[str] | None, typer.Option(help="Panel title per SCORES file.")] = None,
) -> None:
    """Score distributions, selected vs the rest, one panel per SCORES file."""
    from mona.explain.profiles import plot_scores

    plot_scores(scores, out, name)
    err.print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.svg')}", markup=False, highlight=False)


@app.command()
@with_options(generated(JudgeConfig))
def judge(
    target: Annotated[Path, typer.Option(help="The target examples.")],
    selection: Annotated[list[Path], typer.Option(help="OUT file(s) of `mona select` (one per method).")],
    name: Annotated[list[str] | None, typer.Option(help="Method name per --selection (default: file stem).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write ratings and means as JSON.")] = None,
    **values: Any,
) -> None:
    """The paper's "LLM as a data analyst": rate sampled selected rows 1-10 on semantic similarity,
    instruction-format compatibility and potential to generalise to the target; mean per method."""
    _quiet_libraries()
    from mona.explain.judge import judge_files, judge_table
    from mona.progress import RichProgress

    config = JudgeConfig(**values_of(judge.__options__, values, JudgeConfig))  # type: ignore[attr-defined]
    results = judge_files(target, selection, name, config, out=out,
                          progress=lambda: RichProgress(err, unit="rows"))
    stdout.print(judge_table(results), markup=False, soft_wrap=True)


@app.command()
@with_options(generated(FinetuneConfig))
def finetune(
    data: Annotated[Path, typer.Option(help="Training rows (e.g. the OUT of `mona select`), any input format.")],
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint/, adapter/ and train.json go here.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Discard a run in OUT made with other "
                                                                "arguments.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    **values: Any,
) -> None:
    """Fine-tune the model with LoRA on DATA (loss on the assistant answers); resumes from OUT/checkpoint."""
    _quiet_libraries()
    from mona.finetune.sft import TrainProgress
    from mona.finetune.sft import finetune as run_finetune

    config = FinetuneConfig(**values_of(finetune.__options__, values, FinetuneConfig))  # type: ignore[attr-defined]
    summary = run_finetune(data, out, config, overwrite=overwrite,
                           progress=TrainProgress(err, enabled=not quiet))
    stdout.print(f"{summary['steps']} steps on {summary['rows_trained']} rows, {summary['tokens']} tokens "
                 f"({summary['tokens_per_second']} tok/s), final loss {summary['final_loss']:.4f}; wrote "
                 f"{out / 'adapter'} and {out / 'train.json'}", markup=False, highlight=False, soft_wrap=True)


@app.command("eval")
@with_options(generated(EvalConfig))
def eval_cmd(
    out: Annotated[Path | None, typer.Option(help="Write the results (JSON) here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    **values: Any,
) -> None:
    """The model (+ adapter) on held-out rows: NLL per answer token of the reference answers; multiple choice by
    option log-likelihood (accuracy, probability on the right option); others by exact match of a greedy answer."""
    _quiet_libraries()
    from mona.finetune.evaluate import run_eval
    from mona.progress import RichProgress

    config = EvalConfig(**values_of(eval_cmd.__options__, values, EvalConfig))  # type: ignore[attr-defined]
    _, line = run_eval(config, out, RichProgress(err, enabled=not quiet, unit="rows"))
    stdout.print(line, markup=False, highlight=False, soft_wrap=True)


@llm2vec_app.command("train")
@with_options(generated(Llm2VecTrainConfig))
def llm2vec_train(
    out: Annotated[Path, typer.Option(help="Directory to write the adapters to (mntp/, simcse/, train.json, "
                                           "MODEL_CARD.md); a killed run resumes from its checkpoint there.")],
    **values: Any,
) -> None:
    """Train LLM2Vec's MNTP and SimCSE LoRA adapters (bidirectional attention) on BIG-bench rows of the tasks not
    held out."""
    _quiet_libraries()
    from mona.bench.host import command_line
    from mona.features.llm2vec_train import train_llm2vec
    from mona.outputs import check_outputs, local_path
    from mona.progress import RichProgress

    config = Llm2VecTrainConfig(**values_of(llm2vec_train.__options__, values, Llm2VecTrainConfig))  # type: ignore[attr-defined]
    check_outputs({"--model": local_path(config.model)}, {"--out": out}, dirs=("--out",))
    meta = train_llm2vec(out, config, command=command_line(), progress=lambda: RichProgress(err, unit="steps"),
                         log=lambda s: err.print(s, highlight=False, markup=False))
    err.print(f"adapters written to {out} ({sum(meta['seconds'].values())} s of training; fingerprint "
              f"{meta['fingerprint']})", highlight=False, markup=False)


@llm2vec_app.command("eval")
@with_options(generated(Llm2VecEvalConfig))
def llm2vec_eval(**values: Any) -> None:
    """Cosine AUC (same vs other task) and precision@k of an LLM2Vec adapter against the plain model, on the
    BIG-bench tasks its training held out."""
    _quiet_libraries()
    from mona.bench.host import command_line
    from mona.features.llm2vec_train import evaluate_llm2vec, write_evaluation
    from mona.progress import RichProgress

    config = Llm2VecEvalConfig(**values_of(llm2vec_eval.__options__, values, Llm2VecEvalConfig))  # type: ignore[attr-defined]
    evaluation = evaluate_llm2vec(config, progress=lambda: RichProgress(err, unit="rows"),
                                  log=lambda s: err.print(s, highlight=False, markup=False))
    json_path, md_path = write_evaluation(evaluation, Path(config.out_dir), config.name, command_line(),
                                          card=config.card)
    _show_report(json_path, md_path)


def _one_line_summaries(*apps: typer.Typer) -> None:
    """Command lists show each command's first docstring paragraph as one line: typer's rich panel keeps the
    docstring's own line breaks, which then wrap raggedly."""
    for group in apps:
        for info in group.registered_commands:
            doc = info.help or (info.callback.__doc__ if info.callback else None)
            if info.short_help is None and doc:
                info.short_help = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


_one_line_summaries(app, sae_app, data_app, bench_app, plot_app, features_app, llm2vec_app)
