"""From a case folder to the survival networks' inputs, keeping every crop's geometry for the way back.

HEROVision (survival) reads 11 single-channel images per patient: T2WI ×3 and DWI ×3 (largest
tumour slice and its neighbours), grayscale US ×2 (a close view and a context view — the phantom,
like many exams, has one US plane) and CEUS ×3 (arterial, portal and late frames, by acquisition
time), each centred on the tumour over a fixed field in mm (larger only for a tumour that would not
fit), so a pixel has one size whatever the scanner and the tumour's size is part of the image. Intensities are scaled per modality to
[0, 1] by the 0.5th–99.5th percentiles over that modality's crops together, so the contrast between
slices or phases is kept.

The IVIM model's inputs are made in :mod:`.ivim_crops`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import HEROVisionError
from ..io.case import Case
from ..io.ceus import select_phase_frames
from ..io.geometry import check_roi_contrast
from ..io.images import vector_frame
from .crops import Crop, slice_crops

#: The survival networks' images per modality, in input order (slices, US views, CEUS phases).
MODALITY_IMAGES = {"t2wi": 3, "dwi": 3, "us": 2, "ceus": 3}
#: How the survival networks' images are made; each package records the block it was trained with
#: (``image_size`` in pixels, the US crops' ``us_margins`` around the tumour's box, the intensity
#: ``percentiles`` mapped to 0 and 1, and ``fields_mm``: each modality's fixed crop field — for US
#: its two views — so that a pixel is the same length whatever the scanner's grid and the tumour's
#: size is seen; a tumour larger than the field widens its crop) and is scored with its own.
#: Packages without ``fields_mm`` crop the tumour's box with its margin.
SURVIVAL_PREPROCESSING = {"image_size": 128, "us_margins": [0.25, 1.0], "percentiles": [0.5, 99.5],
                          "fields_mm": {"t2wi": 80.0, "dwi": 80.0, "us": [40.0, 72.0], "ceus": 40.0}}


@dataclass
class SurvivalInputs:
    """The 11 images (per modality a (k, H, W) tensor, zeros when absent) and their crops."""

    images: dict[str, torch.Tensor]
    present: dict[str, bool]
    crops: dict[str, list[Crop]] = field(default_factory=dict)
    sources: dict[str, sitk.Image] = field(default_factory=dict)  # the grid each modality's overlay lands on
    rois: dict[str, sitk.Image] = field(default_factory=dict)  # each modality's ROI on that grid
    missing: dict[str, str] = field(default_factory=dict)
    ceus_times: tuple[float, ...] = ()  # every CEUS frame's time (s), when CEUS is used


def _modality_crops(case: Case, modality: str, size: int, us_margins,
                    fields_mm: dict | None) -> tuple[list[Crop], sitk.Image, sitk.Image, tuple]:
    """(crops, the image the overlay lands on, the ROI on that image, the CEUS frame times or ())."""
    roi_path = case.roi_path(modality)
    field = (fields_mm or {}).get(modality)
    if modality in ("t2wi", "dwi"):
        image = case.load_image(modality)
        roi = case.load_roi(modality, image)
        check_roi_contrast(image, roi, case.image_path(modality))
        return slice_crops(image, roi, size=size, neighbours=1, field_mm=field, source=case.image_path(modality),
                           roi_source=roi_path), image, roi, ()
    if modality == "us":
        image = case.load_image("us")
        roi = case.load_roi("us", image)
        check_roi_contrast(image, roi, case.image_path("us"))
        crops = [slice_crops(image, roi, size=size, neighbours=0, margin=margin, field_mm=view,
                             source=case.image_path("us"), roi_source=roi_path)[0]
                 for margin, view in zip(us_margins, field or [None] * len(us_margins))]
        return crops, image, roi, ()
    series = case.load_image("ceus")
    first = vector_frame(series, 0)  # a cine has hundreds of frames: only the ones used are taken out
    roi = case.load_roi("ceus", first)
    check_roi_contrast(series, roi, case.image_path("ceus"))
    times = case.load_ceus_times(series)
    phases = select_phase_frames(times, source=case.frame_times_source)
    crops = [slice_crops(vector_frame(series, index), roi, size=size, neighbours=0, field_mm=field,
                         source=case.image_path("ceus"), roi_source=roi_path)[0] for index in phases.values()]
    return crops, first, roi, times


def _scaled(crops: list[Crop], percentiles) -> torch.Tensor:
    values = np.stack([sitk.GetArrayViewFromImage(crop.image)[0] for crop in crops]).astype(np.float32)
    low, high = np.percentile(values, percentiles)
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return torch.from_numpy(np.clip(scaled, 0.0, 1.0).astype(np.float32))


def survival_inputs(case: Case, preprocessing: dict = SURVIVAL_PREPROCESSING) -> SurvivalInputs:
    """Crops of every available modality, made as ``preprocessing`` (a package's recorded block) says;
    a modality that is missing or unusable is reported, not fatal."""
    size = preprocessing["image_size"]
    us_margins = preprocessing.get("us_margins", SURVIVAL_PREPROCESSING["us_margins"])
    percentiles = preprocessing.get("percentiles", SURVIVAL_PREPROCESSING["percentiles"])
    missing = dict(case.missing())
    inputs = SurvivalInputs({}, {}, missing=missing)
    for modality, count in MODALITY_IMAGES.items():
        inputs.images[modality] = torch.zeros(count, size, size)
        inputs.present[modality] = False
        if modality in missing:
            continue
        try:
            crops, source, roi, times = _modality_crops(case, modality, size, us_margins,
                                                        preprocessing.get("fields_mm"))
        except HEROVisionError as error:
            missing[modality] = str(error)
            continue
        inputs.images[modality] = _scaled(crops, percentiles)
        inputs.present[modality] = True
        inputs.crops[modality], inputs.sources[modality], inputs.rois[modality] = crops, source, roi
        inputs.ceus_times = times or inputs.ceus_times
    return inputs
