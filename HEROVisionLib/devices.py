"""Where computation runs: ``auto`` picks CUDA, then Apple MPS, then the CPU; names are checked. And
how many CPU threads a process may use: processes side by side must share the cores, or torch's
thread pools oversubscribe them (three shards each using every core run many times slower).

torch is imported only when a device must be resolved: a command that can run without it (the
CPU IVIM fit) does not pay its import to learn that there is no GPU."""

from __future__ import annotations

import os
import sys

from .errors import InputError

_threads: int | None = None  # this process's CPU thread budget, once limited


def cuda_possible() -> bool:
    """False where CUDA surely is not: a Linux system without NVIDIA's kernel driver (nor WSL's GPU
    bridge). Elsewhere only torch can tell."""
    if not sys.platform.startswith("linux"):
        return True
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/dxg")


def resolve_device(name="auto"):
    """A ``torch.device`` for ``name`` (a device passes through); an unavailable one is refused by name."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError("--device", f"unknown device {name!r} ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", f"{name}: CUDA is not available here (use --device cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device", f"{name}: Apple MPS is not available here (use --device cpu)")
    return device


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def limit_threads(threads: int) -> None:
    """At most ``threads`` CPU threads in this process: torch's operators (now, or when it loads)
    and the CPU IVIM fit."""
    global _threads
    if threads < 1:
        raise InputError("--threads", f"must be at least 1, got {threads}")
    _threads = threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch's thread pool as it starts


def cpu_threads() -> int:
    """The CPU threads this process may use: its limit, else every core it may run on."""
    return _threads or available_cores()
