"""Which dtype the selection model (and training) runs in: `auto` resolves to bf16 where the device runs it
faster, else fp32.

- CUDA: bf16 on GPUs that run it natively (compute capability 8.0 and later), fp32 on older ones (they emulate
  bf16; fp16 is not chosen: SmolLM2's first-token activations are large enough to overflow it).
- CPU: bf16 only when the CPU has the instructions that make bf16 matmuls fast (x86: AMX `amx_bf16` or
  AVX-512 `avx512_bf16`; Arm: the `bf16` feature), read from /proc/cpuinfo (else from torch's own CPU checks),
  and when a one-off timing of a small matmul confirms it. Without them oneDNN converts bf16 to fp32 and back
  around every kernel, which is several times slower than fp32 (docs/benchmarks/speed.md has the figures).
  The timing is cached per machine (CPU model, flags, torch version) under the cache root. The environment
  variable MONA_NO_CPU_BF16 (set to anything) keeps `auto` at fp32 on every CPU.
- MPS (Apple silicon): fp32. bf16 there needs macOS 14 and has not been measured; `--dtype bf16` asks for it.

Whatever the dtype, mona converts the residual stream to fp32 before SAE encoding and pooling
(`TruncatedLM.forward`), so only the decoder layers run in bf16."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import torch

from mona.atomic import atomic_write
from mona.errors import ConfigError
from mona.paths import cache_root

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# The CPU flags that give bf16 matmuls their own instructions (x86 AMX and AVX-512 BF16; Arm's BF16 extension).
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
# bf16 must beat fp32 on the probe matmul by this factor: the rest of a forward (attention softmax, norms, the
# casts in and out) gains less than the matmuls, so a marginal matmul win could be a loss end to end.
MIN_SPEEDUP = 1.5
# The probe: one batch of 256 token states through a SmolLM2-sized MLP projection (576 -> 1536).
PROBE_SHAPE = (256, 576, 1536)
PROBE_REPEATS = 5
# Set (to anything non-empty), `auto` keeps fp32 on the CPU whatever its flags: for runs that must agree across
# machines (bf16 scores move with batching and with the CPU, docs/reliability.md), e.g. a cluster of mixed CPUs.
NO_CPU_BF16 = "MONA_NO_CPU_BF16"


class DtypeChoice(NamedTuple):
    """A resolved dtype (fp32, bf16, fp16 or int8) and why it was chosen."""

    dtype: str
    reason: str

    def __str__(self) -> str:
        return f"{self.dtype} ({self.reason})"


def canonical_dtype(name: str) -> str:
    """'fp32'/'bf16'/'fp16'/'int8'/'auto' for any accepted spelling (also float32, bfloat16, float16)."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in (*TORCH_DTYPES, "int8", "auto"):
        raise ConfigError(f"unknown dtype {name!r}; expected one of auto, fp32, bf16, fp16, int8")
    return key


def parse_dtype(name: str) -> torch.dtype:
    """Map 'fp32'/'bf16'/'fp16' (or the long names) to a torch dtype."""
    key = canonical_dtype(name)
    if key not in TORCH_DTYPES:
        raise ConfigError(f"dtype {name!r} is not a torch dtype; expected fp32, bf16 or fp16")
    return TORCH_DTYPES[key]


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first /proc/cpuinfo line named by one of `keys` (None off Linux or without one)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: /proc/cpuinfo's `flags` (x86) or `Features` (Arm) line; elsewhere the bf16 flags
    torch's own CPU checks report."""
    line = _cpuinfo("flags", "Features")
    if line is not None:
        return frozenset(line.split())
    checks = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    return frozenset(flag for flag, check in checks.items() if getattr(torch.cpu, check, lambda: False)())


def time_matmul(dtype: torch.dtype, shape: tuple[int, int, int] = PROBE_SHAPE, repeats: int = PROBE_REPEATS
                ) -> float:
    """Best-of-`repeats` seconds of one [n, k] @ [k, m] matmul in `dtype` on the CPU (after one warm-up)."""
    n, k, m = shape
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, k, generator=gen).to(dtype)
    b = torch.randn(k, m, generator=gen).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def _machine() -> str:
    return _cpuinfo("model name") or torch.backends.cpu.get_cpu_capability()


def probe_path(flags: frozenset[str]) -> Path:
    """Where this machine's probe result is cached: keyed by CPU model, its bf16 flags and torch's version."""
    ident = json.dumps([_machine(), sorted(flags & set(BF16_FLAGS)), torch.__version__])
    return cache_root() / "dtype" / f"cpu-probe-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"


def cpu_bf16_speedup(flags: frozenset[str]) -> float:
    """fp32 time / bf16 time of the probe matmul on this CPU, measured once per machine and then read from the
    cache (a cache that cannot be read or written is measured again)."""
    path = probe_path(flags)
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    fp32, bf16 = time_matmul(torch.float32), time_matmul(torch.bfloat16)
    record = {"cpu": _machine(), "bf16_flags": sorted(flags & set(BF16_FLAGS)), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "shape": list(PROBE_SHAPE), "fp32_seconds": fp32,
              "bf16_seconds": bf16, "speedup": fp32 / bf16}
    with contextlib.suppress(OSError), atomic_write(path) as fh:  # a read-only cache: measure again next time
        fh.write(json.dumps(record, indent=1) + "\n")
    return record["speedup"]


def _auto(device: str) -> DtypeChoice:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return DtypeChoice("bf16", f"auto: {name} runs bf16 natively")
        return DtypeChoice("fp32", f"auto: {name} has no native bf16")
    if device == "mps":
        return DtypeChoice("fp32", "auto: fp32 on MPS (bf16 there is unmeasured; --dtype bf16 asks for it)")
    if os.environ.get(NO_CPU_BF16):
        return DtypeChoice("fp32", f"auto: {NO_CPU_BF16} is set")
    flags = cpu_flags()
    present = [f for f in BF16_FLAGS if f in flags]
    if not present:
        return DtypeChoice("fp32", "auto: the CPU has no AMX or AVX512-BF16, so bf16 would be emulated")
    speedup = cpu_bf16_speedup(flags)
    verdict = f"CPU flags {', '.join(present)}; a bf16 matmul ran {speedup:.1f}x the fp32 rate"
    if speedup >= MIN_SPEEDUP:
        return DtypeChoice("bf16", f"auto: {verdict}")
    return DtypeChoice("fp32", f"auto: {verdict}, under the {MIN_SPEEDUP}x bf16 needs here")


def resolve_dtype(requested: str, device: str) -> DtypeChoice:
    """The dtype to run in on `device` ('cpu', 'cuda', 'cuda:N', 'mps'; see loader.resolve_device) and why: `auto` as
    this module's docstring says, any other name as asked for (canonical spelling)."""
    dtype = canonical_dtype(requested)
    if dtype == "auto":
        return _auto(device)
    return DtypeChoice(dtype, "asked for")


def autocast(dtype: str, device: str) -> contextlib.AbstractContextManager:
    """Mixed precision for training: torch.autocast to bf16/fp16 on `device` (weights, gradients and optimizer
    state stay fp32), or nothing for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype not in TORCH_DTYPES:
        raise ConfigError(f"training runs in fp32, bf16 or fp16, not {dtype}")
    return torch.autocast(torch.device(device).type, dtype=TORCH_DTYPES[dtype])
