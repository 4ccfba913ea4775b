"""Tumour-centred crops, the network inputs, defined in physical space.

Every crop is a ``SimpleITK.Image`` that keeps its own world geometry, so anything computed on it
(an attention map) can be resampled back onto the source grid and overlays exactly.

* :func:`voi_crop` — fixed-size 3-D block on a world-aligned isotropic grid centred on the VOI
  (the IVIM network input: 64³). Axis flips, permutations, obliquity and voxel size of the source
  do not change it beyond interpolation.
* :func:`slice_crops` — the slice of largest tumour area and its neighbours (T2WI, DWI), or the
  ROI's bounding box of a single-slice image (US), as square in-plane crops.

Layer: transforms (above io and ivim). CEUS phase selection, a reading of the acquisition, is
:mod:`HEROVisionLib.io.ceus`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..io.geometry import indices_to_world, label_centroid, resample_labels, resample_roi_to
from ..io.images import promote_to_3d

@dataclass(frozen=True)
class Crop:
    """A crop of an image and its ROI on the same crop grid."""

    image: sitk.Image
    roi: sitk.Image


def _resample(image: sitk.Image, reference: sitk.Image, interpolator=sitk.sitkLinear) -> sitk.Image:
    pixel = sitk.sitkVectorFloat32 if image.GetNumberOfComponentsPerPixel() > 1 else sitk.sitkFloat32
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, pixel)


def _grid(origin, spacing, direction, size) -> sitk.Image:
    reference = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    reference.SetOrigin([float(v) for v in origin])
    reference.SetSpacing([float(v) for v in spacing])
    reference.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return reference


def voi_crop(image: sitk.Image, roi: sitk.Image, *, label: int = 1, size: int = 64,
             spacing_mm: float = 1.5, source="image", roi_source="ROI") -> Crop:
    """A ``size``³ block at isotropic ``spacing_mm`` on world axes, centred on the VOI.

    ``image`` may be scalar or vector (all b-values at once). Outside the source image the crop
    is 0. The ROI comes back on the crop grid as label fractions ≥ 0.5.
    """
    image = promote_to_3d(image)
    roi_on_image = resample_roi_to(promote_to_3d(roi), image, roi_source, source)
    centre = label_centroid(roi_on_image, label, roi_source)  # stabler under resampling than a box centre
    spacing = np.full(3, float(spacing_mm))
    origin = centre - spacing * (size - 1) / 2.0
    reference = _grid(origin, spacing, np.eye(3), (size, size, size))
    # A tumour larger than the crop's field is clipped by it, not refused.
    return Crop(_resample(image, reference), resample_labels(roi_on_image, reference))


def on_crop_grid(image: sitk.Image, crop: Crop) -> sitk.Image:
    """``image`` (scalar or vector) cut as ``crop`` was: resampled onto the crop's grid, 0 outside
    the image. For another image of the same acquisition (maps fitted on the cropped series)."""
    return _resample(promote_to_3d(image), crop.roi)


def largest_area_slice(roi: sitk.Image, label: int = 1) -> int:
    """Index (along the image's third axis) of the slice where ``label`` covers most voxels."""
    counts = (sitk.GetArrayViewFromImage(roi) == label).sum(axis=(1, 2))
    return int(np.argmax(counts))


def slice_crops(image: sitk.Image, roi: sitk.Image, *, label: int = 1, size: int = 128,
                neighbours: int = 1, margin: float = 0.25, field_mm: float | None = None, source="image",
                roi_source="ROI") -> list[Crop]:
    """Square in-plane crops of the largest-area slice and ``neighbours`` slices each side.

    The crop square is centred on the label's in-plane bounding box (over the chosen slices) and
    covers that box enlarged by ``margin`` on each side — or, with ``field_mm``, a fixed field of
    that many mm (the box with its margin when larger), so that one pixel is the same length in
    every image and the tumour's size shows — in the image's own acquisition plane; slices beyond
    the volume repeat the edge slice. With ``neighbours=0`` on a one-slice image this is the US crop.
    """
    image = sitk.DICOMOrient(promote_to_3d(image), "LPS")
    roi_on_image = sitk.DICOMOrient(resample_roi_to(promote_to_3d(roi), image, roi_source, source), "LPS")
    centre_slice = largest_area_slice(roi_on_image, label)
    depth = image.GetSize()[2]
    slices = [min(max(centre_slice + offset, 0), depth - 1) for offset in range(-neighbours, neighbours + 1)]

    labelled = sitk.GetArrayViewFromImage(roi_on_image)[sorted(set(slices))] == label
    yx = np.argwhere(labelled.any(axis=0))
    low, high = yx.min(axis=0)[::-1] - 0.5, yx.max(axis=0)[::-1] + 0.5  # voxel edges, (x, y)
    in_plane_spacing = np.asarray(image.GetSpacing()[:2])
    extent_mm = (high - low) * in_plane_spacing
    side_mm = float(extent_mm.max() * (1.0 + 2.0 * margin))
    if field_mm is not None:
        side_mm = max(side_mm, float(field_mm))
    centre_xy = (low + high) / 2.0
    crop_spacing = side_mm / size
    direction = np.asarray(image.GetDirection()).reshape(3, 3)

    crops = []
    for k in slices:
        centre_world = indices_to_world(image, np.array([[centre_xy[0], centre_xy[1], k]]))[0]
        offset = direction[:, :2] @ np.full(2, crop_spacing * (size - 1) / 2.0)
        reference = _grid(centre_world - offset, (crop_spacing, crop_spacing, image.GetSpacing()[2]),
                          direction, (size, size, 1))
        crop_image = _resample(image, reference)
        crop_roi = sitk.Resample(roi_on_image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                 sitk.sitkUInt8)
        crops.append(Crop(crop_image, crop_roi))
    return crops
