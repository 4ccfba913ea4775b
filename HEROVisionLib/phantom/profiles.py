"""Acquisition profiles (PHANTOM.md §3): what a centre's scanners produce. The patient fixes the
anatomy (always laid out on profile A's field of view, so one (seed, i) is the same patient in the
same place under every profile); a profile fixes grids and their orientation, b-values, noise, the
scanners' gain and the CEUS frame times.

* ``A`` — the default centre of PHANTOM.md §3.
* ``B`` — a held-out "other centre", chosen as a second site would differ while staying within what
  an MR/US physicist calls routine for liver imaging: 1.6 × 1.6 × 4 mm IVIM/DWI and 0.75 × 0.75 × 4 mm
  T2WI on the same 192 × 192 × 104 mm field, stored left–right and anterior–posterior flipped (an LPS
  scanner's RAS export: direction diag(−1, −1, 1)); IVIM SNR 25 and T2WI SNR 20 (a 1.5 T system);
  MR receiver gain 1.8 and US gain 0.7; US at 0.25 mm; CEUS sampled every 8 s early, then more
  sparsely to 300 s. Same b-values as A (the IVIM model reads exactly its nine).
* ``R`` — randomised: each case draws its own acquisition (``draw_profile``) from a generator of its
  own, ``default_rng([seed, i, 12])``, so every v1 draw — the patient — is unchanged. Ranges, each
  uniform unless said, chosen as routine clinical liver protocols span them: IVIM/DWI in-plane
  1.4–2.2 mm, slices 3–6 mm; T2WI in-plane 0.6–1.2 mm, slices 3–6 mm (matrices cover profile A's
  192 × 192 × 100 mm field); orientation: left–right and anterior–posterior flips (each p = 0.5) then
  an oblique tilt of 0–15° about a random axis (shared by the MR series of one study); SNR 20–60
  (IVIM at b = 0) and 15–45 (T2WI); MR receiver gain and US gain log-uniform in 0.5–2.0 and 0.6–1.6;
  US pixels 0.2–0.4 mm over the same 76.8 mm field; CEUS every 5–10 s up to 60 s, then every 20–40 s
  up to 240–300 s. IVIM b-values (drawn last, so the draws above do not depend on them): b = 0,
  2–5 perfusion-weighted values below 200 from {10, 20, 30, 40, 50, 60, 80, 100, 150}, 1–3 from
  {200, 300, 400, 500} and a largest of 600, 700, 800, 900 or 1000 s/mm² (5–10 in all, as published
  liver IVIM protocols range); the separate DWI at b = 800 or 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Grid:
    """A 3-D voxel grid; ITK's convention: world = origin + direction · (spacing ⊙ index). Profile-A
    images have origin (0, 0, 0) and identity direction."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY  # row-major 3 × 3, columns are the index axes in world

    @classmethod
    def centred(cls, centre, size, spacing, direction=IDENTITY) -> Grid:
        """The grid whose field of view is centred on the world point ``centre``."""
        half = np.asarray(direction, float).reshape(3, 3) @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2.0)
        return cls(tuple(size), tuple(spacing), tuple(float(v) for v in np.asarray(centre) - half), tuple(direction))

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.direction, float).reshape(3, 3)

    @property
    def centre(self) -> np.ndarray:
        """World centre of the field of view (mm)."""
        return np.asarray(self.origin) + self.matrix @ (np.asarray(self.spacing) * (np.asarray(self.size) - 1) / 2.0)

    @property
    def field_mm(self) -> np.ndarray:
        return np.asarray(self.spacing) * np.asarray(self.size)

    @property
    def voxel_extent_mm(self) -> np.ndarray:
        """A voxel's extent along the world axes (its spacing, turned by the direction)."""
        return np.abs(self.matrix) @ np.asarray(self.spacing)

    def voxel_centres(self) -> np.ndarray:
        """World coordinates (z, y, x, 3) of every voxel centre (numpy/SimpleITK array order)."""
        if self.direction == IDENTITY:  # the common case, without a matrix product
            axes = [self.origin[d] + self.spacing[d] * np.arange(self.size[d]) for d in range(3)]
            zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
            return np.stack([xx, yy, zz], axis=-1)
        k, j, i = np.meshgrid(*(np.arange(n) for n in self.size[::-1]), indexing="ij")
        steps = np.stack([i, j, k], axis=-1) * np.asarray(self.spacing)
        return np.asarray(self.origin) + steps @ self.matrix.T


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
    gain_mr: float = 1.0  # receiver gain: scales MR signal and noise alike
    gain_us: float = 1.0


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

_FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
PROFILE_B = Profile(
    name="B",
    ivim=Grid.centred(PROFILE_A.ivim.centre, (120, 120, 26), (1.6, 1.6, 4.0), _FLIPPED),
    t2wi=Grid.centred(PROFILE_A.ivim.centre, (256, 256, 26), (0.75, 0.75, 4.0), _FLIPPED),
    us_size=(320, 320),
    us_spacing=(0.25, 0.25),
    bvalues=PROFILE_A.bvalues,
    dwi_bvalue=800.0,
    snr_ivim=25.0,
    snr_t2wi=20.0,
    ceus_times_s=(0.0, 8.0, 16.0, 24.0, 32.0, 40.0, 55.0, 70.0, 100.0, 130.0, 160.0, 200.0, 250.0, 300.0),
    gain_mr=1.8,
    gain_us=0.7,
)

PROFILES = {profile.name: profile for profile in (PROFILE_A, PROFILE_B)}
RANDOMISED = "R"
PROFILE_NAMES = (*PROFILES, RANDOMISED)


def _tilt(rng: np.random.Generator) -> tuple[float, ...]:
    """Flips of the left–right and anterior–posterior axes, then a 0–15° tilt about a random axis."""
    flips = np.diag([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0]), 1.0])
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(0.0, 15.0))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues
    return tuple(float(v) for v in (rotation @ flips).ravel())


def _mr_grid(rng, in_plane: tuple[float, float], direction) -> Grid:
    spacing = (rng.uniform(*in_plane),) * 2 + (rng.uniform(3.0, 6.0),)
    size = tuple(int(np.ceil(field / step)) for field, step in zip(PROFILE_A.ivim.field_mm, spacing))
    return Grid.centred(PROFILE_A.ivim.centre, size, spacing, direction)


def _ceus_times(rng) -> tuple[float, ...]:
    early, late, end = rng.uniform(5.0, 10.0), rng.uniform(20.0, 40.0), rng.uniform(240.0, 300.0)
    times = list(np.arange(0.0, 60.0, early)) + list(np.arange(60.0, end - 1.0, late)) + [end]  # ends at `end`
    return tuple(round(float(t), 1) for t in times)


def _bvalue_scheme(rng) -> tuple[float, ...]:
    low = rng.choice([10, 20, 30, 40, 50, 60, 80, 100, 150], size=rng.integers(2, 6), replace=False)
    middle = rng.choice([200, 300, 400, 500], size=rng.integers(1, 4), replace=False)
    largest = rng.choice([600, 700, 800, 900, 1000])
    return tuple(float(b) for b in sorted([0, *low, *middle, largest]))


def draw_profile(seed: int, index: int) -> Profile:
    """Case ``index``'s randomised acquisition (profile ``R``; ranges in the module docstring)."""
    rng = np.random.default_rng([seed, index, 12])
    direction = _tilt(rng)
    ivim, t2wi = _mr_grid(rng, (1.4, 2.2), direction), _mr_grid(rng, (0.6, 1.2), direction)
    us_step = rng.uniform(0.2, 0.4)
    us_pixels = int(round(PROFILE_A.us_size[0] * PROFILE_A.us_spacing[0] / us_step))
    acquisition = dict(us_size=(us_pixels, us_pixels), us_spacing=(us_step, us_step),
                       snr_ivim=rng.uniform(20.0, 60.0), snr_t2wi=rng.uniform(15.0, 45.0),
                       ceus_times_s=_ceus_times(rng), gain_mr=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
                       gain_us=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))))
    return Profile(name=RANDOMISED, ivim=ivim, t2wi=t2wi, bvalues=_bvalue_scheme(rng),
                   dwi_bvalue=float(rng.choice([800.0, 1000.0])), **acquisition)


def profile_for(name: str, seed: int, index: int) -> Profile:
    """The acquisition of case ``index`` under the profile called ``name``."""
    return draw_profile(seed, index) if name == RANDOMISED else PROFILES[name]
