"""Guards for the files a command writes: none may be one of its inputs, two outputs may not share a path, and
every output location must be writable, all checked before any work is done."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mona.errors import ConfigError, MissingFileError


def _real(path: Path) -> Path:
    # strict=False: outputs usually do not exist yet; symlinks along the way (and a symlinked file) resolve
    return Path(os.path.realpath(os.path.expanduser(path)))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_outputs(inputs: Mapping[str, Path | None], outputs: Mapping[str, Path | None]) -> None:
    """Refuse (ConfigError, exit 4) an output that resolves to an input, lies inside an input directory (a
    `save_to_disk` dataset) or holds an input inside it, and two outputs resolving to one path; refuse
    (MissingFileError, exit 3) an output whose location cannot be written. Names are option names (`--out`)."""
    ins = {name: _real(p) for name, p in inputs.items() if p is not None}
    outs = {name: _real(p) for name, p in outputs.items() if p is not None}
    for out_name, out in outs.items():
        for in_name, src in ins.items():
            if _inside(out, src) or _inside(src, out):
                raise ConfigError(f"{out_name} {outputs[out_name]} would overwrite the input {in_name} "
                                  f"{inputs[in_name]}; choose another path")
    seen: dict[Path, str] = {}
    for out_name, out in outs.items():
        if out in seen:
            raise ConfigError(f"{seen[out]} and {out_name} name the same file {outputs[out_name]}; "
                              "choose different paths")
        seen[out] = out_name
    for out_name, out in outs.items():
        check_writable(out_name, out, outputs[out_name])


def check_writable(name: str, real: Path, shown: Path | None = None) -> None:
    """An output file can be created at `real`: not a directory, its parent a writable directory (or
    creatable under one)."""
    shown = shown if shown is not None else real
    if real.is_dir():
        raise MissingFileError(f"{name} {shown} is a directory; give a file path")
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MissingFileError(f"{name} {shown} cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MissingFileError(f"{name} {shown} cannot be written: no write permission in {parent}")


def check_output_dir(name: str, path: Path) -> None:
    """A directory output (a cache, an SAE folder) is a directory or can be created as one, and is writable."""
    real = _real(path)
    probe = real
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise MissingFileError(f"{name} {path} cannot be used: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise MissingFileError(f"{name} {path} cannot be written: no write permission in {probe}")
