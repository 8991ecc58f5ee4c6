"""What a benchmark ran on (CPU model, cores, memory, software) and how busy the machine was: figures measured
while other jobs share the CPU are not comparable to figures from an idle machine, so reports say which."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

# A 1-minute load average above this, read before a run starts, means other jobs were using the CPU.
BUSY_LOAD = 0.5


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_host() -> dict:
    """CPU model, logical cores, physical memory and Python/torch versions."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    info = {"cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
            "memory_gb": round(memory / 2**30, 1), "python": platform.python_version()}
    torch = sys.modules.get("torch")  # only reported when the benchmark itself uses torch
    if torch is not None:
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return info


def host_line(info: dict) -> str:
    """`describe_host()` as one line of prose."""
    line = f"{info['cpu']} ({info['arch']}), {info['cores']} cores, {info['memory_gb']} GB, Python {info['python']}"
    if "torch" in info:
        line += f", torch {info['torch']} with {info['torch_threads']} threads"
    return line


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def load_line(before: list[float] | None, after: list[float] | None) -> str:
    """The load averages around a run and whether other jobs were running when it started."""
    if before is None or after is None:
        return "load average: not available on this OS"
    busy = before[0] > BUSY_LOAD
    verdict = (f"other jobs were using the CPU (1-min load {before[0]} > {BUSY_LOAD} before the start)" if busy
               else "the machine was otherwise idle at the start")
    return (f"load average (1, 5, 15 min) before {' '.join(map(str, before))}, after {' '.join(map(str, after))} "
            f"(after includes this run's own threads): {verdict}")


def command_line() -> str:
    """The command this process was started with, as a `mona ...` line one can paste into a shell."""
    return shlex.join(["mona", *sys.argv[1:]])
