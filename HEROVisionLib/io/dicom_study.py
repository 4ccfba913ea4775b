"""``herovision import``: one patient's DICOM study → a case folder of docs/PHANTOM.md §4.

MR series are converted by **dcm2niix** (the reference DICOM → NIfTI converter for diffusion:
Siemens mosaics, enhanced multi-frame objects, every vendor's b-value convention, ``.bval``);
ultrasound series are read with pydicom (one frame: grayscale US; a cine: CEUS, with its frame
times). Each series goes to a modality by rules a site can override with a JSON file
(:data:`DEFAULT_RULES`; ``--rules``), checked in this order:

1. ``ignore``: a series description matching one of its patterns (localizers, derived maps…);
2. MR with ≥ ``ivim.min_bvalues`` distinct b-values: IVIM; with fewer but some b > 0, or without
   b-values and a description matching a ``dwi`` pattern: DWI (its largest b-value volume);
3. MR without b-values whose description matches a ``t2wi`` pattern: T2WI;
4. US with several frames, or a description matching a ``ceus`` pattern: CEUS; other US: US;
5. DICOM SEG objects: the ROI of the series they segment (segment *k* → label *k*).

Where two series qualify for one modality the lowest series number is taken and the other is
listed as ignored, with the reason; every series is accounted for. A folder holding more than one
patient or study is refused, naming their IDs and UIDs: one study is one case.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .case import check_case_id
from .dicom_folder import (bvalues_beside, check_slice_attributes, check_slice_positions, read_dicom_file,
                           run_dcm2niix)
from .diffusion import read_diffusion_series, write_diffusion_series
from .images import frames_to_vector, read_image, vector_to_frames, write_image, write_multiframe, write_text_atomic
from .output_folder import output_folder, remove_within

#: Modality rules (patterns are case-insensitive regular expressions searched in SeriesDescription).
DEFAULT_RULES = {
    "ignore": ["locali[sz]er", "scout", "survey", r"\badc\b", "exponential", r"\bfa\b", "calibration"],
    "ivim": {"min_bvalues": 4},
    "dwi": ["dwi", "diff", r"\bb ?[0-9]{3,4}\b"],
    "t2wi": ["t2", "haste", "tse", "fse", "blade", "propeller"],
    "ceus": ["ceus", "contrast", "sonovue", "definity", "cine"],
}


@dataclass
class Series:
    """One series of the study: what its headers say and the files that hold it."""

    uid: str
    number: int
    description: str
    modality: str
    files: list[Path] = field(default_factory=list)
    frames: int = 1

    @property
    def label(self) -> str:
        return f"series {self.number} '{self.description}' ({self.modality}, {len(self.files)} file(s))"


@dataclass
class Assignment:
    """Which series became which file of the case, and which were left out and why."""

    used: dict[str, str] = field(default_factory=dict)  # case file → series label
    ignored: dict[str, str] = field(default_factory=dict)  # series label → reason

    def lines(self) -> list[str]:
        return ([f"{name} ← {label}" for name, label in self.used.items()]
                + [f"ignored: {label}: {reason}" for label, reason in self.ignored.items()])


def read_rules(path=None) -> dict:
    """:data:`DEFAULT_RULES`, with a site's JSON file's keys replacing the defaults'."""
    rules = json.loads(json.dumps(DEFAULT_RULES))
    if path is None:
        return rules
    try:
        given = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(path, f"not a readable JSON rules file ({error})") from None
    if not isinstance(given, dict):
        raise InputError(path, f"must hold one JSON object of rules ({', '.join(DEFAULT_RULES)})")
    unknown = sorted(set(given) - set(DEFAULT_RULES))
    if unknown:
        raise InputError(path, f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_RULES)}")
    if "ivim" in given and not (isinstance(given["ivim"], dict)
                                and isinstance(given["ivim"].get("min_bvalues"), int) and given["ivim"]["min_bvalues"] >= 2):
        raise InputError(path, 'rule "ivim" must be {"min_bvalues": N} with N ≥ 2')
    for key in ("ignore", "dwi", "t2wi", "ceus"):
        if key in given:
            patterns = given[key]
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise InputError(path, f"rule {key!r} must be a list of patterns")
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise InputError(path, f"rule {key!r}: pattern {pattern!r} is not a regular expression "
                                           f"({error})") from None
    rules.update(given)
    return rules


def _matches(patterns, text: str) -> bool:
    return any(re.search(pattern, text, re.IGNORECASE) for pattern in patterns)


def study_series(folder) -> tuple[list[Series], list[Path]]:
    """The study's image series and its DICOM SEG files; refused when it holds more than one
    patient or study, nothing DICOM, or a DICOM file that is damaged or cut short."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    series: dict[str, Series] = {}
    segmentations, patients, studies = [], {}, {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        header = read_dicom_file(file)  # a damaged or cut file refused by name
        if header is None or "SOPClassUID" not in header or "SeriesInstanceUID" not in header:
            continue  # not DICOM: notes, DICOMDIR indexes…
        patients.setdefault(str(header.get("PatientID", "")), file)
        studies.setdefault(str(header.get("StudyInstanceUID", "")), file)
        modality = str(header.get("Modality", ""))
        if modality == "SEG":
            segmentations.append(file)
            continue
        uid = str(header.SeriesInstanceUID)
        entry = series.setdefault(uid, Series(uid, int(header.get("SeriesNumber", 0) or 0),
                                              str(header.get("SeriesDescription", "")), modality))
        entry.files.append(file)
        entry.frames = max(entry.frames, int(header.get("NumberOfFrames", 1) or 1))
    if not series:
        raise InputError(folder, "holds no DICOM image series")
    for kind, found in (("patients", patients), ("studies", studies)):
        if len(found) > 1:
            named = ", ".join(f"{key or '(none)'} (e.g. {path.name})" for key, path in found.items())
            raise InputError(folder, f"holds {len(found)} {kind}: {named}; import one study of one patient at a time")
    return sorted(series.values(), key=lambda s: (s.number, s.uid)), segmentations


def _convert_mr(study: Path, work: Path) -> dict[str, list[Path]]:
    """dcm2niix on the study: series UID → the NIfTI files it made (``.bval`` beside diffusion ones)."""
    work.mkdir()
    converted: dict[str, list[Path]] = {}
    for image in run_dcm2niix(study, work):  # named by series UID (digits and dots), "_…" for splits
        converted.setdefault(image.name[:-7].split("_")[0], []).append(image)
    return converted


def _stacking_fault(series: Series) -> str | None:
    """Why an MR series' slices cannot be stacked as they are (missing or uneven slices, slices without
    their geometry or disagreeing on it: what a per-modality DICOM folder is refused for), or None.
    In a study such a series is left out with the reason — a localizer's three planes are one."""
    import pydicom

    headers = [pydicom.dcmread(file, stop_before_pixels=True) for file in series.files]
    try:
        check_slice_attributes(headers, series.label)
        check_slice_positions(headers, series.label)
    except InputError as error:
        return error.problem
    return None


def _us_image(series: Series) -> tuple[sitk.Image, tuple[float, ...]]:
    """A US series as (image, frame times in s): one 2-D frame, or a cine of frames (x, y, 1, t)."""
    import pydicom

    if len(series.files) != 1:
        raise InputError(series.files[0].parent, f"{series.label}: an ultrasound series should be one file "
                                                 f"(one image or one cine), found {len(series.files)}")
    from pydicom.pixels import apply_modality_lut

    try:
        dataset = pydicom.dcmread(series.files[0])
        pixels = np.asarray(apply_modality_lut(dataset.pixel_array, dataset), dtype=np.float32)
    except Exception as error:  # a compression without its decoder, a truncated pixel block…
        raise InputError(series.files[0], f"{series.label}: its pixels cannot be read ({error})") from None
    if dataset.get("PhotometricInterpretation", "MONOCHROME2").startswith(("RGB", "YBR")):
        pixels = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # luminance
    frames = pixels if series.frames > 1 else pixels[None]
    spacing = _us_spacing(dataset, series)
    images = []
    for frame in frames:
        image = sitk.GetImageFromArray(frame[None])
        image.SetSpacing((*spacing, 1.0))
        images.append(image)
    return (images[0] if len(images) == 1 else frames_to_vector(images)), _frame_times(dataset, len(images), series)


def _us_spacing(dataset, series: Series) -> tuple[float, float]:
    """Pixel size (mm, x then y): Pixel Spacing, else the first ultrasound region's physical deltas (cm)."""
    if "PixelSpacing" in dataset:
        row, column = (float(v) for v in dataset.PixelSpacing)
        return column, row
    regions = dataset.get("SequenceOfUltrasoundRegions")
    if regions and regions[0].get("PhysicalUnitsXDirection") == 3 and regions[0].get("PhysicalUnitsYDirection") == 3:
        return float(regions[0].PhysicalDeltaX) * 10.0, float(regions[0].PhysicalDeltaY) * 10.0
    raise InputError(series.files[0], f"{series.label}: no pixel size (Pixel Spacing or an ultrasound region in cm)")


def _frame_times(dataset, count: int, series: Series) -> tuple[float, ...]:
    """Each frame's time (s) from the start: Frame Time Vector (ms between frames), else Frame Time."""
    if count == 1:
        return ()
    if "FrameTimeVector" in dataset:
        steps = [float(v) for v in dataset.FrameTimeVector]
        if len(steps) != count:
            raise InputError(series.files[0], f"{series.label}: Frame Time Vector has {len(steps)} values for "
                                              f"{count} frames")
        return tuple(np.round(np.cumsum([0.0, *steps[1:]]) / 1000.0, 3))
    if "FrameTime" in dataset:
        return tuple(np.round(np.arange(count) * float(dataset.FrameTime) / 1000.0, 3))
    raise InputError(series.files[0], f"{series.label}: a cine without frame times (Frame Time or Frame Time Vector)")


def _segmentation_roi(path: Path) -> tuple[str, sitk.Image]:
    """(the UID of the series a DICOM SEG segments, its label map on the SEG's own frames' grid)."""
    import highdicom

    try:
        segmentation = highdicom.seg.segread(path)
        source = segmentation.get_source_image_uids()
        volume = segmentation.get_volume(combine_segments=True, relabel=False)
    except Exception as error:  # not a readable segmentation, or frames without a regular 3-D grid
        raise InputError(path, f"is not a DICOM SEG HEROVision can read ({error})") from None
    referenced = {series_uid for _, series_uid, _ in source}
    if len(referenced) != 1:
        raise InputError(path, f"segments {len(referenced)} series; HEROVision reads a SEG of one series")
    array = np.asarray(volume.array, dtype=np.uint8)  # (slices, rows, columns)
    image = sitk.GetImageFromArray(array)
    affine = np.asarray(volume.affine)  # LPS, (slice, row, column) index order
    columns = affine[:3, :3][:, ::-1]  # to (column, row, slice) = ITK's (x, y, z)
    spacing = np.linalg.norm(columns, axis=0)
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in (columns / spacing).ravel()])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    return next(iter(referenced)), image


def import_study(study, out, *, case_id: str | None = None, rules=None) -> tuple[Path, Assignment]:
    """Import ``study`` into ``out``/<case id> (the case id: ``case_id``, else the DICOM Patient ID);
    returns the case folder and what went where."""
    import pydicom

    study = Path(study)
    rules = read_rules(rules)
    series, segmentations = study_series(study)
    identifier = case_id if case_id is not None else str(pydicom.dcmread(series[0].files[0],
                                                                         stop_before_pixels=True).get("PatientID", ""))
    identifier = check_case_id(identifier, "--case-id" if case_id is not None else "the study's Patient ID "
                                                                                 "(give --case-id)")
    assignment = Assignment()
    with output_folder(out, "import", inputs=(study,)) as claimed:
        case = claimed.path / identifier
        if case.exists():
            raise InputError(case, "already exists: import each study once, into a case folder of its own")
        work = Path(tempfile.mkdtemp(dir=claimed.path, prefix=".import-"))
        try:
            partial = work / identifier
            partial.mkdir()
            _write_case(study, series, segmentations, rules, work, partial, assignment)
            partial.rename(case)  # complete or not at all
        finally:
            remove_within(work, claimed)
    return case, assignment


def _write_case(study, series, segmentations, rules, work: Path, case: Path, assignment: Assignment) -> None:
    mr = [s for s in series if s.modality == "MR"]
    converted = _convert_mr(study, work / "dcm2niix") if mr else {}
    chosen: dict[str, Series] = {}

    def take(modality: str, item: Series) -> bool:
        if modality in chosen:
            assignment.ignored[item.label] = f"another {modality.upper()} series was taken ({chosen[modality].label})"
            return False
        chosen[modality] = item
        return True

    nifti: dict[str, Path] = {}
    for item in series:
        if _matches(rules["ignore"], item.description):
            assignment.ignored[item.label] = "its description matches an ignore rule"
            continue
        if item.modality == "MR":
            fault = _stacking_fault(item)
            if fault:
                assignment.ignored[item.label] = fault
                continue
            images = converted.get(item.uid, [])
            if len(images) != 1:
                assignment.ignored[item.label] = ("dcm2niix made no volume of it" if not images else
                                                  f"dcm2niix split it into {len(images)} volumes")
                continue
            distinct = sorted(set(bvalues_beside(images[0]) or ()))
            modality = ("ivim" if len(distinct) >= rules["ivim"]["min_bvalues"] else
                        "dwi" if (distinct and max(distinct) > 0) or _matches(rules["dwi"], item.description) else
                        "t2wi" if _matches(rules["t2wi"], item.description) else None)
            if modality is None:
                assignment.ignored[item.label] = "MR without b-values whose description matches no DWI or T2WI rule"
            elif take(modality, item):
                nifti[modality] = images[0]
        elif item.modality == "US":
            take("ceus" if item.frames > 1 or _matches(rules["ceus"], item.description) else "us", item)
        else:
            assignment.ignored[item.label] = f"modality {item.modality or '(none)'} is not read"
    if "ivim" in nifti:
        write_diffusion_series(read_diffusion_series(nifti["ivim"]), case / "ivim.nii.gz")
        assignment.used["ivim.nii.gz + ivim.bval"] = chosen["ivim"].label
    if "dwi" in nifti:
        bvalues = bvalues_beside(nifti["dwi"]) or ()
        if len(bvalues) > 1:  # b = 0 and the diffusion weighting(s): the largest is the DWI
            diffusion = read_diffusion_series(nifti["dwi"])
            largest = int(np.argmax(diffusion.bvalues))
            image, weighting = vector_to_frames(diffusion.image)[largest], f", b = {diffusion.bvalues[largest]:g}"
        else:  # one trace image
            image, weighting = read_image(nifti["dwi"]), f", b = {bvalues[0]:g}" if bvalues else ""
        write_image(image, case / "dwi.nii.gz")
        assignment.used["dwi.nii.gz"] = chosen["dwi"].label + weighting
    if "t2wi" in nifti:
        write_image(read_image(nifti["t2wi"]), case / "t2wi.nii.gz")
        assignment.used["t2wi.nii.gz"] = chosen["t2wi"].label
    for modality in ("us", "ceus"):
        if modality in chosen:
            image, times = _us_image(chosen[modality])
            if modality == "us":
                write_image(image, case / "us.nrrd")
            else:
                write_multiframe(image, case / "ceus.nii.gz")
                write_text_atomic(" ".join(f"{t:g}" for t in times) + "\n", case / "ceus.times")
            assignment.used[f"{modality}.{'nrrd' if modality == 'us' else 'nii.gz'}"] = chosen[modality].label
    by_uid = {item.uid: modality for modality, item in chosen.items()}
    for path in segmentations:
        referenced, roi = _segmentation_roi(path)
        modality = by_uid.get(referenced)
        if modality is None:
            assignment.ignored[f"SEG {path.name}"] = "segments a series that was not imported"
            continue
        write_image(roi, case / f"{modality}_roi.nii.gz")
        assignment.used[f"{modality}_roi.nii.gz"] = f"SEG {path.name}"
    if not assignment.used:
        raise InputError(study, "no series could be assigned to a modality: " +
                         "; ".join(f"{label}: {reason}" for label, reason in assignment.ignored.items()))
