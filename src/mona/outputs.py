"""Guards for the files a command writes: none may be one of its inputs, two outputs may not share a path, and
every output location must be writable, all checked before any work is done."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from mona.errors import ConfigError, MissingFileError

# An option names no path (None), one path, or several (a repeated option, or the files of a directory input
# such as an SAE, whose directory itself may legitimately receive outputs).
Paths = Path | str | Iterable[Path | str] | None


def _real(path: Path | str) -> Path:
    # strict=False: outputs usually do not exist yet; symlinks along the way (and a symlinked file) resolve
    return Path(os.path.realpath(os.path.expanduser(path)))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _each(paths: Paths) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, Path | str):
        return [Path(paths)]
    return [Path(p) for p in paths]


def local_path(spec: str | Path | None) -> Path | None:
    """`spec` as a path when it names something on disk (a model or SAE option may also be a hub id or a
    shipped asset's name, which no output can overwrite)."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    return path if path.exists() or path.is_symlink() else None


def check_outputs(inputs: Mapping[str, Paths], outputs: Mapping[str, Paths], *,
                  dirs: Collection[str] = (), writable: bool = True) -> None:
    """Refuse (ConfigError, exit 4) an output that resolves to an input, lies inside an input directory (a
    `save_to_disk` dataset) or holds an input inside it, and two outputs resolving to one path; refuse
    (MissingFileError, exit 3) an output whose location cannot be written. Names are option names (`--out`);
    outputs named in `dirs` are directories (a run or SAE folder) and are checked as such; `writable=False`
    leaves the writability checks to the caller (outputs of mixed kinds inside one directory)."""
    ins = [(name, p, _real(p)) for name, paths in inputs.items() for p in _each(paths)]
    outs = [(name, p, _real(p)) for name, paths in outputs.items() for p in _each(paths)]
    for out_name, shown, out in outs:
        for in_name, src_shown, src in ins:
            if _inside(out, src) or _inside(src, out):
                raise ConfigError(f"{out_name} {shown} would overwrite the input {in_name} {src_shown}; "
                                  "choose another path")
    seen: dict[Path, str] = {}
    for out_name, shown, out in outs:
        clash = next((p for p in seen if _inside(out, p) or _inside(p, out)), None)
        if clash is not None:
            first = seen[clash]
            what = f"{first} and {out_name}" if first != out_name else f"{out_name} (given twice)"
            raise ConfigError(f"{what} name the same file {shown}; choose different paths")
        seen[out] = out_name
    if not writable:
        return
    for out_name, shown, out in outs:
        if out_name in dirs:
            check_output_dir(out_name, out, shown)
        else:
            check_writable(out_name, out, shown)


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


def check_output_dir(name: str, path: Path, shown: Path | None = None) -> None:
    """A directory output (a cache, an SAE folder) is a directory or can be created as one, and is writable."""
    shown = shown if shown is not None else path
    real = _real(path)
    probe = real
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise MissingFileError(f"{name} {shown} cannot be used: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise MissingFileError(f"{name} {shown} cannot be written: no write permission in {probe}")
