"""Geometry in physical space: ROIs onto images, overlap, centroids.

Everything here works in world coordinates (ITK/LPS: ``world = origin + direction·(spacing⊙index)``),
never in index space, so a flipped, permuted, oblique or differently sampled volume gives the same
physical answer.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

_TOLERANCE_MM = 1e-3


def index_to_world_matrix(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(A, origin) with world = A @ index + origin, A = direction·diag(spacing)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return direction @ np.diag(image.GetSpacing()), np.asarray(image.GetOrigin(), dtype=float)


def indices_to_world(image: sitk.Image, indices_xyz: np.ndarray) -> np.ndarray:
    """World coordinates (N, 3) of continuous (x, y, z) indices (N, 3)."""
    matrix, origin = index_to_world_matrix(image)
    return np.asarray(indices_xyz, dtype=float) @ matrix.T + origin


def world_to_indices(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Continuous (x, y, z) indices (N, 3) of world points (N, 3)."""
    matrix, origin = index_to_world_matrix(image)
    return (np.asarray(points, dtype=float) - origin) @ np.linalg.inv(matrix).T


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True when both images sample exactly the same voxel centres."""
    if a.GetSize() != b.GetSize():
        return False
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in a.GetSize()])), dtype=float)
    return bool(np.allclose(indices_to_world(a, corners), indices_to_world(b, corners), atol=_TOLERANCE_MM))


def world_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box (min, max) of the image's field of view (voxel edges)."""
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in image.GetSize()])))
    world = indices_to_world(image, corners)
    return world.min(axis=0), world.max(axis=0)


def label_world_points(roi: sitk.Image, label: int) -> np.ndarray:
    """World coordinates (N, 3) of the centres of the voxels holding ``label``."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(roi) == label)
    return indices_to_world(roi, zyx[:, ::-1])


def label_centroid(roi: sitk.Image, label: int = 1, source="ROI") -> np.ndarray:
    """World centroid of a label (mm)."""
    points = label_world_points(roi, label)
    if len(points) == 0:
        raise InputError(source, f"ROI label {label} is empty")
    return points.mean(axis=0)


def labels_present(roi: sitk.Image) -> list[int]:
    values = sitk.GetArrayViewFromImage(roi)
    if values.dtype == np.uint8:  # every ROI as read: counting each value is quicker than sorting them
        return [int(v) for v in np.flatnonzero(np.bincount(values.ravel())[1:]) + 1]
    return [int(v) for v in np.unique(values) if v != 0]


def _inside_fraction(image: sitk.Image, points: np.ndarray) -> float:
    indices = world_to_indices(image, points)
    size = np.asarray(image.GetSize(), dtype=float)
    slack = 0.5 + 1e-6  # a voxel centre may sit up to half a voxel inside the field's edge
    inside = np.all((indices >= -slack) & (indices <= size - 1 + slack), axis=1)
    return float(inside.mean())


def check_roi_against_image(roi: sitk.Image, image: sitk.Image, roi_source, image_source) -> None:
    """Refuse an empty ROI, one whose grid misses the image, or tumour voxels outside the image."""
    labels = labels_present(roi)
    if not labels:
        raise InputError(roi_source, "ROI is empty (no voxel labelled)")
    roi_min, roi_max = world_bounds(roi)
    image_min, image_max = world_bounds(image)
    if np.any(roi_max < image_min - _TOLERANCE_MM) or np.any(roi_min > image_max + _TOLERANCE_MM):
        raise InputError(roi_source, f"ROI and image {image_source} do not overlap in physical space "
                                     f"(ROI spans {np.round(roi_min, 1)}–{np.round(roi_max, 1)} mm, "
                                     f"image {np.round(image_min, 1)}–{np.round(image_max, 1)} mm): "
                                     "wrong file, or origin/direction lost on export?")
    zyx = np.argwhere(sitk.GetArrayViewFromImage(roi) != 0)
    points = indices_to_world(roi, zyx[:, ::-1])
    inside = _inside_fraction(image, points)
    if inside < 1.0:
        raise InputError(roi_source, f"ROI outside the image {image_source}: {100 * (1 - inside):.1f}% "
                                     "of the ROI voxels lie outside its field of view")


def resample_roi_to(roi: sitk.Image, image: sitk.Image, roi_source="ROI", image_source="image") -> sitk.Image:
    """The label map ``roi`` on the voxel grid of ``image``, through physical space.

    Each label's indicator is interpolated linearly at the image's voxel centres and a voxel takes
    the label whose value there is at least 0.5 (the highest if several), so the ROI keeps its
    physical extent on a finer or coarser grid. An ROI already on the image grid is returned as it
    is. The result is never empty.
    """
    check_roi_against_image(roi, image, roi_source, image_source)
    result = resample_labels(roi, image)
    if not sitk.GetArrayViewFromImage(result).any():
        raise InputError(roi_source, f"ROI vanishes on the grid of {image_source}: it is smaller than half "
                                     "a voxel of that image")
    return result


#: A case's ROIs label its largest tumour 1 (others 2, 3, …; PHANTOM.md §4): the tumour the models score.
INDEX_TUMOUR_LABEL = 1


def case_roi_on(roi: sitk.Image, image: sitk.Image, roi_source="ROI", image_source="image") -> sitk.Image:
    """A case ROI on its image's grid (:func:`resample_roi_to`); refused unless the largest tumour,
    label 1, is there."""
    result = resample_roi_to(roi, image, roi_source, image_source)
    if not (sitk.GetArrayViewFromImage(result) == INDEX_TUMOUR_LABEL).any():
        found = labels_present(roi)
        if INDEX_TUMOUR_LABEL in found:
            raise InputError(roi_source, f"label 1 (the largest tumour) vanishes on the grid of {image_source}: "
                                         "it is smaller than half a voxel of that image")
        raise InputError(roi_source, "no voxel labelled 1: a case's ROI labels its largest tumour 1 (the one "
                                     f"the models score; others 2, 3, …); labels found: {', '.join(map(str, found))}")
    return result


def resample_labels(roi: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``roi`` on the grid of ``reference`` without checks: labels beyond that grid are clipped."""
    if same_grid(roi, reference):
        result = sitk.Image(roi)
        result.CopyInformation(reference)
        return result
    labels = labels_present(roi)
    best_fraction = np.zeros(reference.GetSize()[::-1], dtype=np.float32)
    result = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)
    for label in labels:
        indicator = sitk.Cast(roi == label, sitk.sitkFloat32)
        fraction = sitk.GetArrayFromImage(
            sitk.Resample(indicator, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        wins = (fraction >= 0.5) & (fraction > best_fraction)
        result[wins] = label
        best_fraction = np.maximum(best_fraction, fraction)
    out = sitk.GetImageFromArray(result)
    out.CopyInformation(reference)
    return out


def check_roi_contrast(image: sitk.Image, roi: sitk.Image, source) -> None:
    """Refuse an image (any frame count) whose voxels inside the ROI all hold one value: a constant,
    blank or background-only image carries nothing a model could read as a tumour."""
    inside = sitk.GetArrayViewFromImage(roi) > 0
    values = sitk.GetArrayViewFromImage(image)[inside]
    if values.size and values.min() == values.max():
        raise InputError(source, f"no contrast inside the ROI (every voxel there is {float(values.flat[0]):g}): "
                                 "a constant or blank image")
