"""`mona report`: one self-contained HTML file about a selection (summary, score histograms, composition by a
label field, the top rows with their explanations, and a side-by-side comparison of several methods).

Nothing in the page is fetched: the CSS is inline and the plots are SVG data URIs drawn with matplotlib (text as
paths, so no fonts). Every value taken from the input files goes through jinja2's autoescape."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mona.errors import ConfigError, InputError, MissingFileError
from mona.outputs import check_outputs
from mona.report.options import ReportConfig

DEFAULT_LABEL_FIELDS = ("task", "group", "category", "source")
TEMPLATE = "report.html.j2"
TEXT_CHARS = 400  # plain text shown per top row
TOKEN_CHARS = 1200  # highlighted token text shown per explained row
SNIPPET_CHARS = 140  # text per cell of the side-by-side table
COMPOSITION_VALUES = 15  # label values shown before the rest become "other"
SIDE_BY_SIDE = 10
NEWLINE = " ↵ "
LATENTS_SHOWN = 5
SELECTED_COLOUR = "#e8590c"
REST_COLOUR = "#adb5bd"
POOL_COLOUR = "#868e96"
METHOD_COLOURS = ("#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f59f00", "#0ca678", "#d6336c", "#495057")


@dataclass
class MethodScores:
    """One SCORES file, aligned to the pool: arrays indexed by pool position."""

    name: str
    path: Path
    score: np.ndarray  # float64
    rank: np.ndarray  # int64, 1 = best
    selected: np.ndarray  # bool

    def selected_order(self) -> np.ndarray:
        """Pool positions of the selected rows, best rank first."""
        pos = np.flatnonzero(self.selected)
        return pos[np.lexsort((pos, self.rank[pos]))]


def _read_jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; MissingFileError / InputError with the line."""
    if not path.exists():
        raise MissingFileError(f"{what} file not found", path=str(path))
    if not path.is_file():
        raise MissingFileError(f"{what} is not a regular file", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MissingFileError(f"cannot read {what} file: {exc.strerror or exc}", path=str(path)) from None
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text", path=str(path), line=lineno) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"broken JSON: {exc.msg} at column {exc.colno}", path=str(path), line=lineno) from None
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object per line, got {type(obj).__name__}", path=str(path),
                             line=lineno)
        rows.append((lineno, obj))
    if not rows:
        raise InputError(f"{what} file has no rows", path=str(path))
    return rows


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _id(obj: dict[str, Any], path: Path, line: int) -> str:
    value = obj.get("id")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError("missing or non-string 'id'", path=str(path), line=line, field="id")


def read_scores(path: Path, name: str, pool_index: dict[str, int]) -> MethodScores:
    """Read a SCORES file written by `mona select --scores` and align it to the pool (every pool id exactly once)."""
    n = len(pool_index)
    score = np.full(n, np.nan)
    rank = np.zeros(n, dtype=np.int64)
    selected = np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=bool)
    for line, obj in _read_jsonl(path, "scores"):
        sid = _id(obj, path, line)
        pos = pool_index.get(sid)
        if pos is None:
            raise InputError(f"id '{sid}' is not in the pool: was this scores file written for another pool?",
                             path=str(path), line=line, field="id")
        if seen[pos]:
            raise InputError(f"duplicate id '{sid}'", path=str(path), line=line, field="id")
        if not _number(obj.get("score")):
            raise InputError("missing or non-numeric 'score'", path=str(path), line=line, field="score")
        if not isinstance(obj.get("rank"), int) or isinstance(obj.get("rank"), bool) or obj["rank"] < 1:
            raise InputError("'rank' must be an integer >= 1", path=str(path), line=line, field="rank")
        if not isinstance(obj.get("selected"), bool):
            raise InputError("'selected' must be true or false", path=str(path), line=line, field="selected")
        seen[pos] = True
        score[pos] = float(obj["score"])
        rank[pos] = obj["rank"]
        selected[pos] = obj["selected"]
    if not seen.all():
        ids = list(pool_index)
        missing = [ids[i] for i in np.flatnonzero(~seen)[:3]]
        raise InputError(f"covers {int(seen.sum())} of {n} pool rows (missing e.g. "
                         f"{', '.join(repr(m) for m in missing)}): was it written for another pool?", path=str(path))
    return MethodScores(name=name, path=path, score=score, rank=rank, selected=selected)


def read_explanations(path: Path, pool_index: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Read `mona explain` output: id -> {latents: [{latent, share, label}], tokens: [{text, weight}]}."""
    out: dict[str, dict[str, Any]] = {}
    for line, obj in _read_jsonl(path, "explanations"):
        eid = _id(obj, path, line)
        if eid not in pool_index:
            raise InputError(f"id '{eid}' is not in the pool", path=str(path), line=line, field="id")
        latents = obj.get("latents") or []
        tokens = obj.get("tokens") or []
        if not isinstance(latents, list) or not all(
                isinstance(x, dict) and _number(x.get("share")) and isinstance(x.get("latent"), int)
                for x in latents):
            raise InputError("'latents' must be a list of {latent, share, label}", path=str(path), line=line,
                             field="latents")
        if not isinstance(tokens, list) or not all(
                isinstance(t, dict) and isinstance(t.get("text"), str) and _number(t.get("weight")) for t in tokens):
            raise InputError("'tokens' must be a list of {text, weight}", path=str(path), line=line, field="tokens")
        out[eid] = {"latents": latents, "tokens": tokens}
    return out


# ---------------------------------------------------------------------------------------------------- formatting


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def _stats(values: np.ndarray) -> tuple[str, str, str]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ("–", "–", "–")
    return (_fmt(float(finite.min())), _fmt(float(np.median(finite))), _fmt(float(finite.max())))


def _pct(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}%" if total else "–"


def _one_line(text: str) -> str:
    """Line breaks as a visible mark, so a preview stays compact: "a\n\nb" -> "a ↵ b"."""
    return re.sub(r"[ \t]*(?:\r?\n[ \t]*)+", NEWLINE, text)


def _truncate(text: str, limit: int) -> str:
    text = _one_line(text.strip())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def _snippet(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def _label_value(row: dict[str, Any], field: str) -> str:
    value = row.get(field)
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _method_names(scores: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names:
        if len(names) != len(scores):
            raise ConfigError(f"{len(names)} --name for {len(scores)} --scores files: give one name per file "
                              "or none")
        base = [str(n) for n in names]
    else:
        base = []
        for p in scores:
            stem = p.name
            for suffix in (".gz", ".zst", ".jsonl", ".ndjson", ".json"):
                stem = stem.removesuffix(suffix)
            base.append(stem or p.name)
    out: list[str] = []
    for name in base:
        unique, i = name, 2
        while unique in out:
            unique, i = f"{name} ({i})", i + 1
        out.append(unique)
    return out


# ---------------------------------------------------------------------------------------------------- plots


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _embed(fig) -> dict[str, Any]:
    """An SVG data URI (self-contained: matplotlib draws text as paths) with the figure's CSS pixel size."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "mona-report"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    width, height = fig.get_size_inches()
    src = "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return {"src": src, "width": round(width * 96), "height": round(height * 96)}


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


def _histogram(m: MethodScores) -> dict[str, Any]:
    fig = _figure(5.6, 2.9)
    ax = fig.add_subplot()
    finite = np.isfinite(m.score)
    values = m.score[finite]
    if values.size == 0:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
    else:
        sel = m.score[finite & m.selected]
        rest = m.score[finite & ~m.selected]
        bins = np.histogram_bin_edges(values, bins=int(min(50, max(10, math.sqrt(values.size)))))
        ax.hist([rest, sel], bins=bins, stacked=True, color=[REST_COLOUR, SELECTED_COLOUR],
                edgecolor="white", linewidth=0.4)
        if sel.size:
            ax.axvline(float(sel.min()), color="#495057", linestyle="--", linewidth=0.8)
    ax.set_xlabel("score", fontsize=9)
    ax.set_ylabel("rows", fontsize=9)
    _style(ax)
    return _embed(fig)


def _composition_plot(values: list[str], groups: list[tuple[str, list[float], str]]) -> dict[str, Any]:
    n, g = len(values), len(groups)
    height = 0.9 + n * (0.1 + 0.1 * g)
    fig = _figure(7.0, max(2.4, height))
    ax = fig.add_subplot()
    bar = 0.8 / g
    y = np.arange(n)
    for i, (name, shares, colour) in enumerate(groups):
        ax.barh(y - 0.4 + bar * (i + 0.5), [100 * s for s in shares], height=bar, color=colour, label=name)
    ax.set_yticks(y, [v if len(v) <= 32 else v[:31] + "…" for v in values], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of rows (%)", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="x", color="#e9ecef", linewidth=0.6)
    ax.set_axisbelow(True)
    _style(ax)
    return _embed(fig)


# ---------------------------------------------------------------------------------------------------- sections


def _composition(field: str, labels: list[str], methods: list[MethodScores]) -> dict[str, Any]:
    pool_counts = Counter(labels)
    ordered = sorted(pool_counts, key=lambda v: (-pool_counts[v], v))
    shown = ordered if len(ordered) <= COMPOSITION_VALUES + 1 else ordered[:COMPOSITION_VALUES]
    truncated = len(ordered) > len(shown)
    keep = set(shown)
    columns: list[tuple[Counter[str], int]] = [(pool_counts, len(labels))]
    for m in methods:
        picked = Counter(labels[i] for i in np.flatnonzero(m.selected))
        columns.append((picked, int(m.selected.sum())))
    rows = []
    keys: list[tuple[str, bool]] = [(v, False) for v in shown]
    if truncated:
        rest = len(ordered) - len(shown)
        keys.append((f"other ({rest} value{'s' if rest != 1 else ''})", True))
    for value, other in keys:
        cells = []
        for counts, total in columns:
            count = sum(c for v, c in counts.items() if v not in keep) if other else counts.get(value, 0)
            cells.append({"count": count, "share": _pct(count, total), "fraction": count / total if total else 0.0})
        rows.append({"value": value, "other": other, "cells": cells})
    groups = [("pool", [r["cells"][0]["fraction"] for r in rows], POOL_COLOUR)]
    for j, m in enumerate(methods):
        groups.append((m.name, [r["cells"][j + 1]["fraction"] for r in rows], METHOD_COLOURS[j % len(METHOD_COLOURS)]))
    return {"field": field, "rows": rows, "totals": [t for _, t in columns], "truncated": truncated,
            "plot": _composition_plot([r["value"] for r in rows], groups)}


def _explanation(item: dict[str, Any]) -> dict[str, Any]:
    latents = sorted(item["latents"], key=lambda x: -float(x["share"]))[:LATENTS_SHOWN]
    tokens = item["tokens"]
    weights = [max(0.0, float(t["weight"])) if math.isfinite(float(t["weight"])) else 0.0 for t in tokens]
    top = max(weights, default=0.0)
    shown, used, cut = [], 0, False
    for tok, w in zip(tokens, weights, strict=True):
        if used >= TOKEN_CHARS:
            cut = True
            break
        shown.append({"text": _one_line(tok["text"]), "alpha": round(w / top, 3) if top > 0 else 0.0})
        used += len(tok["text"])
    return {"latents": [{"latent": int(x["latent"]), "share": f"{100 * float(x['share']):.0f}%",
                         "label": _snippet(str(x.get("label") or ""), 60)} for x in latents],
            "tokens": shown, "cut": cut}


def build_report(pool: Path, scores: list[Path], out: Path, *, names: list[str] | None = None,
                 explanations: Path | None = None, label_fields: Sequence[str] = DEFAULT_LABEL_FIELDS,
                 config: ReportConfig | None = None) -> Path:
    """Write one self-contained HTML report about a selection and return its path.

    `pool` is the pool file the selection was made from, `scores` one SCORES file (`mona select --scores`) per
    method, named by `names` (default: the file stems). `explanations` is an optional `mona explain` output;
    rows of the top-`config.top` table that have one show their top latents and their tokens shaded by weight. The
    composition section groups rows by the first of `label_fields` present in the pool rows.

    Raises MissingFileError for a missing input file, InputError for a malformed file or a SCORES file whose ids
    do not match the pool's, ConfigError for contradictory arguments.
    """
    import jinja2

    from mona import __version__
    from mona.atomic import atomic_write
    from mona.data.readers import read_samples

    config = config or ReportConfig()
    top, text_field = config.top, config.text_field
    pool, out = Path(pool), Path(out)
    scores = [Path(s) for s in scores]
    inputs: dict[str, Path | None] = {"--pool": pool, "--explanations": explanations}
    inputs.update({f"--scores {s}": s for s in scores})
    check_outputs(inputs, {"--out": out})
    if not scores:
        raise ConfigError("give at least one scores file (mona select --scores)")
    if top < 0:
        raise ConfigError(f"--top must be >= 0, got {top}")
    if out.is_dir():
        raise ConfigError("the report path is a directory", path=str(out))
    method_names = _method_names(scores, names)
    for path in scores:  # missing files first, before the (possibly long) pool read
        if not path.is_file():
            raise MissingFileError("scores file not found" if not path.exists() else "scores path is not a file",
                                   path=str(path))
    if explanations is not None and not Path(explanations).is_file():
        raise MissingFileError("explanations file not found", path=str(explanations))

    samples = read_samples(pool, text_field=text_field)
    pool_index = {s.id: i for i, s in enumerate(samples)}
    methods = [read_scores(p, name, pool_index) for p, name in zip(scores, method_names, strict=True)]
    explained = read_explanations(Path(explanations), pool_index) if explanations is not None else {}

    field = next((f for f in label_fields if any(f in s.record.row for s in samples)), None)
    labels = [_label_value(s.record.row, field) for s in samples] if field else [""] * len(samples)

    summary = []
    for m in methods:
        n_sel = int(m.selected.sum())
        m_view = {"name": m.name, "path": str(m.path), "n_pool": len(samples), "n_selected": n_sel,
                  "share": _pct(n_sel, len(samples)), "sel_stats": _stats(m.score[m.selected]),
                  "rest_stats": _stats(m.score[~m.selected]), "histogram": _histogram(m)}
        summary.append(m_view)

    top_rows = []
    for pos in methods[0].selected_order()[:top]:
        sample = samples[int(pos)]
        item = explained.get(sample.id)
        top_rows.append({"rank": int(methods[0].rank[pos]), "id": sample.id,
                         "score": _fmt(float(methods[0].score[pos])), "label": labels[pos] if field else "",
                         "text": _truncate(sample.plain_text(), TEXT_CHARS),
                         "explanation": _explanation(item) if item is not None else None})

    overlap, side = [], []
    if len(methods) > 1:
        sets = [set(np.flatnonzero(m.selected).tolist()) for m in methods]
        for a in sets:
            row = []
            for b in sets:
                union = len(a | b)
                row.append(f"{len(a & b) / union:.2f} ({len(a & b):,})" if union else "–")
            overlap.append(row)
        orders = [m.selected_order()[:SIDE_BY_SIDE] for m in methods]
        for i in range(max((len(o) for o in orders), default=0)):
            side.append([{"id": samples[int(o[i])].id, "text": _snippet(samples[int(o[i])].plain_text(), SNIPPET_CHARS)}
                         if i < len(o) else None for o in orders])

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    source = resources.files("mona").joinpath("assets", "report", TEMPLATE).read_text(encoding="utf-8")
    html = env.from_string(source).render(
        version=__version__, pool_path=str(pool), pool_name=pool.name, pool_size=len(samples), methods=summary,
        explanations_path=str(explanations) if explanations is not None else None,
        label_field=field, label_fields=list(label_fields),
        composition=_composition(field, labels, methods) if field else None,
        top_rows=top_rows, explained_count=sum(r["explanation"] is not None for r in top_rows),
        overlap=overlap, side_by_side=side)
    with atomic_write(out) as fh:
        fh.write(html)
    return out
