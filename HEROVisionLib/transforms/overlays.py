"""Attention maps back onto the images they explain.

A map is computed on a crop's grid; each crop keeps its world geometry, so the map is resampled
(linear) onto the source image's own grid — same origin, spacing and direction as the volume the
user loaded — and overlays it exactly in any viewer, whatever the source's axis order, flips or
obliquity. Several crops of one image (neighbouring slices, CEUS phases) are merged by maximum;
voxels outside every crop are 0.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .crops import Crop


def overlay_on_source(maps, crops: list[Crop], source: sitk.Image) -> sitk.Image:
    """``maps[i]`` (array shaped like crop i, without the singleton slice axis if 2-D) → one float32
    image on ``source``'s grid."""
    merged = np.zeros(source.GetSize()[::-1], dtype=np.float32)
    for values, crop in zip(maps, crops):
        geometry = crop.roi  # scalar, on the crop grid
        image = sitk.GetImageFromArray(np.asarray(values, dtype=np.float32).reshape(geometry.GetSize()[::-1]))
        image.CopyInformation(geometry)
        on_source = sitk.Resample(image, source, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        merged = np.maximum(merged, sitk.GetArrayViewFromImage(on_source))
    result = sitk.GetImageFromArray(merged)
    result.CopyInformation(source)
    return result
