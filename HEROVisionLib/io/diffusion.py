"""Diffusion series: the b-value volumes and their b-values, from any of the usual sources.

b-values come from, in this order of preference:

1. an FSL ``.bval`` file beside the image (whitespace separated, in volume order);
2. the NRRD header: ``DWMRI_b-value`` with ``DWMRI_gradient_NNNN`` (b = b_max·|g|², the NA-MIC
   DWI convention) or a Slicer multi-volume's ``MultiVolume.FrameLabels``;
3. DICOM: the standard Diffusion b-value (0018,9087), or the vendor tags Siemens (0019,100C),
   GE (0043,1039, first value; GE adds 10⁹ on some releases) and Philips (2001,1003).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .images import (check_finite, check_geometry, check_slice_positions, dicom_headers, frames_to_vector,
                     read_multiframe, slice_position, write_multiframe, write_text_atomic)

#: DICOM tags that carry the b-value, standard first (SimpleITK "gggg|eeee" keys).
DICOM_BVALUE_TAGS = ("0018|9087", "0019|100c", "0043|1039", "2001|1003")
_GE_BVALUE_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class DiffusionSeries:
    """A diffusion-weighted series: a vector volume (one component per b) and its b-values (s/mm²)."""

    image: sitk.Image
    bvalues: tuple[float, ...]
    source: str

    @property
    def n_frames(self) -> int:
        return self.image.GetNumberOfComponentsPerPixel()


def validate_bvalues(bvalues, n_volumes: int, source) -> tuple[float, ...]:
    """Check b-values against the series: same count, finite, non-negative, no duplicates."""
    values = [float(b) for b in bvalues]
    if len(values) != n_volumes:
        raise InputError(source, f"{len(values)} b-values for {n_volumes} volumes: "
                                 "each volume needs exactly one b-value")
    if not all(math.isfinite(b) and b >= 0 for b in values):
        raise InputError(source, f"b-values must be finite and ≥ 0, found {values}")
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
        return tuple(float(token) for token in path.read_text(encoding="utf-8").split())
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


def _dicom_bvalue(reader: sitk.ImageFileReader) -> float | None:
    for tag in DICOM_BVALUE_TAGS:
        if reader.HasMetaDataKey(tag):
            text = reader.GetMetaData(tag).strip()
            if not text:
                continue
            value = float(text.replace("\\", " ").split()[0])
            if tag == "0043|1039" and value >= _GE_BVALUE_OFFSET:
                value -= _GE_BVALUE_OFFSET
            return value
    return None


def read_dicom_diffusion(folder) -> DiffusionSeries:
    """Read a diffusion DICOM series (all b-values in one folder) as a vector volume."""
    folder = Path(folder)
    by_bvalue: dict[float, list[tuple[float, str]]] = defaultdict(list)
    for file, reader in dicom_headers(folder):
        bvalue = _dicom_bvalue(reader)
        if bvalue is None:
            raise InputError(file, "no b-value in DICOM tags (0018,9087) or the Siemens, GE, "
                                   "Philips private tags; give a .bval file instead")
        by_bvalue[bvalue].append((slice_position(reader), str(file)))
    counts = {b: len(v) for b, v in by_bvalue.items()}
    if len(set(counts.values())) != 1:
        raise InputError(folder, f"b-values have different slice counts {counts}: incomplete series")
    volumes = []
    for bvalue in sorted(by_bvalue):
        slices = sorted(by_bvalue[bvalue])
        positions = [p for p, _ in slices]
        if len(set(np.round(positions, 3))) != len(positions):
            raise InputError(folder, f"several images share a slice position at b = {bvalue:g}: "
                                     "export one trace-weighted image per slice and b-value")
        check_slice_positions(positions, folder)
        series_reader = sitk.ImageSeriesReader()
        series_reader.SetFileNames([f for _, f in slices])
        volumes.append(series_reader.Execute())
    reference = volumes[0]
    for volume in volumes[1:]:
        if volume.GetSize() != reference.GetSize() or not np.allclose(volume.GetOrigin(), reference.GetOrigin()):
            raise InputError(folder, "the b-value volumes do not share one grid")
        volume.CopyInformation(reference)
    image = frames_to_vector(volumes)
    check_geometry(image, folder)
    check_finite(image, folder)
    return DiffusionSeries(image, tuple(sorted(by_bvalue)), str(folder))


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
