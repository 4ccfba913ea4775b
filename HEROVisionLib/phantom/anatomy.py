"""PHANTOM.md §3/§5: body, liver and tumours in world space, smooth random fields, and the tissue
fractions of any voxel grid.

Choices the spec leaves open (a careful physicist's, written down here):

* Tumour boundary ``g(u)``: 4–8 random plane waves on the sphere, ``a·cos(n·π·(w·u) + φ)`` with
  unit ``w``, order ``n`` ∈ {1, 2, 3}, ``a`` ∈ [0.5, 1]; centred to mean 0 and scaled to max |g| = 1
  over 2,000 Fibonacci directions (so the mean radius is R).
* Placement by rejection: candidate centres uniform in the liver; the *gap* is the smallest
  depth below the liver surface of 400 points of the tumour surface (exact point-to-ellipsoid
  distance). Largest tumour: gap in [1, 10] mm when ``subcapsular`` else > 10 mm; others: gap ≥ 1
  mm and ≥ 2 mm from every other tumour (centre distance ≥ sum of maximum radii + 2). When a large
  irregular tumour cannot satisfy this (rare: 5 cm, very irregular, not subcapsular), the
  candidate that violates it least is used.
* Random fields: white noise on a 1 mm world grid around the tumours smoothed by a Gaussian of
  σ = 2.5 mm, so the correlation is exp(−r²/25 mm²) (1/e at 5 mm), scaled to unit SD exactly by the
  kernel's energy; sampled trilinearly.
* Partial volume: tumour fractions by supersampling each voxel at ≤ 0.75 mm; liver and body by the
  first-order signed distance to their ellipsoid against the voxel's extent along the normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LIVER_SEMI_AXES_MM = np.array([70.0, 55.0, 40.0])
BODY_FILL = 0.90
FIELD_CORRELATION_SIGMA_MM = 2.5
FIELD_GRID_MM = 1.0
SUPERSAMPLE_MM = 0.75


def fibonacci_directions(n: int) -> np.ndarray:
    """n nearly uniform unit vectors (n, 3)."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * k / n)
    azimuth = np.pi * (1 + 5 ** 0.5) * k
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


_NORMALISE_DIRECTIONS = fibonacci_directions(2000)
_GAP_DIRECTIONS = fibonacci_directions(400)


def ellipsoid_depth(points: np.ndarray, centre: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    """Exact distance (mm) from each point to the surface of an axis-aligned ellipsoid: positive
    inside, negative outside (Eberly's root of Σ(e·y/(t+e²))² = 1, found by bisection)."""
    y = np.abs(np.asarray(points, float) - centre) + 1e-9
    e2 = semi_axes ** 2
    inside = np.sum((y / semi_axes) ** 2, axis=-1) <= 1.0
    low = np.full(y.shape[:-1], -e2.min() + 1e-12)
    high = np.where(inside, 0.0, semi_axes.max() * np.linalg.norm(y, axis=-1))
    for _ in range(45):  # the bracket (< e_min² ≤ 4900 mm²) shrinks below 1e-10 mm²
        t = (low + high) / 2
        f = np.sum((semi_axes * y / (t[..., None] + e2)) ** 2, axis=-1) - 1.0
        low = np.where(f > 0, t, low)
        high = np.where(f > 0, high, t)
    t = (low + high) / 2
    closest = e2 * y / (t[..., None] + e2)
    distance = np.linalg.norm(y - closest, axis=-1)
    return np.where(inside, distance, -distance)


def ellipsoid_partial_volume(points: np.ndarray, centre, semi_axes, voxel_mm) -> np.ndarray:
    """Fraction of each voxel inside an ellipsoid (first-order: planar boundary in the voxel)."""
    q = (points - centre) / semi_axes
    norm_q = np.linalg.norm(q, axis=-1)
    gradient = q / semi_axes
    norm_gradient = np.linalg.norm(gradient, axis=-1) + 1e-12
    signed_distance = (norm_q - 1.0) * norm_q / norm_gradient
    normal = gradient / norm_gradient[..., None]
    width = np.abs(normal) @ np.asarray(voxel_mm, float) + 1e-9
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0)


@dataclass(frozen=True)
class Tumour:
    """One irregular sphere: r(u) = R·(1 + 0.25·margin·g(u))."""

    label: int
    centre: np.ndarray
    mean_radius_mm: float
    irregularity: float  # 0.25·margin
    wave_directions: np.ndarray
    wave_orders: np.ndarray
    wave_phases: np.ndarray
    wave_amplitudes: np.ndarray
    g_offset: float
    g_scale: float

    @staticmethod
    def draw_shape(rng: np.random.Generator, mean_radius_mm: float, margin: float):
        """The boundary function's random parameters (no centre yet)."""
        k = int(rng.integers(4, 9))
        directions = rng.normal(size=(k, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        orders = rng.integers(1, 4, size=k)
        phases = rng.uniform(0, 2 * np.pi, size=k)
        amplitudes = rng.uniform(0.5, 1.0, size=k)
        raw = _waves(_NORMALISE_DIRECTIONS, directions, orders, phases, amplitudes)
        offset = float(raw.mean())
        scale = float(np.abs(raw - offset).max())
        return dict(mean_radius_mm=mean_radius_mm, irregularity=0.25 * margin, wave_directions=directions,
                    wave_orders=orders, wave_phases=phases, wave_amplitudes=amplitudes,
                    g_offset=offset, g_scale=scale)

    def g(self, unit: np.ndarray) -> np.ndarray:
        raw = _waves(unit, self.wave_directions, self.wave_orders, self.wave_phases, self.wave_amplitudes)
        return np.clip((raw - self.g_offset) / self.g_scale, -1.0, 1.0)

    def radius(self, unit: np.ndarray) -> np.ndarray:
        return self.mean_radius_mm * (1.0 + self.irregularity * self.g(unit))

    @property
    def max_radius_mm(self) -> float:
        return self.mean_radius_mm * (1.0 + self.irregularity)

    def inside(self, points: np.ndarray) -> np.ndarray:
        offset = points - self.centre
        distance = np.linalg.norm(offset, axis=-1)
        unit = offset / np.maximum(distance, 1e-9)[..., None]
        return distance <= self.radius(unit)

    def surface_points(self, centre=None) -> np.ndarray:
        centre = self.centre if centre is None else centre
        return centre + _GAP_DIRECTIONS * self.radius(_GAP_DIRECTIONS)[:, None]


def _waves(unit, directions, orders, phases, amplitudes) -> np.ndarray:
    projection = unit @ directions.T
    return np.sum(amplitudes * np.cos(orders * np.pi * projection + phases), axis=-1)


@dataclass(frozen=True)
class Anatomy:
    centre: np.ndarray
    body_semi_axes: np.ndarray
    liver_semi_axes: np.ndarray
    tumours: tuple[Tumour, ...]

    @property
    def largest(self) -> Tumour:
        return self.tumours[0]

    def tissue_fractions(self, points: np.ndarray, voxel_mm) -> dict[str, np.ndarray]:
        """Fractions of body (outside liver), liver (outside tumours) and each tumour per voxel.

        ``points``: voxel centres (..., 3); ``voxel_mm``: the voxel extent (0 along an axis for a
        thin ultrasound plane). Keys: 'air', 'body', 'liver', and 'tumour' (T, ...) by label order.
        """
        body = ellipsoid_partial_volume(points, self.centre, self.body_semi_axes, voxel_mm)
        liver = np.minimum(ellipsoid_partial_volume(points, self.centre, self.liver_semi_axes, voxel_mm), body)
        tumours = np.stack([_supersampled_fraction(t, points, voxel_mm) for t in self.tumours])
        tumour_total = np.minimum(tumours.sum(axis=0), liver)
        return {"air": 1.0 - body, "body": body - liver, "liver": liver - tumour_total, "tumour": tumours}


def _supersampled_fraction(tumour: Tumour, points: np.ndarray, voxel_mm) -> np.ndarray:
    voxel = np.asarray(voxel_mm, float)
    fraction = np.zeros(points.shape[:-1])
    near = np.all(np.abs(points - tumour.centre) <= tumour.max_radius_mm + voxel / 2 + 1e-6, axis=-1)
    if not near.any():
        return fraction
    counts = [max(1, int(np.ceil(v / SUPERSAMPLE_MM))) for v in voxel]
    axes = [((np.arange(n) + 0.5) / n - 0.5) * v for n, v in zip(counts, voxel)]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    samples = points[near][:, None, :] + offsets[None]
    fraction[near] = tumour.inside(samples).mean(axis=1)
    return fraction


def _candidate_centres(rng, n, centre, semi_axes) -> np.ndarray:
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = rng.random(n) ** (1.0 / 3.0)
    return centre + semi_axes * direction * radius[:, None]


def _gaps(shape: Tumour, centres: np.ndarray, liver_centre, liver_axes) -> np.ndarray:
    surface = centres[:, None, :] + (_GAP_DIRECTIONS * shape.radius(_GAP_DIRECTIONS)[:, None])[None]
    return ellipsoid_depth(surface, liver_centre, liver_axes).min(axis=1)


def _place(rng, shape: Tumour, liver_centre, liver_axes, low, high, others, rounds=20, batch=128):
    """Centre for ``shape`` with gap in [low, high] and clear of ``others``; least violation if none."""
    best, best_violation = None, np.inf
    for _ in range(rounds):
        centres = _candidate_centres(rng, batch, liver_centre, liver_axes)
        gaps = _gaps(shape, centres, liver_centre, liver_axes)
        violation = np.maximum(low - gaps, 0) + np.maximum(gaps - high, 0)
        for other in others:
            clearance = np.linalg.norm(centres - other.centre, axis=1) - (
                shape.max_radius_mm + other.max_radius_mm + 2.0)
            violation += np.maximum(-clearance, 0)
        ok = np.flatnonzero(violation == 0)
        if len(ok):
            return centres[ok[0]]
        if violation.min() < best_violation:
            best, best_violation = centres[np.argmin(violation)], violation.min()
    return best


def draw_anatomy(rng: np.random.Generator, patient, ivim_grid) -> Anatomy:
    """Body and liver centred on the IVIM field of view; tumours placed per §5."""
    centre = ivim_grid.centre
    body_axes = BODY_FILL * ivim_grid.field_mm / 2.0
    largest_radius = 5.0 * patient.diameter_cm
    radii = [largest_radius] + [largest_radius / 2.0] * (patient.tumor_number - 1)
    shapes = [Tumour.draw_shape(rng, r, patient.margin) for r in radii]
    tumours = []
    for label, shape in enumerate(shapes, start=1):
        draft = Tumour(label=label, centre=centre, **shape)
        if label == 1:
            low, high = (1.0, 10.0) if patient.subcapsular else (10.0 + 1e-6, np.inf)
        else:
            low, high = 1.0, np.inf
        position = _place(rng, draft, centre, LIVER_SEMI_AXES_MM, low, high, tumours)
        tumours.append(Tumour(label=label, centre=position, **shape))
    return Anatomy(centre, body_axes, LIVER_SEMI_AXES_MM.copy(), tuple(tumours))


@dataclass(frozen=True)
class RandomField:
    """A smooth unit-SD Gaussian field on a world box, sampled trilinearly (0 outside the box)."""

    origin: np.ndarray
    values: np.ndarray  # (x, y, z) on a FIELD_GRID_MM grid

    def __call__(self, points: np.ndarray) -> np.ndarray:
        index = ((points - self.origin) / FIELD_GRID_MM).reshape(-1, 3).T
        sampled = ndimage.map_coordinates(self.values, index, order=1, mode="constant", cval=0.0)
        return sampled.reshape(points.shape[:-1])


def draw_fields(rng: np.random.Generator, anatomy: Anatomy) -> tuple[RandomField, RandomField]:
    """(F, G): F modulates tumour D, T2, echo and CEUS enhancement; G modulates tumour f."""
    pad = 4.0 * FIELD_CORRELATION_SIGMA_MM
    low = np.min([t.centre - t.max_radius_mm for t in anatomy.tumours], axis=0) - pad
    high = np.max([t.centre + t.max_radius_mm for t in anatomy.tumours], axis=0) + pad
    shape = tuple(int(np.ceil(s)) + 1 for s in (high - low) / FIELD_GRID_MM)
    sigma = FIELD_CORRELATION_SIGMA_MM / FIELD_GRID_MM
    impulse = np.zeros(int(8 * sigma) * 2 + 1)
    impulse[len(impulse) // 2] = 1.0
    kernel_energy = float(np.sum(ndimage.gaussian_filter1d(impulse, sigma, mode="constant") ** 2))
    fields = []
    for _ in range(2):
        noise = rng.standard_normal(shape)
        smooth = ndimage.gaussian_filter(noise, sigma, mode="wrap") / kernel_energy ** 1.5
        fields.append(RandomField(low, smooth))
    return fields[0], fields[1]
