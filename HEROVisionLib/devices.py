"""Where computation runs: ``auto`` picks CUDA, then Apple MPS, then the CPU; names are checked."""

from __future__ import annotations

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
