"""How a case was acquired, measured the same way when a model is trained and when it predicts, and
the check of a case against the ranges its models were trained on.

A model trained on one centre's scanners may meet a grid, a slice thickness, a b-value scheme, a
noise level or a CEUS timing it never saw; it will still produce a number. Each package records, per
modality, the range of every measure over its training cohort (``acquisition_ranges``); prediction
measures the case and names each modality and measure that lies outside, in the result's warnings
and ``results.csv``. The models still run: the warning tells the reader how far to trust them.

Measures (from the images the networks read, so training and prediction agree by construction):
in-plane spacing and slice thickness (mm), in-plane matrix, an SNR estimate (median signal inside
the ROI over the noise SD of the whole image, by Immerkær's Laplacian estimator), the mean of the
normalised network input; for IVIM the b-value count and largest b-value; for CEUS the last frame's
time (the networks read three phase frames chosen by time, so the number of frames is not a measure
of what they see; packages that recorded it keep it unused).
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import torch

#: Relative slack around the range of a protocol measure (spacing, matrix, b-values, frame times),
#: so that a value written with rounding (5.0 vs 4.9999 mm) is not called different.
TOLERANCE = 0.02
#: Measures that vary from patient to patient under one protocol: a training cohort shows only part
#: of that spread, so their range is widened by half its width, and at least by 20 % of its middle.
IMAGE_STATISTICS = ("SNR", "mean normalised input")
_LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def noise_sd(image: sitk.Image) -> float:
    """Gaussian noise SD of an image by Immerkær's fast estimator (Comput Vis Image Underst 1996), on
    its middle slice: the Laplacian-difference kernel cancels smooth anatomy and keeps the noise."""
    values = sitk.GetArrayViewFromImage(image)
    plane = np.asarray(values[values.shape[0] // 2], dtype=np.float64)
    if plane.shape[0] < 3 or plane.shape[1] < 3:
        return math.nan
    filtered = sum(_LAPLACIAN[i, j] * plane[i:plane.shape[0] - 2 + i, j:plane.shape[1] - 2 + j]
                   for i in range(3) for j in range(3))
    height, width = plane.shape
    return float(math.sqrt(math.pi / 2) * np.abs(filtered).sum() / (6 * (width - 2) * (height - 2)))


def _grid_measures(image: sitk.Image, roi: sitk.Image) -> dict[str, float]:
    spacing, size = image.GetSpacing(), image.GetSize()
    measures = {"in-plane spacing (mm)": float(np.mean(spacing[:2])), "in-plane matrix": float(size[0] * size[1])}
    if size[2] > 1:
        measures["slice thickness (mm)"] = float(spacing[2])
    inside = sitk.GetArrayViewFromImage(roi) > 0
    noise = noise_sd(image)
    if inside.any() and noise > 0:
        measures["SNR"] = float(np.median(sitk.GetArrayViewFromImage(image)[inside]) / noise)
    return measures


def survival_measures(inputs) -> dict[str, dict[str, float]]:
    """Modality → measure → value for the survival networks' inputs of one case (``SurvivalInputs``)."""
    measures = {}
    for modality, present in inputs.present.items():
        if not present:
            continue
        measures[modality] = {**_grid_measures(inputs.sources[modality], inputs.rois[modality]),
                              "mean normalised input": float(inputs.images[modality].float().mean())}
    if "ceus" in measures:
        times = inputs.ceus_times
        measures["ceus"]["last CEUS frame (s)"] = float(times[-1])
    return measures


def ivim_measures(ivim) -> dict[str, dict[str, float]]:
    """The IVIM series' measures of one case (``IVIMInputs``)."""
    return {"ivim": {**_grid_measures(ivim.source, ivim.roi), "b-value count": float(len(ivim.bvalue_list)),
                     "largest b-value (s/mm²)": float(max(ivim.bvalue_list)),
                     "mean normalised input": float(torch.from_numpy(ivim.bvalues).mean())}}


def acquisition_ranges(cases: list[dict]) -> dict:
    """Modality → measure → [lowest, highest] over the measures of a training cohort's cases."""
    ranges: dict = {}
    for measures in cases:
        for modality, values in measures.items():
            for name, value in values.items():
                if math.isfinite(value):
                    low, high = ranges.setdefault(modality, {}).setdefault(name, [value, value])
                    ranges[modality][name] = [min(low, value), max(high, value)]
    return ranges


def outside_ranges(measures: dict, ranges: dict) -> list[str]:
    """One line per measure of the case outside its recorded range (with the slack of
    :data:`TOLERANCE` or :data:`IMAGE_STATISTICS`)."""
    lines = []
    for modality, values in measures.items():
        for name, value in values.items():
            if name not in ranges.get(modality, {}) or not math.isfinite(value):
                continue
            low, high = ranges[modality][name]
            if name in IMAGE_STATISTICS:
                slack = max(0.5 * (high - low), 0.1 * abs(high + low))
            else:
                slack = TOLERANCE * max(abs(low), abs(high))
            if not low - slack <= value <= high + slack:
                lines.append(f"{modality}: {name} {_shown(value)} is outside the training cohort's "
                             f"{_shown(low)}–{_shown(high)}")
    return lines


def _shown(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
