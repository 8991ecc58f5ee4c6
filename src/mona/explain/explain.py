"""Explain MoNA scores: the latents that contribute most to a sample's generalized Jaccard score against the
target prototype (min(z_k, p_k), as a share of the shared mass), with their labels and the tokens of the
sample where they fire."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mona.atomic import atomic_write
from mona.data.formats import Sample
from mona.data.readers import read_samples
from mona.errors import ConfigError
from mona.explain.labels import load_labels
from mona.explain.options import ExplainConfig
from mona.features.cached import featurize_cached
from mona.features.lm import LMRunner
from mona.features.mona import MonaFeaturizer
from mona.outputs import check_outputs
from mona.paths import cache_root
from mona.sae.topk import encode
from mona.scoring.similarity import prototype
from mona.selection.registry import MethodOptions, get_method


def _dense(row) -> np.ndarray:
    return np.asarray(row.toarray() if sp.issparse(row) else row, dtype=np.float64).ravel()


def contributions(z: np.ndarray, proto: np.ndarray) -> tuple[float, np.ndarray]:
    """(generalized Jaccard score, per-latent min(z_k, p_k)) of one pooled vector against the prototype."""
    mins = np.minimum(z, proto)
    shared = float(mins.sum())
    denom = float(z.sum() + proto.sum()) - shared
    return (shared / denom if denom > 0 else 0.0), mins


def token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token's text with the spacing it has in context: the growth of the decoded prefix (decoding one
    token alone drops the space before it in some tokenizers)."""
    out, prev = [], ""
    for i in range(len(ids)):
        cur = tokenizer.decode(ids[: i + 1])
        out.append(cur[len(prev):] if cur.startswith(prev) else tokenizer.decode([ids[i]]))
        prev = cur
    return out


def explain(chosen: Sequence[Sample], targets: Sequence[Sample], options: MethodOptions, cache_dir: Path | None,
            *, n_latents: int, ranks: Sequence[int] | None = None) -> list[dict]:
    """One explanation per chosen sample: score, top latents (share of the score, label, strongest contexts)
    and the sample's content tokens weighted by how strongly those latents fire on each."""
    runner = LMRunner(options.lm)
    # the selection's own representation (pooling, codes per token), whole vectors: every latent's contribution
    featurizer = get_method(options.method).build(replace(options, top_m=0), runner)
    if not isinstance(featurizer, MonaFeaturizer):
        raise ConfigError(f"explanations are in SAE latents: method {options.method} has none (use mona)")
    proto = prototype(featurize_cached(featurizer, list(targets), cache_dir, role="target"))
    vectors = featurize_cached(featurizer, list(chosen), cache_dir, role="pool")
    labels = (load_labels(featurizer.sae_path) or {}).get("latents", {})
    lm = runner.lm(sites=(featurizer.site,))
    layer = runner.resolved_layer()
    tokenizer = runner.tokenizer
    out: list[dict] = [{} for _ in chosen]
    explained: dict[int, list[int]] = {}
    for i in range(len(chosen)):
        score, mins = contributions(_dense(vectors[i]), proto)
        top = [int(j) for j in np.argsort(-mins, kind="stable")[:n_latents] if mins[j] > 0]
        total = float(mins.sum())
        explained[i] = top
        out[i] = {"id": chosen[i].id, "rank": int(ranks[i]) if ranks is not None else i + 1,
                  "score": round(score, 6),
                  "latents": [{"latent": j, "share": round(float(mins[j]) / total, 4) if total else 0.0,
                               "label": labels.get(str(j), {}).get("label", ""),
                               "examples": labels.get(str(j), {}).get("examples", [])[:3]} for j in top],
                  "tokens": []}
    for batch in lm.run([runner.render(s) for s in chosen]):
        for row, pos in enumerate(batch.positions):
            mask = batch.pool_mask[row]
            values, indices = encode(featurizer.sae, batch.site(featurizer.site, layer)[row][mask], featurizer.k)
            wanted = np.asarray(explained[pos], dtype=np.int64)
            weights = (np.isin(indices.numpy(), wanted) * values.float().numpy()).sum(axis=1)
            ids = batch.input_ids[row][mask].tolist()
            out[pos]["tokens"] = [{"text": t, "weight": round(float(w), 4)}
                                  for t, w in zip(token_texts(tokenizer, ids), weights, strict=True)]
    return out


def format_explanation(item: dict, width: int = 100) -> str:
    """A few readable lines: the score, each top latent with its label and share, the sample's text with the
    tokens where those latents fire most marked [[like this]]."""
    lines = [f"{item['rank']:>3}. {item['id']}  score {item['score']:.4f}"]
    for lat in item["latents"]:
        example = ""
        if lat["examples"]:
            e = lat["examples"][0]
            example = f'   e.g. "...{e["left"][-30:]}[[{e["token"]}]]{e["right"][:30]}..."'
        lines.append(f"     latent {lat['latent']:>5}  {lat['share']:6.1%} of the score  "
                     f"label: {lat['label'] or '(no labels yet: mona features label)'}{example}"
                     .replace("\n", " "))
    weights = [t["weight"] for t in item["tokens"]]
    cut = np.quantile(weights, 0.85) if weights else 0.0
    text = "".join(f"[[{t['text']}]]" if t["weight"] > 0 and t["weight"] >= cut else t["text"]
                   for t in item["tokens"])
    text = " ".join(text.split())
    lines.append(f"     text: {text[:width * 3]}{'...' if len(text) > width * 3 else ''}")
    return "\n".join(lines)


def pick_rows(pool: Sequence[Sample], selection: Sequence[Sample] | None, ids: Sequence[str]) -> list[Sample]:
    """The pool rows to explain: those of `selection` (the OUT of `mona select`, matched to the pool by content,
    since its ids may be the pool's row numbers), else those with these ids. A row not in the pool is a
    ConfigError."""
    by_id = {s.id: s for s in pool}
    if selection is not None:
        by_row = {json.dumps(s.record.row, sort_keys=True, default=str): s.id for s in pool}
        ids = [by_row.get(json.dumps(r.record.row, sort_keys=True, default=str), "?") for r in selection]
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ConfigError(f"rows not in the pool: {', '.join(missing[:5])}")
    return [by_id[i] for i in ids]


def explain_files(pool: Path, target: Path, options: MethodOptions, config: ExplainConfig | None = None, *,
                  selection: Path | None = None, ids: Sequence[str] = (), out: Path | None = None,
                  cache_dir: Path | None = None, text_field: str | None = None) -> list[dict]:
    """`mona explain`: explain the first `config.top` rows of `selection` (the OUT of `mona select` on `pool`),
    or the pool rows with these `ids`, against the targets; with `out`, also write the explanations as JSONL
    (what `mona report --explanations` reads)."""
    config = config or ExplainConfig()
    check_outputs({"--pool": pool, "--target": target, "--selection": selection}, {"--out": out})
    if (selection is None) == (not ids):
        raise ConfigError("give exactly one of --selection or --ids")
    chosen = pick_rows(read_samples(pool, text_field=text_field),
                       read_samples(selection, text_field=text_field)[:config.top] if selection is not None else None,
                       ids)
    items = explain(chosen, read_samples(target, text_field=text_field), options, cache_dir or cache_root(),
                    n_latents=config.latents)
    if out is not None:
        with atomic_write(out) as fh:
            for item in items:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    return items

