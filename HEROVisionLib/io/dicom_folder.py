"""A folder holding one DICOM series → an image and its b-values, converted by **dcm2niix**.

dcm2niix is the field's reference converter: it tiles Siemens mosaics into slices (geometry from
the CSA header), reads enhanced multi-frame objects, and knows every vendor's b-value convention
(the standard (0018,9087), Siemens CSA, GE's offsets, Philips' tags). HEROVision keeps no vendor
code of its own. What a converter would mend or split silently is refused first, naming the
folder: a folder that mixes patients, studies or series (naming them), single-frame slices that
are missing or repeated, that lack or disagree on their geometry, matrix, pixel layout or rescale
(naming the slice), and a series that dcm2niix still has to split into several volumes.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError


@dataclass(frozen=True)
class DicomSeries:
    """A converted series: a scalar volume, or a vector volume of one component per b-value."""

    image: sitk.Image
    bvalues: tuple[float, ...] | None  # from the DICOM diffusion attributes; None when it has none


def run_dcm2niix(source: Path, work: Path) -> list[Path]:
    """dcm2niix on ``source`` (a folder, searched recursively) into the empty folder ``work``, NIfTI
    files named by series UID (``.bval`` beside diffusion ones); returns the NIfTI files."""
    from dcm2niix import bin as dcm2niix

    result = subprocess.run([dcm2niix, "-b", "n", "-z", "y", "-f", "%j", "-o", str(work), str(source)],
                            capture_output=True, text=True)
    if result.returncode not in (0, 8):  # 8: some files were not images (SEG, reports): converted the rest
        raise InputError(source, f"dcm2niix failed (exit {result.returncode}): {result.stderr.strip()[-300:]}")
    return sorted(work.glob("*.nii.gz"))


def bvalues_beside(image: Path) -> tuple[float, ...] | None:
    """The b-values dcm2niix wrote beside a NIfTI file it made, or None."""
    bval = image.with_name(image.name[: -len(".nii.gz")] + ".bval")
    return tuple(float(b) for b in bval.read_text().split()) if bval.is_file() else None


def read_dicom_file(file: Path):
    """``file``'s DICOM dataset, or None when it is not DICOM (notes, DICOMDIR indexes); a DICOM file
    that is damaged, or an image whose uncompressed pixel data are cut short, is refused naming it
    (a converter would fill the gap or drop the slice)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(file)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as error:
        if _looks_like_dicom(file):
            raise InputError(file, f"cannot be read as DICOM: truncated or damaged ({error})") from None
        return None
    if is_image(dataset):
        _check_pixel_data(dataset, file)
    return dataset


def is_image(dataset) -> bool:
    """An object that holds pixels: an image storage class (or image rows), a segmentation."""
    name = getattr(dataset.get("SOPClassUID"), "name", "")
    return "Rows" in dataset or ("Storage" in name and ("Image" in name or "Segmentation" in name))


def series_headers(folder: Path) -> list:
    """The DICOM datasets of ``folder``'s image files, all of one patient, study and series: a folder
    that mixes them is refused naming what it found, and a file cut short naming the file."""
    headers = []
    identities: dict[str, set] = {"patient": set(), "study": set(), "series": set()}
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        header = read_dicom_file(file)
        if header is None or not is_image(header) or header.get("Modality") == "SEG":
            continue  # not an image (a report, a segmentation, an index)
        for key, tag in zip(identities, ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")):
            identities[key].add(str(header.get(tag, "?")).strip() or "?")
        headers.append(header)
    if not headers:
        raise InputError(folder, "no DICOM images found in this folder")
    mixed = {key: sorted(values) for key, values in identities.items() if len(values) > 1}
    if mixed:
        raise InputError(folder, "holds more than one " + "; ".join(
            f"{key} ({len(v)}: {', '.join(v[:4])})" for key, v in mixed.items())
            + ": put each series of one patient in its own folder")
    return headers


def _looks_like_dicom(file: Path) -> bool:
    """A file with DICOM's "DICM" marker after its 128-byte preamble."""
    with open(file, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _check_pixel_data(dataset, file: Path) -> None:
    """Uncompressed pixel data must hold every bit its header declares (rows × columns × samples ×
    frames × bits allocated)."""
    if "PixelData" not in dataset or "Rows" not in dataset:
        raise InputError(file, "truncated: an image without its pixel data (or the header that describes them)")
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        return  # the decoder checks a compressed stream
    bits = (int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1) or 1)
            * int(dataset.get("NumberOfFrames", 1) or 1) * int(dataset.BitsAllocated))
    expected, held = -(-bits // 8), len(dataset.PixelData)
    if held < expected:
        raise InputError(file, f"truncated: its pixel data hold {held} bytes, its header declares {expected}")


#: Modalities whose slices have a place in the patient's space (Image Position/Orientation, Pixel Spacing).
CROSS_SECTIONAL = ("MR", "CT")


def _single_frame_slices(headers) -> list:
    """The headers of single-frame slices (mosaics and multi-frame objects carry their slices inside
    and are checked by the converter)."""
    return [h for h in headers if int(h.get("NumberOfFrames", 1) or 1) == 1
            and "MOSAIC" not in [str(v).upper() for v in h.get("ImageType", [])]]


def _numbers(header, keyword) -> np.ndarray | None:
    values = header.get(keyword)
    if values is None:
        return None
    try:
        return np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        return np.array([np.nan])


def check_slice_attributes(headers, source) -> None:
    """What single-frame slices must agree on before a converter stacks them, each fault naming the
    first file that has it: one matrix and pixel layout (bits allocated 8, 16 or 32: other widths are
    read as garbage), an intensity rescale that is a finite number (a NaN slope is dropped silently)
    and, for MR and CT, a place in space (Image Position and Orientation) and a pixel spacing that is a
    positive number, the same in every slice (a converter keeps the first, or reads 0 as 1 mm)."""
    single = _single_frame_slices(headers)
    if not single:
        return
    first = single[0]
    reference = next((h for h in single if h.get("Modality") in CROSS_SECTIONAL), None)  # its spacing for all
    for header in single:
        name = Path(getattr(header, "filename", "") or "slice").name
        for keyword in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel"):
            if header.get(keyword) != first.get(keyword):
                raise InputError(source, f"{name}: {keyword} {header.get(keyword)} differs from the first slice's "
                                         f"{first.get(keyword)}: slices of different series?")
        if int(header.get("BitsAllocated", 16)) not in (8, 16, 32):
            raise InputError(source, f"{name}: {header.BitsAllocated} bits allocated per pixel: DICOM images "
                                     "store 8, 16 or 32")
        for keyword in ("RescaleSlope", "RescaleIntercept"):
            values = _numbers(header, keyword)
            if values is not None and not (np.all(np.isfinite(values)) and (keyword != "RescaleSlope" or values[0] != 0)):
                raise InputError(source, f"{name}: {keyword} {header.get(keyword)!s} is not a usable number")
        if header.get("Modality") not in CROSS_SECTIONAL:
            continue  # an ultrasound image has no place in the patient's space, and its pixel size elsewhere
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            values = _numbers(header, keyword)
            if values is None:
                raise InputError(source, f"{name} has no {keyword}: its place or size in the volume is unknown")
            if not np.all(np.isfinite(values)):
                raise InputError(source, f"{name}: {keyword} {list(header.get(keyword))} is not a set of numbers")
        if not np.all(_numbers(header, "PixelSpacing") > 0):
            raise InputError(source, f"{name}: pixel spacing {list(header.PixelSpacing)} mm is not positive")
        if not np.allclose(_numbers(header, "PixelSpacing"), _numbers(reference, "PixelSpacing"), rtol=1e-3):
            raise InputError(source, f"{name}: pixel spacing {list(header.PixelSpacing)} mm differs from the first "
                                     f"slice's {list(reference.PixelSpacing)}: slices of different series?")


def check_slice_positions(headers, source) -> None:
    """Single-frame slices: the same number of images at every position (one per b-value), and
    evenly spaced positions — a gap or a stray slice would make a volume of the wrong depth."""
    single = [h for h in _single_frame_slices(headers) if h.get("Modality") in CROSS_SECTIONAL]
    if len(single) != len(headers) or len(single) < 2:
        return
    orientation = np.asarray(single[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.round([float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=float))) for h in single], 3)
    levels, counts = np.unique(positions, return_counts=True)
    if len(set(counts)) > 1:
        raise InputError(source, f"slice positions hold {counts.min()} to {counts.max()} images each: "
                                 "missing or extra slices, or more than one volume of different extent")
    steps = np.diff(levels)
    if len(steps) and not np.allclose(steps, steps[0], rtol=0.01, atol=0.01):
        raise InputError(source, f"slices are not evenly spaced (gaps from {steps.min():.3g} to {steps.max():.3g} mm): "
                                 "missing or extra slices")


def read_dicom_folder(folder) -> DicomSeries:
    """The one series in ``folder``, converted by dcm2niix: a scalar volume, or with several
    b-values a vector volume with them."""
    from .images import read_image, read_multiframe

    folder = Path(folder)
    headers = series_headers(folder)
    check_slice_attributes(headers, folder)
    check_slice_positions(headers, folder)
    with tempfile.TemporaryDirectory(prefix="herovision-dicom-") as work:
        images = run_dcm2niix(folder, Path(work))
        if not images:
            raise InputError(folder, "dcm2niix found no image it could convert in this folder")
        if len(images) > 1:
            raise InputError(folder, f"dcm2niix splits this series into {len(images)} volumes (different echoes, "
                                     "orientations or slice sets): put one volume (or one diffusion series) per folder")
        bvalues = bvalues_beside(images[0])
        try:
            image = read_multiframe(images[0]) if bvalues and len(bvalues) > 1 else read_image(images[0])
        except InputError as error:  # about the converter's temporary file: name the user's folder
            raise InputError(folder, f"as converted by dcm2niix, {error.problem}") from None
    return DicomSeries(image, bvalues)
