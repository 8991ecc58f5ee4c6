"""The SAE layer's entry points: find an SAE on disk (a folder or weights file of any public family, a release
folder picked by layer, or a shipped SAE), describe it (`sae_metadata`, `sae_k`, its site), load it and encode
with it. The families' converters are in `mona.sae.formats`, the canonical description in `mona.sae.spec`, one
encode function per architecture in `mona.sae.encoders`. SAEs trained here are sparsify `SparseCoder`s, which
`encode` takes as they are."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from functools import lru_cache
from pathlib import Path

import torch

from mona.errors import ConfigError, MissingFileError
from mona.models.loader import DEFAULT_MODEL
from mona.models.truncated import BRANCH_SITES
from mona.paths import package_asset
from mona.sae.encoders import encode_codes
from mona.sae.formats import LAYOUTS, describe, read_sae
from mona.sae.release import is_release, pick_hookpoint
from mona.sae.spec import Sae, SaeSpec, Site

SHIPPED_SAE = "smollm2-135m-instruct-L18"
READ_SITES = ("resid", *BRANCH_SITES)  # the sites mona's truncated model captures


def _sparsify():
    # sparsify prints a notice about Triton on import (not an error on CPU), and simple_parsing warns about the
    # extra keys mona keeps in cfg.json (model, layer, training figures): both are noise for our users.
    logging.getLogger("simple_parsing").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        from sparsify import SparseCoder
        from sparsify.config import SparseCoderConfig
    return SparseCoder, SparseCoderConfig


def shipped_sae_path(name: str = SHIPPED_SAE) -> Path:
    """Directory of an SAE shipped inside the package."""
    return package_asset("sae", name)


def resolve_sae_path(spec: str | Path | None, layer: int | None = None) -> Path:
    """None -> the shipped SAE; a shipped SAE's name; an SAE folder or weights file; or a release folder holding
    many hookpoints (sparsify `layers.N`, OpenAI `N.pt`, Llama Scope `...-LNR-...`), of which `layer` picks one."""
    if spec is None:
        return shipped_sae_path()
    path = Path(spec)
    if not path.exists() and shipped_sae_path(str(spec)).exists():
        return shipped_sae_path(str(spec))
    if not path.exists():
        raise MissingFileError("SAE not found (expected a folder or weights file: " + LAYOUTS + ")",
                               path=str(spec))
    if path.is_dir() and is_release(path):
        return pick_hookpoint(path, layer)
    return path


def sae_spec(path: Path) -> SaeSpec:
    """The canonical description of the SAE at `path` (mona.sae.spec.SaeSpec), from its config alone."""
    return describe(path)


def sae_metadata(path: Path) -> dict:
    """The SAE's own config (cfg.json, hyperparams.json, config.json, ...) with the canonical fields on top:
    format, architecture, k, site, hookpoint and `layer`, the decoder layer it reads (parsed from its hookpoint;
    mona adds `model` and `layer` to the cfg.json of the SAEs it trains)."""
    return describe(path).metadata()


def sae_k(path: Path) -> int | None:
    """The most codes per token the SAE gives: a TopK SAE's k; None where any number may be asked (MultiTopK,
    trained to run at larger k too) or the number varies per token (JumpReLU, ReLU, gated)."""
    spec = describe(path)
    if spec.architecture in ("topk", "groupmax") and not spec.multi_topk:
        return spec.k
    return None


def default_layer(model: str | None) -> int:
    """The decoder layer read when none is given: on the embedded model, the shipped SAE's layer (chosen on the
    relevance dev suite, docs/relevance.md); on any other model, the penultimate (-2), as in the paper."""
    if model not in (None, DEFAULT_MODEL):
        return -2
    return int(sae_metadata(shipped_sae_path())["layer"])


@lru_cache(maxsize=8)
def _file_hash(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def sae_fingerprint(path: Path) -> str:
    """Short content hash of the SAE weights, for cache keys (features, labels), with the site the SAE reads
    appended where it is not the residual stream: the same weights on another site give other codes, and the
    keys of residual-stream SAEs stay what they were."""
    spec = describe(path)
    stat = spec.weights.stat()
    digest = _file_hash(str(spec.weights), stat.st_size, stat.st_mtime)
    return digest if spec.site.kind == "resid" else f"{digest}@{spec.site.kind}"


def load_sae(spec: str | Path | None = None, device: str = "cpu", layer: int | None = None) -> Sae:
    """Load an SAE of any family (resolve_sae_path; `layer` picks a release folder's hookpoint) as a float32
    `Sae` on `device` (a resolved one: cpu, cuda, cuda:N)."""
    sae = read_sae(resolve_sae_path(spec, layer))
    return sae if str(device) == "cpu" else sae.to(device)


def as_sae(sae) -> Sae:
    """`sae` as an `Sae`: a sparsify `SparseCoder` (as `mona sae train` returns it) is described as sparsify's
    TopK on the residual stream, sharing its tensors (no copy)."""
    if isinstance(sae, Sae):
        return sae
    cfg = sae.cfg
    if getattr(cfg, "transcode", False):
        raise ConfigError("a sparsify transcoder reads the MLP input, not the residual stream")
    spec = SaeSpec("sparsify", getattr(cfg, "activation", "topk"), Site("resid", None), Path(), k=int(cfg.k),
                   multi_topk=bool(getattr(cfg, "multi_topk", False)))
    return Sae(spec, W_enc=sae.encoder.weight, b_enc=sae.encoder.bias, W_dec=sae.W_dec, b_dec=sae.b_dec)


def sae_site(sae) -> Site:
    """The site an SAE reads (its spec's; a trained SparseCoder reads the residual stream)."""
    return as_sae(sae).spec.site


def check_site(sae, *, sae_path: Path | str) -> None:
    """Refuse an SAE that reads a site mona does not capture: mona reads the residual stream after a decoder
    layer and the attention / MLP output of a layer (mona.models.truncated.BRANCH_SITES); feeding anything else
    (hook_z, the stream between attention and MLP, a transcoder's MLP input) to such an SAE gives codes that look
    fine and mean nothing."""
    site = sae_site(sae)
    if site.kind not in READ_SITES:
        hint = (" (keep Gemma Scope's params.npz under its release folder, gemma-scope-...-res)"
                if site.kind == "unknown" else "")
        raise ConfigError(f"this SAE reads {site.describe()} ({site.hookpoint or 'no hookpoint named'}); mona "
                          "reads the residual stream after a decoder layer and a layer's attention or MLP output "
                          f"only: use an SAE of one of those{hint}", path=str(sae_path))


def check_width(sae, d_model: int, *, sae_path: Path | str, layer: int | None = None,
                sae_layer: int | None = None) -> None:
    """Refuse an SAE that reads a site mona does not capture (check_site), one whose input width differs from the
    model's, or one trained on another layer than the one read."""
    check_site(sae, sae_path=sae_path)
    if int(sae.d_in) != int(d_model):
        raise ConfigError(f"SAE d_in is {sae.d_in} but the model's hidden size is {d_model}: this SAE was "
                          "trained for another model", path=str(sae_path))
    if layer is not None and sae_layer is not None and int(layer) != int(sae_layer):
        raise ConfigError(f"SAE was trained on layer {sae_layer}, not layer {layer}; pass --layer {sae_layer} "
                          "or an SAE for that layer", path=str(sae_path))


@torch.inference_mode()
def encode(sae, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token codes of activations x [N, d] with the SAE's own architecture (mona.sae.encoders): (values
    [N, w], indices [N, w]) on the CPU wherever the SAE is; w is a TopK SAE's k, else the most latents any token
    of the batch fires (zero-padded). `k` keeps only the k largest (codes per token, K sweeps; above a TopK SAE's
    k only for a MultiTopK one)."""
    sae = as_sae(sae)
    values, indices = encode_codes(sae, x.to(sae.device), k)  # .to: a no-op on the CPU
    return values.cpu(), indices.cpu()
