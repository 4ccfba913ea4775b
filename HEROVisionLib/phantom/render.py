"""PHANTOM.md §3/§5: images and ROIs of one patient under one acquisition profile.

Signals mix the tissues of each voxel by their partial-volume fractions. Random draws, in order:
IVIM noise, DWI noise, T2WI noise, US speckle, CEUS speckle (frame by frame), then the ROI
hand-contour perturbations (IVIM, T2WI, DWI, US, CEUS), each from the case's one generator.
"""

from __future__ import annotations

import math

import numpy as np

from .anatomy import Anatomy, RandomField
from .latents import Patient
from .profiles import Grid, Profile

S0 = {"liver": 1000.0, "tumour": 1100.0, "body": 400.0}
BODY_D = 0.3e-3
T2 = {"liver": 300.0, "tumour": 600.0, "body": 150.0}
ECHO = {"liver": 1.0, "body": 0.7}
TUMOUR_ECHO = {"hypo": 0.6, "iso": 1.0, "hyper": 1.5}
ECHO_SCALE = 100.0
RAYLEIGH_SIGMA = 0.5
CEUS_RESIDUAL = 0.002
ROI_DROP_PROBABILITY = 0.15


def ivim_signal(b, s0, f, d, dstar):
    """S(b) = S0·((1−f)·e^(−b·D) + f·e^(−b·D*))."""
    return s0 * ((1.0 - f) * np.exp(-b * d) + f * np.exp(-b * dstar))


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    real = signal + rng.normal(0.0, sigma, signal.shape)
    imaginary = rng.normal(0.0, sigma, signal.shape)
    return np.hypot(real, imaginary)


def speckle(shape, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Rayleigh speckle (σ = 0.5) normalised to mean 1."""
    return rng.rayleigh(RAYLEIGH_SIGMA, shape) / (RAYLEIGH_SIGMA * math.sqrt(math.pi / 2.0))


def us_plane_points(anatomy: Anatomy, profile: Profile) -> np.ndarray:
    """World points (y, x, 3) of the axial US plane through the largest tumour, tumour centred."""
    nx, ny = profile.us_size
    sx, sy = profile.us_spacing
    cx, cy, cz = anatomy.largest.centre
    x = cx + (np.arange(nx) - (nx - 1) / 2.0) * sx
    y = cy + (np.arange(ny) - (ny - 1) / 2.0) * sy
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return np.stack([xx, yy, np.full_like(xx, cz)], axis=-1)


def ceus_enhancement(t_s: float) -> float:
    """Liver enhancement c(t) = x·e^(1−x), x = (t − 5 s)/40 s, 0 before 5 s (peak at 45 s)."""
    if t_s <= 5.0:
        return 0.0
    x = (t_s - 5.0) / 40.0
    return x * math.exp(1.0 - x)


def tumour_ceus_multiplier(t_s: float, washout: float) -> float:
    """1.5 up to 30 s, linear to (1 − 0.6·washout) at 120 s, constant after."""
    late = 1.0 - 0.6 * washout
    if t_s <= 30.0:
        return 1.5
    if t_s >= 120.0:
        return late
    return 1.5 + (late - 1.5) * (t_s - 30.0) / 90.0


class PatientRenderer:
    """Images of one patient: one anatomy, its fields, any grid."""

    def __init__(self, patient: Patient, anatomy: Anatomy, field_f: RandomField, field_g: RandomField):
        self.patient, self.anatomy, self.field_f, self.field_g = patient, anatomy, field_f, field_g

    def _tumour_modulation(self, points, scale):
        return 1.0 + scale * self.patient.heterogeneity * self.field_f(points)

    def ivim(self, grid: Grid, bvalues) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free signal (b, z, y, x) and tumour fractions (T, z, y, x) on an MR grid."""
        p = self.patient
        points = grid.voxel_centres()
        fractions = self.anatomy.tissue_fractions(points, grid.voxel_extent_mm)
        tumour_d = np.clip(p.tumor_D * (1.0 + 0.15 * p.heterogeneity * self.field_f(points)), 1e-5, None)
        tumour_f = np.clip(p.tumor_f * (1.0 + 0.15 * p.heterogeneity * self.field_g(points)), 0.0, 1.0)
        tumour = fractions["tumour"].sum(axis=0)
        signal = np.stack([
            fractions["body"] * ivim_signal(b, S0["body"], 0.0, BODY_D, BODY_D)
            + fractions["liver"] * ivim_signal(b, S0["liver"], p.liver_f, p.liver_D, p.liver_Dstar)
            + tumour * ivim_signal(b, S0["tumour"], tumour_f, tumour_d, p.tumor_Dstar)
            for b in bvalues])
        return signal, fractions["tumour"]

    def t2wi(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        points = grid.voxel_centres()
        fractions = self.anatomy.tissue_fractions(points, grid.voxel_extent_mm)
        tumour = fractions["tumour"].sum(axis=0)
        signal = (fractions["body"] * T2["body"] + fractions["liver"] * T2["liver"]
                  + tumour * T2["tumour"] * self._tumour_modulation(points, 0.3))
        return signal, fractions["tumour"]

    def us_tissues(self, profile: Profile) -> tuple[dict, np.ndarray]:
        points = us_plane_points(self.anatomy, profile)
        voxel = (*profile.us_spacing, 0.0)
        return self.anatomy.tissue_fractions(points, voxel), points

    def echo_amplitude(self, fractions: dict, points) -> np.ndarray:
        """Grayscale echo amplitude, before speckle (100 × tissue echo)."""
        tumour = fractions["tumour"].sum(axis=0)
        tumour_echo = TUMOUR_ECHO[self.patient.echo] * self._tumour_modulation(points, 0.3)
        return ECHO_SCALE * (fractions["liver"] * ECHO["liver"] + fractions["body"] * ECHO["body"]
                             + tumour * tumour_echo)

    def ceus_frames(self, fractions: dict, points, echo: np.ndarray, times_s) -> np.ndarray:
        """Contrast signal per frame (t, y, x), before speckle."""
        tumour = fractions["tumour"].sum(axis=0)
        modulation = self._tumour_modulation(points, 0.3)
        frames = []
        for t in times_s:
            c = ceus_enhancement(t)
            enhancement = (fractions["liver"] * c + fractions["body"] * 0.3 * c
                           + tumour * tumour_ceus_multiplier(t, self.patient.washout) * c * modulation)
            frames.append(ECHO_SCALE * enhancement + CEUS_RESIDUAL * echo)
        return np.stack(frames)


def hand_contour(tumour_fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label map (z, y, x) uint8 from tumour fractions (T, z, y, x): truth is fraction ≥ 0.5, then
    each in-plane boundary voxel of each label is dropped with p = 0.15, never emptying a label."""
    labels = np.zeros(tumour_fractions.shape[1:], dtype=np.uint8)
    for index in range(tumour_fractions.shape[0]):
        labels[tumour_fractions[index] >= 0.5] = index + 1
    result = labels.copy()
    for label in range(1, tumour_fractions.shape[0] + 1):
        mask = labels == label
        padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=False)
        interior = (padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:])
        boundary = mask & ~interior
        drop = boundary & (rng.random(mask.shape) < ROI_DROP_PROBABILITY)
        if np.count_nonzero(mask & ~drop):
            result[drop] = 0
    return result
