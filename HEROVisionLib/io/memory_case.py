"""A case held in memory — images already loaded, e.g. taken from Slicer's scene — with the same
interface as a case folder (:class:`~HEROVisionLib.io.case.Case`), so prediction runs on either.

Sources are named (a node's name, "tumour segment on T2WI") instead of file paths, so every error
message still says which input is wrong. The same checks apply: finite voxels, b-values matching
the volumes, ROIs overlapping their images in physical space and not empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from ..errors import InputError
from .case import MODALITIES, MULTIFRAME
from .diffusion import DiffusionSeries, validate_bvalues
from .geometry import case_roi_on
from .images import check_finite, promote_to_3d


@dataclass
class MemoryCase:
    """``images``: modality → image (IVIM as a :class:`DiffusionSeries`, CEUS as a vector image);
    ``rois``: modality → label map; ``sources``: modality → a name for messages (defaults to the
    modality); ``ceus_times``: CEUS frame times in seconds."""

    case_id: str
    images: dict = field(default_factory=dict)
    rois: dict = field(default_factory=dict)
    ceus_times: tuple[float, ...] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    clinical: dict | None = None

    def __post_init__(self):
        unknown = (set(self.images) | set(self.rois)) - set(MODALITIES)
        if unknown:
            raise InputError(self.case_id, f"unknown modality {sorted(unknown)}; expected {', '.join(MODALITIES)}")
        series = self.images.get("ivim")
        if series is not None:
            validate_bvalues(series.bvalues, series.n_frames, self.image_path("ivim"))
        for modality, image in self.images.items():
            check_finite(image.image if isinstance(image, DiffusionSeries) else image, self.image_path(modality))

    @property
    def folder(self) -> str:
        return self.case_id

    @property
    def frame_times_source(self) -> str:
        return f"frame times of {self.image_path('ceus')}"

    def image_path(self, modality: str) -> str:
        return self.sources.get(modality, modality)

    def roi_path(self, modality: str) -> str:
        return self.sources.get(f"{modality}_roi", f"tumour segment on {self.image_path(modality)}")

    def missing(self) -> dict[str, str]:
        reasons = {}
        for modality in MODALITIES:
            if modality not in self.images:
                reasons[modality] = "no image"
            elif modality not in self.rois:
                reasons[modality] = f"{self.image_path(modality)} has no tumour segment"
            elif modality == "ceus" and not self.ceus_times:
                reasons[modality] = "CEUS frame times are missing"
        return reasons

    @property
    def available(self) -> tuple[str, ...]:
        missing = self.missing()
        return tuple(m for m in MODALITIES if m not in missing)

    def _require(self, modality: str) -> None:
        reason = self.missing().get(modality)
        if reason:
            raise InputError(self.image_path(modality), f"case {self.case_id}: {modality} unavailable ({reason})")

    def load_image(self, modality: str) -> sitk.Image:
        self._require(modality)
        image = self.images[modality]
        if isinstance(image, DiffusionSeries):
            return image.image
        return image if modality in MULTIFRAME else promote_to_3d(image)

    def load_ivim(self) -> DiffusionSeries:
        self._require("ivim")
        return self.images["ivim"]

    def load_ceus_times(self, series: sitk.Image | None = None) -> tuple[float, ...]:
        """The CEUS frame times, exactly one per frame (as :meth:`Case.load_ceus_times`)."""
        series = self.load_image("ceus") if series is None else series
        frames = series.GetNumberOfComponentsPerPixel()
        if len(self.ceus_times) != frames:
            raise InputError(self.frame_times_source, f"{len(self.ceus_times)} frame time(s) for {frames} CEUS "
                                                      "frame(s): one time per frame is needed")
        return tuple(self.ceus_times)

    def load_roi(self, modality: str, image: sitk.Image | None = None) -> sitk.Image:
        self._require(modality)
        image = self.load_image(modality) if image is None else image
        return case_roi_on(promote_to_3d(self.rois[modality]), image, self.roi_path(modality),
                               self.image_path(modality))
