"""Load a causal LM and its tokenizer by hub id, local directory or GGUF file (default: embedded SmolLM2)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from mona.errors import ConfigError, DependencyError, MissingFileError
from mona.models.assets import embedded_gguf
from mona.paths import cache_root

DEFAULT_MODEL = "smollm2-135m-instruct"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    """Map 'fp32'/'bf16'/'fp16' (or the long names) to a torch dtype."""
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; expected one of fp32, bf16, fp16") from None


def model_fingerprint(spec: str | None) -> str:
    """A stable name for the model, used in cache keys."""
    spec = spec or DEFAULT_MODEL
    p = Path(spec)
    if p.exists():
        stat = p.stat()
        return f"{p.resolve()}@{stat.st_size}:{int(stat.st_mtime)}"
    return spec


def _from_gguf(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    return model, tokenizer


def _default_model():
    """SmolLM2 from the GGUF, dequantised once and saved as safetensors so later loads take ~1 s, not ~18 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = cache_root() / "models" / "smollm2-135m-instruct-dequantized"
    if (saved / "config.json").exists():
        return (AutoModelForCausalLM.from_pretrained(str(saved), dtype=torch.float32),
                AutoTokenizer.from_pretrained(str(saved)))
    model, tokenizer = _from_gguf(embedded_gguf())
    # The GGUF is already dequantised to fp32 in memory; drop the quantizer marker so it saves as plain weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = saved.with_name(saved.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(saved, ignore_errors=True)
    os.replace(tmp, saved)
    return model, tokenizer


def _check_local(spec: str) -> None:
    """A spec that can only be a path (absolute, relative with ./ or ~, or deeper than org/name) must exist."""
    if Path(spec).exists():
        return
    if spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1 or spec.endswith(".gguf"):
        raise MissingFileError("no such model directory or file", path=spec)


def _load_error(spec: str, exc: Exception) -> ConfigError:
    hint = "" if Path(spec).exists() else (" (not a local path, and hub ids load only from the local hub cache "
                                           "when offline; pass a local directory or .gguf file)")
    return ConfigError(f"cannot load model {spec!r}{hint}: {str(exc).splitlines()[0]}")


def load_lm(spec: str | None = None, dtype: str | torch.dtype = "fp32"):
    """Load (model, tokenizer). `spec`: None or 'smollm2-135m-instruct' for the embedded model, a `.gguf`
    file, a local model directory, or a hub id (needs the hub or its local cache)."""
    torch_dtype = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    _quiet_transformers()
    if spec is None or spec == DEFAULT_MODEL:
        model, tokenizer = _default_model()
    elif spec.endswith(".gguf"):
        _check_local(spec)
        model, tokenizer = _from_gguf(Path(spec))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _check_local(spec)
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise _load_error(spec, exc) from None
        except ImportError as exc:
            raise DependencyError(f"loading {spec!r} needs a package that is missing: {exc}") from None
    model.eval()
    model.requires_grad_(False)
    return model.to(torch_dtype), tokenizer


def _quiet_transformers() -> None:
    """transformers' own progress bars and warnings would interleave with mona's progress display."""
    from transformers.utils import logging as hf_logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()


def load_tokenizer(spec: str | None = None):
    """(tokenizer, model config) without loading the weights (cheap: used when every sample is already
    cached)."""
    from transformers import AutoConfig, AutoTokenizer

    _quiet_transformers()
    if spec is None or spec == DEFAULT_MODEL:
        saved = cache_root() / "models" / "smollm2-135m-instruct-dequantized"
        if not (saved / "config.json").exists():
            _default_model()
        return AutoTokenizer.from_pretrained(str(saved)), AutoConfig.from_pretrained(str(saved))
    _check_local(spec)
    try:
        if spec.endswith(".gguf"):
            path = Path(spec)
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            cfg = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tok = AutoTokenizer.from_pretrained(spec)
            cfg = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, exc) from None
    return tok, cfg
