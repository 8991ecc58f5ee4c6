"""`mona report`: the HTML file's sections, escaping, self-containment, errors, and a real headless Chromium render."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mona.cli import app
from mona.report.html import build_report
from mona.report.options import ReportConfig

TASKS = ["math", "cooking", "travel & <misc>"]
EVIL = "<script>alert('pwned')</script>"
ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS_SCREENSHOT = Path(__file__).parent.parent / "docs" / "report-screenshot.png"
N = 60


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _scores_rows(ids: list[str], scores: list[float], n_selected: int) -> list[dict]:
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    rank = {i: r for r, i in enumerate(order, start=1)}
    return [{"id": ids[i], "score": scores[i], "rank": rank[i], "selected": rank[i] <= n_selected}
            for i in range(len(ids))]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rows = []
    for i in range(N):
        task = TASKS[i % 3]
        text = f"row {i}: a {task} question about item {i}, with some words to fill the line."
        if i == 0:
            text = f"{EVIL} add two and three & tell me the sum"
        rows.append({"id": f"r{i:02d}", "task": task, "text": text})
    ids = [r["id"] for r in rows]
    # method A prefers math rows (row 0 best), method B prefers cooking rows
    score_a = [1.0 - i / 100 + (0.5 if i % 3 == 0 else 0.0) for i in range(N)]
    score_b = [0.2 + (i * 7 % 13) / 50 + (0.4 if i % 3 == 1 else 0.0) for i in range(N)]
    tokens = [{"text": t, "weight": w} for t, w in
              [("<script>", 0.0), ("alert", 0.1), (" add", 2.0), (" two", 1.0), (" and", 0.0), (" three", 1.5)]]
    explanations = [
        {"id": "r00", "rank": 1, "score": 0.5, "tokens": tokens,
         "latents": [{"latent": 17, "share": 0.6, "label": "<b>addition</b>"},
                     {"latent": 4, "share": 0.25, "label": "numbers"}]},
        {"id": "r03", "rank": 2, "score": 0.4, "latents": [{"latent": 17, "share": 0.9, "label": "addition"}],
         "tokens": [{"text": "row", "weight": 0.0}, {"text": " 3", "weight": 3.0}]},
        {"id": "r06", "rank": 3, "score": 0.3, "latents": [], "tokens": []},
    ]
    return {
        "pool": _write_jsonl(tmp_path / "pool.jsonl", rows),
        "a": _write_jsonl(tmp_path / "mona-scores.jsonl", _scores_rows(ids, score_a, 12)),
        "b": _write_jsonl(tmp_path / "bm25-scores.jsonl", _scores_rows(ids, score_b, 12)),
        "explanations": _write_jsonl(tmp_path / "explain.jsonl", explanations),
        "out": tmp_path / "report" / "report.html",
        "cache": tmp_path / "cache",
    }


def _invoke(args: list[str], cache: Path):
    return CliRunner().invoke(app, args, env={"MONA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})


def _report_args(files: dict[str, Path], *extra: str) -> list[str]:
    return ["report", "--pool", str(files["pool"]), "--scores", str(files["a"]), "--scores", str(files["b"]),
            "--name", "mona", "--name", "bm25", "--explanations", str(files["explanations"]),
            "--out", str(files["out"]), *extra]


class _Structure(HTMLParser):
    """Body rows per table id, and per figure.plot the kinds of image it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, int] = {}
        self.figures: list[list[str]] = []
        self.scripts = 0
        self._table: list[str | None] = []
        self._in_tbody = False
        self._figure = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table.append(a.get("id"))
            if a.get("id"):
                self.tables[a["id"]] = 0
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody and self._table and self._table[-1]:
            self.tables[self._table[-1]] += 1
        elif tag == "figure" and "plot" in (a.get("class") or "").split():
            self._figure = True
            self.figures.append([])
        elif tag in ("img", "svg") and self._figure:
            self.figures[-1].append(tag if tag == "svg" else (a.get("src") or "")[:40])

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "figure":
            self._figure = False


def _structure(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    return parser


def _check_structure(html: str, *, methods: int = 2) -> None:
    s = _structure(html)
    assert s.scripts == 0
    assert s.tables["summary"] == methods
    assert s.tables["composition"] == len(TASKS)
    assert s.tables["top-rows"] == 12  # --top 20, but only 12 rows are selected
    if methods > 1:
        assert s.tables["overlap"] == methods
        assert s.tables["side-by-side"] == 10
    assert len(s.figures) == methods + 1  # a histogram per method and the composition chart
    for images in s.figures:
        assert images and all(src.startswith("data:image/svg+xml;base64,") for src in images)


def _external_refs(html: str) -> list[str]:
    pattern = (r"""(?:\b(?:src|href|srcset|action|poster)\s*=\s*["']?\s*|url\(\s*["']?\s*|@import\s+["']?)"""
               r"(?:https?:)?//")
    return re.findall(pattern, html, flags=re.IGNORECASE)


def test_report_cli_writes_a_self_contained_escaped_page(files):
    result = _invoke(_report_args(files), files["cache"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(files["out"])
    html = files["out"].read_text(encoding="utf-8")
    for table in ("summary", "composition", "top-rows", "overlap", "side-by-side"):
        assert f'<table id="{table}"' in html
    _check_structure(html)
    # user text is escaped everywhere: pool text, label values, latent labels, token texts
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert "travel &amp; &lt;misc&gt;" in html
    assert "&lt;b&gt;addition&lt;/b&gt;" in html and "<b>addition" not in html
    # nothing is fetched: no external src/href/url(), and the embedded SVGs reference nothing outside either
    assert _external_refs(html) == []
    for b64 in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html):
        svg = base64.b64decode(b64).decode("utf-8")
        assert "<svg" in svg and _external_refs(svg) == []
    # the explained rows: latents with shares, tokens shaded by weight / max weight
    assert html.count('class="explained"') == 3  # r00, r03, r06
    assert "row 6: a math question" in html  # r06's explanation has no tokens: its plain text is shown
    assert "60%</span> #17" in html
    assert 'rgba(232, 89, 12, 1.0)"> add</span>' in html
    assert 'rgba(232, 89, 12, 0.75)"> three' in html
    # overlap: method A picks math rows, B cooking rows; diagonals are 1
    assert "1.00 (12)" in html


def test_build_report_single_method_without_labels(tmp_path, files):
    rows = [{"id": f"x{i}", "text": f"text {i}"} for i in range(8)]
    pool = _write_jsonl(tmp_path / "plain.jsonl", rows)
    scores = _write_jsonl(tmp_path / "s.jsonl", _scores_rows([r["id"] for r in rows], [i / 8 for i in range(8)], 3))
    out = build_report(pool, [scores], tmp_path / "r.html", config=ReportConfig(top=2))
    html = out.read_text(encoding="utf-8")
    s = _structure(html)
    assert s.tables["summary"] == 1 and s.tables["top-rows"] == 2
    assert "composition" not in s.tables and "overlap" not in s.tables
    assert "No label field" in html
    assert len(s.figures) == 1
    # the top rows are in rank order: x7 (best), x6
    assert html.index(">x7<") < html.index(">x6<")


def test_report_errors(tmp_path, files):
    missing = _invoke(["report", "--pool", str(files["pool"]), "--scores", str(tmp_path / "nope.jsonl"),
                       "--out", str(files["out"])], files["cache"])
    assert missing.exit_code == 3, missing.stderr
    assert "nope.jsonl" in missing.stderr and "not found" in missing.stderr

    no_pool = _invoke(["report", "--pool", str(tmp_path / "nopool.jsonl"), "--scores", str(files["a"]),
                       "--out", str(files["out"])], files["cache"])
    assert no_pool.exit_code == 3, no_pool.stderr

    other = _write_jsonl(tmp_path / "other.jsonl", _scores_rows(["zz1", "zz2"], [0.5, 0.1], 1))
    foreign = _invoke(["report", "--pool", str(files["pool"]), "--scores", str(other), "--out", str(files["out"])],
                      files["cache"])
    assert foreign.exit_code == 2, foreign.stderr
    assert "zz1" in foreign.stderr and "not in the pool" in foreign.stderr

    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(files["a"].read_text().splitlines(keepends=True)[:5]))
    short = _invoke(["report", "--pool", str(files["pool"]), "--scores", str(partial), "--out", str(files["out"])],
                    files["cache"])
    assert short.exit_code == 2 and "covers 5 of 60" in short.stderr

    names = _invoke(_report_args(files, "--name", "third"), files["cache"])
    assert names.exit_code == 4, names.stderr
    assert not files["out"].exists()  # nothing written by a failed run


def _chromium() -> str:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); make test installs it")
    return browser


def _run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_report_renders_in_headless_chromium(tmp_path, files, monkeypatch):
    browser = _chromium()
    monkeypatch.chdir(tmp_path)  # relative paths, so the page (and the docs screenshot) shows short file names
    result = _invoke(_report_args({k: v.relative_to(tmp_path) for k, v in files.items()}), files["cache"])
    assert result.exit_code == 0, result.stderr
    url = files["out"].resolve().as_uri()

    dom = _run_browser(browser, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    _check_structure(dom.stdout)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    run = _run_browser(browser, tmp_path / "profile", "--window-size=1280,2000", f"--screenshot={shot}", url)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert float(pixels[..., :3].std()) > 0.01  # not a blank page
    if os.environ.get("MONA_UPDATE_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
