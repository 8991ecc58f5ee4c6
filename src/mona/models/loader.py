"""Load a causal LM and its tokenizer by hub id, local directory or GGUF file (default: embedded SmolLM2)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from mona.errors import ConfigError, DependencyError, MissingFileError
from mona.models.assets import embedded_gguf
from mona.models.dtype import parse_dtype, resolve_dtype
from mona.paths import cache_root

DEFAULT_MODEL = "smollm2-135m-instruct"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization (in place) of the Linear layers inside the decoder layers: int8 weights per
    output channel, activations quantized per tensor at run time. The MLP down projections stay fp32: their
    input, SiLU(gate) * up, carries the model's few huge activations, which one scale per tensor crushes
    (SmolLM2, layer 28: pooled MoNA vectors at cosine 0.80 to fp32 with them quantized, 0.96 without).
    The LM head and embeddings stay fp32."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from mona.models.truncated import decoder_layers

    inside = {id(m) for layer in decoder_layers(model) for m in layer.modules()}
    spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and id(m) in inside and not name.endswith("down_proj")}
    return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def resolve_device(name: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cpu', 'cuda', 'cuda:N' and 'mps' (Apple silicon) are
    taken as given (a GPU that is not there is refused here rather than failing deep inside the first forward
    pass). `auto` never picks mps: mona's MPS path has not been run on a Mac yet (docs/models.md)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__})")
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device 'mps' asked for, but torch sees no Apple-silicon GPU (torch "
                              f"{torch.__version__}; MPS needs macOS 12.3 or later on an M-series Mac)")
        return name
    raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")


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
    # one temporary directory per process: several Ray actors on one node may get here at the same time
    tmp = saved.with_name(f"{saved.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if not (saved / "config.json").exists():
        shutil.rmtree(saved, ignore_errors=True)  # an incomplete leftover
    try:
        os.replace(tmp, saved)
    except OSError:  # another process finished first (a non-empty directory is not replaced): keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
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


def load_lm(spec: str | None = None, dtype: str | torch.dtype = "fp32", device: str = "cpu"):
    """Load (model, tokenizer). `spec`: None or 'smollm2-135m-instruct' for the embedded model, a `.gguf`
    file, a local model directory, or a hub id (needs the hub or its local cache). `dtype`: a torch dtype or a
    name (`auto`: mona.models.dtype.resolve_dtype for the device). `device`: see `resolve_device`."""
    device = resolve_device(device)  # before the (slow) load
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype, device).dtype
    int8 = dtype == "int8"  # fp32 weights, then `quantize_int8`
    torch_dtype = torch.float32 if int8 else parse_dtype(dtype) if isinstance(dtype, str) else dtype
    if int8 and device != "cpu":
        raise ConfigError(f"dtype int8 (dynamic quantization) runs on the CPU only, not on {device}")
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
    model = model.to(torch_dtype).to(device)
    return (quantize_int8(model) if int8 else model), tokenizer


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
