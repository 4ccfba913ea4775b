"""``herovision export-dicom``: a prediction back to PACS as the DICOM objects the field reads
(written with highdicom; Slicer's QuantitativeReporting and OHIF open them):

* the tumour VOIs of each MR series as a DICOM Segmentation (label *k* → segment *k*);
* the IVIM maps D, D*, f and ADC as Parametric Maps with real-world value mappings in their units
  (mm²/s; f a ratio), on the source IVIM geometry;
* the attention maps of the MR inputs as Parametric Maps (unitless, 0–1) on their source series;
* the numbers of ``results.csv`` — each model's risk score, risk group and PFS at 1, 2 and 3 years,
  the early-recurrence probabilities, tumour size and volume, the IVIM medians, the advice — as a
  DICOM SR measurement report (TID 1500), one measurement group per model. Codes come from SNOMED
  CT and UCUM where they exist (diameter, volume, neoplasm, units); the rest are private codes of
  the coding scheme ``99HEROVISION``, listed in :data:`PRIVATE_CODES`.

Every object references its source series' instances and carries the source's patient and study, so
it files beside them. ``predict --dicom STUDY`` and ``batch --dicom STUDIES`` write the same objects
into each prediction's ``dicom/`` folder. The source series are found in ``--source`` by geometry: the series whose
slices lie exactly on the case image's grid (for a diffusion series, the slices of one volume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..errors import InputError
from ..io.case import MR_MODALITIES, Case
from ..io.dicom_study import study_series
from ..io.images import atomic_target, read_image, vector_to_frames
from ..io.output_folder import output_folder
from .outputs import DICOM_FOLDER

if TYPE_CHECKING:
    from pydicom import Dataset

#: IVIM map → (file stem, what it is, UCUM unit code, its meaning).
IVIM_MAPS = {"D": ("ivim_D", "IVIM diffusion coefficient D", "mm2/s", "square millimeter per second"),
             "Dstar": ("ivim_Dstar", "IVIM pseudo-diffusion coefficient D*", "mm2/s", "square millimeter per second"),
             "f": ("ivim_f", "IVIM perfusion fraction f", "1", "no units"),
             "ADC": ("ivim_ADC", "apparent diffusion coefficient", "mm2/s", "square millimeter per second")}
#: Case modality → the attention maps drawn on it.
ATTENTION = {"ivim": ("attention_er_bvalues", "attention_er_maps"), "t2wi": ("attention_ta_t2wi", "attention_sr_t2wi"),
             "dwi": ("attention_ta_dwi", "attention_sr_dwi")}
#: The private codes of the SR (coding scheme 99HEROVISION): code value → meaning.
PRIVATE_CODES = {
    "HV001": "HEROVision risk score (Cox log-hazard)", "HV002": "Risk group by the model's cutoff",
    "HV003": "High risk", "HV004": "Low risk", "HV012": "Progression-free survival probability at 12 months",
    "HV024": "Progression-free survival probability at 24 months",
    "HV036": "Progression-free survival probability at 36 months",
    "HV101": "Early recurrence probability, IVIM deep model",
    "HV102": "Early recurrence probability, IVIM combined model",
    "HV201": "IVIM diffusion coefficient D, tumour median", "HV202": "IVIM pseudo-diffusion coefficient D*, tumour median",
    "HV203": "IVIM perfusion fraction f, tumour median", "HV204": "Apparent diffusion coefficient, tumour median",
    "HV300": "HEROVision prediction", "HV301": "Treatment advice", "HV311": "Switch treatment",
    "HV312": "Either treatment", "HV313": "Both treatments high risk", "HV314": "Keep the planned treatment",
    "HV315": "Favours one treatment",
}
#: Advice category (``results.csv``) → its code.
ADVICE_CODES = {"switch": "HV311", "either": "HV312", "both high": "HV313", "keep": "HV314", "favours": "HV315"}
_EQUIPMENT = dict(manufacturer="HEROVision", manufacturer_model_name="HEROVision", software_versions=__version__,
                  device_serial_number="none")


@dataclass
class SourceSlices:
    """One volume of a source series, as the slices of a case image's grid (in slice order)."""

    datasets: list
    grid: sitk.Image  # the slices' own grid (rows and columns as stored)


def _slice_order(datasets) -> list:
    """Slices sorted along the normal of their plane."""
    first = datasets[0]
    normal = np.cross(np.asarray(first.ImageOrientationPatient[:3], float),
                      np.asarray(first.ImageOrientationPatient[3:], float))
    return sorted(datasets, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))


def _grid_of(datasets) -> sitk.Image:
    """The grid of slices given in order (rows and columns as stored)."""
    first = datasets[0]
    row, column = (np.asarray(first.ImageOrientationPatient[:3], float),
                   np.asarray(first.ImageOrientationPatient[3:], float))
    normal = np.cross(row, column)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    steps = np.diff(positions @ normal)
    grid = sitk.Image([int(first.Columns), int(first.Rows), len(datasets)], sitk.sitkUInt8)
    spacing_row, spacing_column = (float(v) for v in first.PixelSpacing)
    grid.SetSpacing([spacing_column, spacing_row, float(steps.mean()) if len(steps) else 1.0])
    grid.SetOrigin([float(v) for v in positions[0]])
    grid.SetDirection([float(v) for v in np.column_stack([row, column, normal]).ravel()])
    return grid


def _slices_on(image: sitk.Image, series_datasets: list) -> SourceSlices | None:
    """The slices of one volume of the series, if they lie on ``image``'s grid (same voxel corners
    in the world, within 0.01 mm); None otherwise."""
    if not all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds for ds in series_datasets):
        return None
    by_position: dict[tuple, object] = {}
    for ds in sorted(series_datasets, key=lambda ds: int(ds.get("InstanceNumber", 0))):
        by_position.setdefault(tuple(round(float(v), 3) for v in ds.ImagePositionPatient), ds)
    datasets = _slice_order(list(by_position.values()))
    grid = _grid_of(datasets)
    if grid.GetSize() != image.GetSize() or not np.allclose(_corners(grid), _corners(image), atol=0.01):
        return None
    return SourceSlices(datasets, grid)


def _corners(image: sitk.Image) -> np.ndarray:
    size = image.GetSize()
    points = [image.TransformIndexToPhysicalPoint((i, j, k)) for i in (0, size[0] - 1) for j in (0, size[1] - 1)
              for k in (0, size[2] - 1)]
    return np.array(sorted(np.round(points, 3).tolist()))


def _on_slices(image: sitk.Image, source: SourceSlices, interpolator) -> np.ndarray:
    """``image`` on the source slices: (slices, rows, columns), in the source datasets' order."""
    pixel = sitk.sitkUInt8 if interpolator == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    return sitk.GetArrayFromImage(sitk.Resample(image, source.grid, sitk.Transform(), interpolator, 0, pixel))


def _source_for(image: sitk.Image, series: list, name: str, study: Path) -> SourceSlices:
    import pydicom

    for item in series:
        if item.modality != "MR":
            continue
        found = _slices_on(image, [pydicom.dcmread(path) for path in item.files])
        if found is not None:
            return found
    raise InputError(study, f"no series of this study lies on the case's {name} grid: export needs the study the "
                            "case was imported from")


def _segmentation(source: SourceSlices, labels: np.ndarray, number: int, modality: str):
    import highdicom
    from pydicom.sr.codedict import codes

    present = sorted(int(v) for v in np.unique(labels) if v)
    descriptions = [highdicom.seg.SegmentDescription(
        segment_number=index, segment_label=f"tumour {label}" if label > 1 else "largest tumour",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.MANUAL)
        for index, label in enumerate(present, start=1)]
    relabelled = np.zeros_like(labels)
    for index, label in enumerate(present, start=1):
        relabelled[labels == label] = index
    return highdicom.seg.Segmentation(
        source_images=source.datasets, pixel_array=relabelled,
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=highdicom.UID(), series_number=number, sop_instance_uid=highdicom.UID(),
        instance_number=1, series_description=f"HEROVision tumour VOI ({modality.upper()})", **_EQUIPMENT)


def _parametric_map(source: SourceSlices, values: np.ndarray, number: int, label: str, explanation: str,
                    unit: tuple[str, str]):
    import highdicom
    from highdicom.sr.coding import CodedConcept

    values = values.astype(np.float32)
    mapping = highdicom.pm.RealWorldValueMapping(
        lut_label=label[:16], lut_explanation=explanation[:64],
        unit=CodedConcept(value=unit[0], scheme_designator="UCUM", meaning=unit[1]),
        value_range=(float(values.min()), float(values.max())), slope=1.0, intercept=0.0)
    return highdicom.pm.ParametricMap(
        source_images=source.datasets, pixel_array=values, series_instance_uid=highdicom.UID(), series_number=number,
        sop_instance_uid=highdicom.UID(), instance_number=1, contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping], series_description=explanation[:64],
        voi_lut_transformations=[highdicom.VOILUTTransformation(  # LINEAR_EXACT: windows narrower than 1 are valid
            window_center=float(values.min() + values.max()) / 2, window_width=float(np.ptp(values)) or 1.0,
            voi_lut_function="LINEAR_EXACT")], **_EQUIPMENT)


def _code(value: str):
    from highdicom.sr.coding import CodedConcept

    return CodedConcept(value=value, scheme_designator="99HEROVISION", meaning=PRIVATE_CODES[value])


def _unit(value: str, meaning: str):
    from highdicom.sr.coding import CodedConcept

    return CodedConcept(value=value, scheme_designator="UCUM", meaning=meaning)


def _measurement_report(row: dict, source: SourceSlices, number: int):
    """The results row as a TID 1500 measurement report referencing the source series (IVIM's when
    the case has it)."""
    import math

    import highdicom
    from highdicom.sr.coding import CodedConcept
    from pydicom.sr.codedict import codes

    def group(identifier: str, measurements, evaluations=()):
        items = [highdicom.sr.Measurement(name=name, value=float(value), unit=unit)
                 for name, value, unit in measurements if value is not None and math.isfinite(float(value))]
        return highdicom.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=highdicom.sr.TrackingIdentifier(uid=highdicom.UID(), identifier=identifier),
            finding_type=codes.SCT.Neoplasm, measurements=items or None,
            qualitative_evaluations=[highdicom.sr.QualitativeEvaluation(name, value) for name, value in evaluations]
            or None)

    probability = _unit("1", "no units")
    groups = []
    for key, name in (("ta", "HEROVision-TA"), ("sr", "HEROVision-SR")):
        evaluations = ([(_code("HV002"), _code("HV003" if row[f"{key}_risk_group"] == "high" else "HV004"))]
                       if row.get(f"{key}_risk_group") in ("high", "low") else [])
        groups.append(group(name, [(_code("HV001"), row.get(f"{key}_risk_score"), _unit("1", "no units"))]
                            + [(_code(f"HV0{12 * years}"), row.get(f"{key}_pfs_{years}y"), probability)
                               for years in (1, 2, 3)], evaluations))
    groups.append(group("IVIM-ER", [(_code("HV101"), row.get("er_probability"), probability),
                                    (_code("HV102"), row.get("er_probability_combined"), probability)]))
    diameter = CodedConcept(value="81827009", scheme_designator="SCT", meaning="Diameter")
    volume = CodedConcept(value="118565006", scheme_designator="SCT", meaning="Volume")
    square_mm = _unit("mm2/s", "square millimeter per second")
    advice = ([(_code("HV301"), _code(ADVICE_CODES[row["advice_category"]]))]
              if row.get("advice_category") in ADVICE_CODES else [])
    groups.append(group("tumour", [(diameter, row.get("tumor_size_cm"), _unit("cm", "centimeter")),
                                   (volume, row.get("tumor_volume_ml"), _unit("ml", "milliliter")),
                                   (_code("HV201"), row.get("ivim_D_median"), square_mm),
                                   (_code("HV202"), row.get("ivim_Dstar_median"), square_mm),
                                   (_code("HV203"), row.get("ivim_f_median"), probability),
                                   (_code("HV204"), row.get("ivim_ADC_median"), square_mm)], advice))
    device = highdicom.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=highdicom.sr.DeviceObserverIdentifyingAttributes(
            uid=highdicom.UID(), name="HEROVision", manufacturer_name="HEROVision", model_name=__version__))
    report = highdicom.sr.MeasurementReport(
        observation_context=highdicom.sr.ObservationContext(observer_device_context=device),
        procedure_reported=_code("HV300"), imaging_measurements=groups)
    return highdicom.sr.Comprehensive3DSR(
        evidence=source.datasets, content=report[0], series_instance_uid=highdicom.UID(), series_number=number,
        sop_instance_uid=highdicom.UID(), instance_number=1, manufacturer="HEROVision",
        series_description="HEROVision measurement report")


def _results_row(prediction_folder: Path) -> dict:
    """The prediction's results.csv row, numbers as numbers (blank: None)."""
    import pandas as pd

    table = pd.read_csv(prediction_folder / "results.csv", dtype={"case_id": str}, keep_default_na=False)
    row = table.iloc[0].to_dict()
    return {key: (None if value == "" else value) for key, value in row.items()}


def dicom_objects(prediction_folder, source_study, case: Case, modalities=MR_MODALITIES) -> list[tuple[str, Dataset]]:
    """The prediction's DICOM objects (file name, dataset), all built before any is written: a SEG
    per MR modality of ``modalities`` the case has, Parametric Maps of the IVIM and attention maps,
    and the measurement report."""
    prediction_folder, source_study = Path(prediction_folder), Path(source_study)
    row = _results_row(prediction_folder)
    series, _ = study_series(source_study)
    objects, sources = [], []  # (file name, dataset, its source)
    number = 900  # series numbers after the scanner's
    for modality in MR_MODALITIES:
        if modality not in case.available or modality not in modalities:
            continue
        image = vector_to_frames(case.load_ivim().image)[0] if modality == "ivim" else case.load_image(modality)
        source = _source_for(image, series, modality, source_study)
        sources.append(source)
        roi = case.load_roi(modality, image)
        number += 1
        labels = _on_slices(roi, source, sitk.sitkNearestNeighbor)
        objects.append((f"seg_{modality}.dcm", _segmentation(source, labels, number, modality), source))
        maps = ({name: prediction_folder / f"{stem}.nrrd" for name, (stem, *_) in IVIM_MAPS.items()}
                if modality == "ivim" else {})
        for name, path in maps.items():
            if path.is_file():
                number += 1
                _, explanation, unit, meaning = IVIM_MAPS[name]
                objects.append((f"pm_{path.stem}.dcm", _parametric_map(
                    source, _on_slices(read_image(path), source, sitk.sitkLinear), number, name, explanation,
                    (unit, meaning)), source))
        for stem in ATTENTION[modality]:
            path = prediction_folder / f"{stem}.nrrd"
            if path.is_file():
                number += 1
                objects.append((f"pm_{stem}.dcm", _parametric_map(
                    source, _on_slices(read_image(path), source, sitk.sitkLinear), number, "attention",
                    f"HEROVision attention ({stem.removeprefix('attention_')})", ("1", "no units")), source))
    if not sources:
        raise InputError(case.folder, "has no MR image (IVIM, T2WI or DWI) to export on")
    objects.append(("sr_measurements.dcm", _measurement_report(row, sources[0], number + 1), sources[0]))
    for _, dataset, source in objects:
        # A liver study: saying so settles General Series' laterality condition (the liver is not paired).
        dataset.BodyPartExamined = source.datasets[0].get("BodyPartExamined") or "LIVER"
    return [(name, dataset) for name, dataset, _ in objects]


def write_dicom_objects(objects, folder: Path) -> list[Path]:
    """Each object into ``folder`` (which the caller owns), complete or not at all."""
    folder.mkdir(exist_ok=True)
    written = []
    for name, dataset in objects:
        target = folder / name
        partial = atomic_target(target)
        dataset.save_as(partial)
        partial.replace(target)
        written.append(target)
    return written


def _case_of(prediction_folder: Path, case_folder=None) -> Case:
    """The case a prediction came from: ``case_folder``, or the one its results.json names."""
    import json

    results = prediction_folder / "results.json"
    if not results.is_file():
        raise InputError(prediction_folder, "holds no results.json: give a folder written by `herovision predict`")
    folder = case_folder or json.loads(results.read_text(encoding="utf-8")).get("case_folder")
    if not folder:
        raise InputError(prediction_folder, "does not say which case folder it came from: give --case")
    return Case(Path(folder))


def export_dicom(prediction_folder, source_study, out, case_folder=None) -> list[Path]:
    """``herovision export-dicom``: the prediction's DICOM objects into the new folder ``out``."""
    prediction_folder, source_study = Path(prediction_folder), Path(source_study)
    case = _case_of(prediction_folder, case_folder)
    study_series(source_study)  # a study that is not one, refused before the output folder is claimed
    with output_folder(out, "export-dicom", inputs=(prediction_folder, source_study, case.folder)) as claimed:
        return write_dicom_objects(dicom_objects(prediction_folder, source_study, case), claimed.path)


#: Where ``predict --dicom`` and ``batch --dicom`` put a case's DICOM objects, inside its prediction folder.


def add_dicom_outputs(prediction_folder: Path, source_study, case: Case) -> list[Path]:
    """``--dicom`` of predict and batch: the objects into the prediction folder being written."""
    return write_dicom_objects(dicom_objects(prediction_folder, source_study, case), prediction_folder / DICOM_FOLDER)
