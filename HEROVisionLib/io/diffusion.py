"""Diffusion series: the b-value volumes and their b-values, from any of the usual sources.

b-values come from, in this order of preference:

1. an FSL ``.bval`` file beside the image (whitespace separated, in volume order);
2. the NRRD header: ``DWMRI_b-value`` with ``DWMRI_gradient_NNNN`` (b = b_max·|g|², the NA-MIC
   DWI convention) or a Slicer multi-volume's ``MultiVolume.FrameLabels``;
3. a DICOM folder: what dcm2niix reads from its diffusion attributes (the standard (0018,9087) and
   every vendor's convention; see :mod:`.dicom_folder`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .dicom_folder import read_dicom_folder
from .images import frames_to_vector, read_multiframe, write_multiframe, write_text_atomic
from .numbers import plain_numbers


@dataclass(frozen=True)
class DiffusionSeries:
    """A diffusion-weighted series: a vector volume (one component per b) and its b-values (s/mm²)."""

    image: sitk.Image
    bvalues: tuple[float, ...]
    source: str

    @property
    def n_frames(self) -> int:
        return self.image.GetNumberOfComponentsPerPixel()


#: Liver IVIM uses b ≤ 1000–2000 s/mm², research sequences rarely pass 10 000; a larger value is
#: a unit mistake (s/m², or a scaled header field), not an acquisition.
MAX_BVALUE = 10_000.0


def validate_bvalues(bvalues, n_volumes: int, source) -> tuple[float, ...]:
    """Check b-values against the series: same count, finite, non-negative, plausible, no duplicates."""
    values = [float(b) for b in bvalues]
    if len(values) != n_volumes:
        raise InputError(source, f"{len(values)} b-values for {n_volumes} volumes: "
                                 "each volume needs exactly one b-value")
    if not all(math.isfinite(b) and b >= 0 for b in values):
        raise InputError(source, f"b-values must be finite and ≥ 0, found {values}")
    if max(values, default=0) > MAX_BVALUE:
        raise InputError(source, f"b-value {max(values):g} s/mm² is beyond any clinical diffusion sequence "
                                 f"(at most {MAX_BVALUE:g}): are they in s/mm²?")
    duplicates = sorted({b for b in values if values.count(b) > 1})
    if duplicates:
        raise InputError(source, f"duplicate b-value(s) {duplicates}: average repeated acquisitions "
                                 "(or directions) into one volume per b-value first")
    return tuple(values)


def read_bval_file(path) -> tuple[float, ...]:
    """The b-values of an FSL ``.bval`` file (whitespace separated, any line layout)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        return plain_numbers(path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputError(path, "b-values must be numbers separated by spaces or new lines") from None


def bval_path_for(image_path) -> Path:
    """``ivim.nii.gz`` → ``ivim.bval`` (the FSL convention)."""
    image_path = Path(image_path)
    name = image_path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return image_path.with_name(name[: -len(suffix)] + ".bval")
    return image_path.with_name(name + ".bval")


def bvalues_from_header(path) -> tuple[float, ...] | None:
    """b-values stored in an NRRD header (NA-MIC DWI keys or a Slicer multi-volume), else None."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    keys = set(reader.GetMetaDataKeys())
    if "DWMRI_b-value" in keys:
        b_max = float(reader.GetMetaData("DWMRI_b-value"))
        gradients = sorted(k for k in keys if k.startswith("DWMRI_gradient_"))
        values = []
        for key in gradients:
            g = np.array(reader.GetMetaData(key).split(), dtype=float)
            values.append(round(b_max * float(g @ g), 6))
        return tuple(values)
    if "MultiVolume.FrameLabels" in keys:
        labels = reader.GetMetaData("MultiVolume.FrameLabels").replace(",", " ").split()
        return tuple(float(v) for v in labels)
    return None


def read_dicom_diffusion(folder) -> DiffusionSeries:
    """A diffusion DICOM series (every b-value's images in one folder) as a vector volume."""
    series = read_dicom_folder(folder)
    if not series.bvalues:
        raise InputError(folder, "no b-values in its DICOM diffusion attributes; give the series as an image "
                                 "with a .bval file instead")
    image = series.image if series.image.GetNumberOfComponentsPerPixel() > 1 else frames_to_vector([series.image])
    bvalues = validate_bvalues(series.bvalues, image.GetNumberOfComponentsPerPixel(), folder)
    return DiffusionSeries(image, bvalues, str(folder))


def read_diffusion_series(path, bval_path=None) -> DiffusionSeries:
    """Read a diffusion series and its b-values from a file (+ ``.bval``) or a DICOM folder."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_diffusion(path)
    image = read_multiframe(path)
    if bval_path is None:
        candidate = bval_path_for(path)
        bvalues = read_bval_file(candidate) if candidate.exists() else bvalues_from_header(path)
        source = candidate if candidate.exists() else path
    else:
        bvalues, source = read_bval_file(bval_path), bval_path
    if bvalues is None:
        raise InputError(path, f"no b-values: put them in {bval_path_for(path).name} "
                               "(whitespace separated, in volume order)")
    bvalues = validate_bvalues(bvalues, image.GetNumberOfComponentsPerPixel(), source)
    return DiffusionSeries(image, bvalues, str(path))


def write_diffusion_series(series: DiffusionSeries, path) -> Path:
    """Write a series as a 4-D file plus its ``.bval`` (PHANTOM.md §4 layout)."""
    write_text_atomic(" ".join(f"{b:g}" for b in series.bvalues) + "\n", bval_path_for(path))
    return write_multiframe(series.image, path)
