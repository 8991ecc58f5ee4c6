"""Release folders: one folder holding the SAEs of many hookpoints (a sparsify release's `layers.N/`, OpenAI's
`autoencoders/N.pt`, a Llama Scope release's `...-LNR-...` folders), of which `--layer` picks one. Imports
nothing heavy, so the options can be resolved before any model library loads."""

from __future__ import annotations

import re
from pathlib import Path

from mona.errors import ConfigError

# files or folders that make a folder one SAE rather than a release of several
_SAE_FILES = ("cfg.json", "hyperparams.json", "params.npz", "ae.pt")

def _hookpoint_layer(name: str) -> tuple[int, int] | None:
    """(layer, preference) of a release's child named after its hookpoint, the residual stream first: sparsify
    `layers.N` / `layers.N.mlp`, OpenAI `N.pt`, Llama Scope `...-L{N}R-...` (R residual, A/M/TC others)."""
    if m := re.fullmatch(r"layers\.(\d+)(\.\w+)?", name):
        return int(m.group(1)), 0 if m.group(2) is None else 1
    if m := re.fullmatch(r"(\d+)\.pth?", name):
        return int(m.group(1)), 0
    if m := re.search(r"-L(\d+)(R|A|M|TC)(?:-|$)", name):
        return int(m.group(1)), 0 if m.group(2) == "R" else 1
    return None


def release_hookpoints(path: Path) -> dict[str, int]:
    """The children of a release folder that are hookpoints, with their layers (empty if `path` is none)."""
    if not path.is_dir():
        return {}
    return {child.name: parsed[0] for child in sorted(path.iterdir())
            if (parsed := _hookpoint_layer(child.name)) is not None}


def pick_hookpoint(path: Path, layer: int | None) -> Path:
    """The SAE of a release folder (many hookpoints) for decoder layer `layer`, the residual stream preferred."""
    found = release_hookpoints(path)
    names = ", ".join(found) if len(found) <= 8 else ", ".join(list(found)[:8]) + f", ... ({len(found)} in all)"
    if layer is None or layer < 0:
        raise ConfigError(f"SAE release folder with {len(found)} hookpoints ({names}): pass --layer N (0-based) "
                          "to pick one", path=str(path))
    matches = sorted((_hookpoint_layer(name)[1], name) for name, at in found.items() if at == layer)  # type: ignore[index]
    if not matches:
        raise ConfigError(f"SAE release folder has no hookpoint for layer {layer} (it has {names})", path=str(path))
    return path / matches[0][1]


def is_release(path: Path) -> bool:
    """Whether `path` is a release folder of several hookpoints rather than one SAE."""
    if not path.is_dir() or any((path / n).exists() for n in _SAE_FILES):
        return False
    found = release_hookpoints(path)
    # a folder holding just one N.pt is that SAE (OpenAI's file beside nothing else), not a release
    one_file = len(found) == 1 and any(p.suffix in (".pt", ".pth") for p in path.iterdir())
    return bool(found) and not one_file
