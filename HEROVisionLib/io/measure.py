"""Tumour size and volume measured from an ROI, as a radiologist reports them.

Size is the largest *in-plane* edge-to-edge diameter over the slices of the ROI's own
acquisition plane (the longest axial diameter of the reporting guidelines), measured on the union
of the voxel squares, in physical units, so spacing and axis flips do not change it.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


def _largest_slice_diameter_mm(pixels_xy: np.ndarray, spacing_xy) -> float:
    corners = (pixels_xy[:, None, :] + _CORNERS[None]).reshape(-1, 2) * np.asarray(spacing_xy)
    corners = np.unique(corners, axis=0)
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    hull = corners[ConvexHull(corners).vertices]
    return float(pdist(hull).max())


def largest_axial_diameter_cm(roi: sitk.Image, label: int = 1, source="ROI") -> float:
    """Largest in-plane edge-to-edge diameter of ``label`` over all slices, in cm (unrounded)."""
    array = sitk.GetArrayViewFromImage(roi)
    spacing = roi.GetSpacing()
    largest = 0.0
    for z in range(array.shape[0]):
        yx = np.argwhere(array[z] == label)
        if len(yx):
            largest = max(largest, _largest_slice_diameter_mm(yx[:, ::-1].astype(float), spacing[:2]))
    if largest == 0.0:
        raise InputError(source, f"ROI label {label} is empty")
    return largest / 10.0


def volume_ml(roi: sitk.Image, label: int = 1, source="ROI") -> float:
    """Volume of ``label`` in millilitres (voxel count × voxel volume)."""
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(roi) == label))
    if count == 0:
        raise InputError(source, f"ROI label {label} is empty")
    return count * float(np.prod(roi.GetSpacing())) / 1000.0
