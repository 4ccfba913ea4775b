"""A plain-text account of what a case folder holds: modalities, geometry, ROIs, tumour size.

It is the first thing to run on a site's own data: it reads every input through the same
readers and checks as prediction does, so layout mistakes surface before any model runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import HEROVisionError
from .case import MODALITIES, Case
from .ceus import select_phase_frames
from .measure import largest_axial_diameter_cm, volume_ml


@dataclass
class ModalitySummary:
    modality: str
    size: tuple[int, ...] = ()
    spacing_mm: tuple[float, ...] = ()
    frames: str = ""
    tumour_diameter_cm: float | None = None
    tumour_volume_ml: float | None = None
    labels: int = 0
    problem: str = ""


@dataclass
class CaseSummary:
    case_id: str
    modalities: list[ModalitySummary] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"case {self.case_id}"]
        for m in self.modalities:
            if m.problem:
                out.append(f"  {m.modality:5s} unavailable: {m.problem}")
                continue
            grid = " × ".join(str(n) for n in m.size) + " voxels at " + \
                " × ".join(f"{s:g}" for s in m.spacing_mm) + " mm"
            out.append(f"  {m.modality:5s} {grid}{'; ' + m.frames if m.frames else ''}")
            volume = f", {m.tumour_volume_ml:.2f} mL" if m.tumour_volume_ml is not None else ""
            out.append(f"        tumour (label 1): {m.tumour_diameter_cm:.1f} cm largest axial diameter"
                       f"{volume}; {m.labels} tumour label(s)")
        return out


def summarise_case(case: Case) -> CaseSummary:
    """Read every modality of ``case`` (all checks applied) and measure its ROI."""
    summary = CaseSummary(case.case_id)
    missing = case.missing()
    for modality in MODALITIES:
        if modality in missing:
            summary.modalities.append(ModalitySummary(modality, problem=missing[modality]))
            continue
        try:
            summary.modalities.append(_summarise_modality(case, modality))
        except HEROVisionError as error:
            summary.modalities.append(ModalitySummary(modality, problem=str(error)))
    return summary


def _summarise_modality(case: Case, modality: str) -> ModalitySummary:
    frames = ""
    if modality == "ivim":
        series = case.load_ivim()
        image = series.image
        frames = "b = " + ", ".join(f"{b:g}" for b in series.bvalues) + " s/mm²"
    else:
        image = case.load_image(modality)
    if modality == "ceus":
        times = case.load_ceus_times(image)
        phases = select_phase_frames(times, source=case.frame_times_source)
        frames = f"{len(times)} frames; " + ", ".join(f"{p} {times[i]:g} s" for p, i in phases.items())
    roi = case.load_roi(modality, image)
    spatial = image.GetSize()
    size = spatial[:2] if spatial[2] == 1 else spatial
    return ModalitySummary(
        modality, size=tuple(size), spacing_mm=tuple(image.GetSpacing()[: len(size)]), frames=frames,
        tumour_diameter_cm=largest_axial_diameter_cm(roi, 1, case.roi_path(modality)),
        tumour_volume_ml=volume_ml(roi, 1, case.roi_path(modality)) if spatial[2] > 1 else None,
        labels=int(np.count_nonzero(np.unique(sitk.GetArrayViewFromImage(roi)))))
