"""Synthetic IVIM voxels with known parameters: the ground truth for accuracy tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fit import model

#: The parameter ranges of the accuracy targets (mm²/s; f unitless): liver and HCC tissue.
D_RANGE = (0.5e-3, 2.5e-3)
F_RANGE = (0.05, 0.4)
DSTAR_RANGE = (0.01, 0.1)
S0 = 1000.0


@dataclass
class SyntheticVoxels:
    signal: torch.Tensor  # (N, B), Rician noise
    d: torch.Tensor
    f: torch.Tensor
    dstar: torch.Tensor


def synthetic_voxels(n: int, bvalues, snr: float, seed: int = 0, d_range=D_RANGE, f_range=F_RANGE,
                     dstar_range=DSTAR_RANGE) -> SyntheticVoxels:
    """``n`` voxels with D, f, D* uniform over the ranges (a range (x, x) fixes the value), S0 = 1000
    and Rician noise σ = S0 / SNR (magnitude of a complex signal with Gaussian noise on both
    channels), float64."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)

    d, f, dstar = uniform(*d_range), uniform(*f_range), uniform(*dstar_range)
    clean = model(torch.as_tensor(bvalues, dtype=torch.float64), torch.full((n,), S0, dtype=torch.float64), f, d, dstar)
    sigma = S0 / snr
    real = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    imaginary = sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return SyntheticVoxels(torch.hypot(real, imaginary), d, f, dstar)
