"""Acquisition profiles (PHANTOM.md §3): what a centre's scanners produce. The patient fixes the
anatomy; a profile fixes grids, b-values, noise and frame times."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A 3-D voxel grid with identity direction (origin (0, 0, 0) for every profile-A image)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def centre(self) -> np.ndarray:
        """World centre of the field of view (mm)."""
        return np.asarray(self.origin) + np.asarray(self.spacing) * (np.asarray(self.size) - 1) / 2.0

    @property
    def field_mm(self) -> np.ndarray:
        return np.asarray(self.spacing) * np.asarray(self.size)

    def voxel_centres(self) -> np.ndarray:
        """World coordinates (z, y, x, 3) of every voxel centre (numpy/SimpleITK array order)."""
        axes = [self.origin[d] + self.spacing[d] * np.arange(self.size[d]) for d in range(3)]
        zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        return np.stack([xx, yy, zz], axis=-1)


@dataclass(frozen=True)
class Profile:
    name: str
    ivim: Grid
    t2wi: Grid
    us_size: tuple[int, int]
    us_spacing: tuple[float, float]
    bvalues: tuple[float, ...]
    dwi_bvalue: float
    snr_ivim: float
    snr_t2wi: float
    ceus_times_s: tuple[float, ...]


PROFILE_A = Profile(
    name="A",
    ivim=Grid((96, 96, 20), (2.0, 2.0, 5.0)),
    t2wi=Grid((192, 192, 20), (1.0, 1.0, 5.0)),
    us_size=(256, 256),
    us_spacing=(0.3, 0.3),
    bvalues=(0.0, 10.0, 20.0, 40.0, 80.0, 200.0, 400.0, 600.0, 1000.0),
    dwi_bvalue=800.0,
    snr_ivim=40.0,
    snr_t2wi=30.0,
    ceus_times_s=(0.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0),
)

PROFILES = {PROFILE_A.name: PROFILE_A}
