"""Where computation runs: ``auto`` picks CUDA, then Apple MPS, then the CPU; names are checked. And
how many CPU threads a process may use: processes side by side must share the cores, or torch's
thread pools oversubscribe them (three shards each using every core run many times slower)."""

from __future__ import annotations

import os

import torch

from .errors import InputError


def resolve_device(name="auto") -> torch.device:
    """A ``torch.device`` for ``name`` (a device passes through); an unavailable one is refused by name."""
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
    """At most ``threads`` CPU threads for torch's operators in this process."""
    if threads < 1:
        raise InputError("--threads", f"must be at least 1, got {threads}")
    torch.set_num_threads(threads)
