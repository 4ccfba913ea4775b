"""``herovision export-dicom`` (and ``--dicom`` of predict and batch): a prediction of an imported
study goes back as DICOM SEG and Parametric Maps that reference the source series, read back with
highdicom to the VOIs and maps the prediction holds, and pass dicom3tools' ``dciodvfy`` without
errors."""

import shutil
import subprocess

import highdicom
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from HEROVisionLib.cli import main
from HEROVisionLib.io.case import Case
from HEROVisionLib.io.dicom_study import import_study
from HEROVisionLib.io.images import read_image, vector_to_frames

from dicom_study_writer import write_case_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def exported(phantom_cohort, untrained_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    source = Case(phantom_cohort / "A0003")
    write_case_study(source, folder / "study")
    case, _ = import_study(folder / "study", folder / "cases")
    for name in ("us_roi.nrrd", "ceus_roi.nii.gz"):
        shutil.copy(source.folder / name, case / name)
    assert main(["predict", str(case), "--out", str(folder / "predicted"), "--models", str(untrained_models),
                 "--device", "cpu", "--advice-draws", "0", "--dicom", str(folder / "study")]) == 0
    prediction = folder / "predicted"
    assert main(["export-dicom", str(prediction), "--source", str(folder / "study"), "--out",
                 str(folder / "dicom")]) == 0
    return Case(case), prediction, folder / "dicom", folder / "study"


def _referenced_slices(dataset, study) -> list:
    """The source slices an object references (its Referenced Series Sequence), in slice order."""
    from HEROVisionLib.predict.dicom_export import _slice_order

    wanted = {item.ReferencedSOPInstanceUID for item in dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    return _slice_order([ds for ds in (pydicom.dcmread(p) for p in study.rglob("*.dcm")) if ds.SOPInstanceUID in wanted])


def _on(image: sitk.Image, slices) -> np.ndarray:
    """``image`` at the voxel centres of the source slices (nearest voxel: the grids coincide)."""
    from HEROVisionLib.predict.dicom_export import _grid_of

    return sitk.GetArrayFromImage(sitk.Resample(image, _grid_of(slices), sitk.Transform(), sitk.sitkNearestNeighbor,
                                                0, image.GetPixelID()))


def _frames_by_slice(dataset, slices) -> list[np.ndarray]:
    """The object's frames, in the order of ``slices`` (matched by plane position)."""
    frames = np.asarray(dataset.pixel_array).reshape(-1, dataset.Rows, dataset.Columns)
    at = {tuple(round(float(v), 3) for v in item.PlanePositionSequence[0].ImagePositionPatient): frame
          for item, frame in zip(dataset.PerFrameFunctionalGroupsSequence, frames)}
    return [at[tuple(round(float(v), 3) for v in ds.ImagePositionPatient)] for ds in slices]


def test_every_object_is_valid_dicom_by_dciodvfy(exported):
    _, _, dicom, _ = exported
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed: the validator assertion cannot run here")
    for path in sorted(dicom.glob("*.dcm")):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors[:5]}"


def test_the_segmentations_hold_the_tumour_vois_of_their_source_series(exported):
    case, _, dicom, study = exported
    for modality in ("ivim", "t2wi", "dwi"):
        segmentation = pydicom.dcmread(dicom / f"seg_{modality}.dcm")
        assert segmentation.PatientID == case.case_id and segmentation.Modality == "SEG"
        slices = _referenced_slices(segmentation, study)
        image = vector_to_frames(case.load_ivim().image)[0] if modality == "ivim" else case.load_image(modality)
        expected = _on(case.load_roi(modality, image), slices)
        read = highdicom.seg.segread(dicom / f"seg_{modality}.dcm")
        mask = read.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in slices], combine_segments=True,
                                                  ignore_spatial_locations=True)
        assert np.array_equal(mask, expected) and expected.any(), modality


def test_the_parametric_maps_hold_the_ivim_maps_in_their_units(exported):
    _, prediction, dicom, study = exported
    for name, unit in (("D", "mm2/s"), ("Dstar", "mm2/s"), ("f", "1"), ("ADC", "mm2/s")):
        parametric = pydicom.dcmread(dicom / f"pm_ivim_{name}.dcm")
        mapping = parametric.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == unit
        slices = _referenced_slices(parametric, study)
        expected = _on(read_image(prediction / f"ivim_{name}.nrrd"), slices)
        for frame, plane in zip(_frames_by_slice(parametric, slices), expected):
            assert np.allclose(frame, plane, rtol=1e-6, atol=0), name
    assert (dicom / "pm_attention_er_maps.dcm").is_file() and (dicom / "pm_attention_ta_t2wi.dcm").is_file()


def _report_items(items, found: dict, group: str = "") -> str:
    """Every numeric and coded item of an SR content tree, by (measurement group, concept meaning)."""
    for item in items:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "TEXT" and name == "Tracking Identifier":
            group = item.TextValue
        elif item.ValueType == "NUM":
            found[(group, name)] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "CODE":
            found[(group, name)] = item.ConceptCodeSequence[0].CodeMeaning
        if "ContentSequence" in item:
            group = _report_items(item.ContentSequence, found, group)
    return group


def test_the_measurement_report_holds_the_numbers_of_results_csv(exported):
    import pandas as pd

    _, prediction, dicom, _ = exported
    report = highdicom.sr.srread(dicom / "sr_measurements.dcm")
    row = pd.read_csv(prediction / "results.csv", dtype={"case_id": str}).iloc[0]
    found: dict = {}
    _report_items(report.ContentSequence, found)
    for key, name in (("ta", "HEROVision-TA"), ("sr", "HEROVision-SR")):
        assert found[(name, "HEROVision risk score (Cox log-hazard)")] == pytest.approx(row[f"{key}_risk_score"],
                                                                                        rel=1e-9)
        for years in (1, 2, 3):
            assert found[(name, f"Progression-free survival probability at {12 * years} months")] == pytest.approx(
                row[f"{key}_pfs_{years}y"], rel=1e-9)
        assert found[(name, "Risk group by the model's cutoff")] == f"{row[f'{key}_risk_group'].capitalize()} risk"
    for model, column in (("deep", "er_probability"), ("combined", "er_probability_combined")):
        assert found[("IVIM-ER", f"Early recurrence probability, IVIM {model} model")] == pytest.approx(row[column],
                                                                                                      rel=1e-9)
    assert found[("tumour", "Diameter")] == pytest.approx(row["tumor_size_cm"], rel=1e-9)
    assert found[("tumour", "Volume")] == pytest.approx(row["tumor_volume_ml"], rel=1e-9)
    assert report.PatientID == row["case_id"]


def _content(path) -> tuple:
    """What an object says, without the UIDs and times of its writing."""
    dataset = pydicom.dcmread(path)
    values = dataset.pixel_array.tobytes() if "PixelData" in dataset else b""
    numbers: dict = {}
    if dataset.Modality == "SR":
        _report_items(dataset.ContentSequence, numbers)
    return dataset.Modality, dataset.SeriesDescription, values, sorted(numbers.items())


def test_predict_with_dicom_writes_the_same_objects_into_its_dicom_folder(exported):
    _, prediction, dicom, _ = exported
    names = sorted(p.name for p in dicom.glob("*.dcm"))
    assert names == sorted(p.name for p in (prediction / "dicom").glob("*.dcm")) and "sr_measurements.dcm" in names
    for name in names:
        assert _content(prediction / "dicom" / name) == _content(dicom / name), name


def test_batch_with_dicom_exports_each_case_with_a_study_and_names_those_without(exported, phantom_cohort,
                                                                                 untrained_models, tmp_path):
    import json

    import pandas as pd

    case, _, _, study = exported
    cohort = tmp_path / "cohort"
    shutil.copytree(case.folder, cohort / case.case_id)
    shutil.copytree(phantom_cohort / "A0004", cohort / "A0004")
    (tmp_path / "studies").mkdir()
    shutil.copytree(study, tmp_path / "studies" / case.case_id)
    assert main(["batch", str(cohort), "--out", str(tmp_path / "batch"), "--models", str(untrained_models),
                 "--device", "cpu", "--advice-draws", "0", "--dicom", str(tmp_path / "studies")]) == 0
    assert (tmp_path / "batch" / case.case_id / "dicom" / "sr_measurements.dcm").is_file()
    assert not (tmp_path / "batch" / "A0004" / "dicom").exists()
    table = pd.read_csv(tmp_path / "batch" / "results.csv", dtype={"case_id": str})
    assert (table["status"] == "ok").all()
    warnings = {name: json.loads((tmp_path / "batch" / name / "results.json").read_text())["warnings"]
                for name in (case.case_id, "A0004")}
    assert any(w.startswith("DICOM objects not written: ") and "studies/A0004: not a folder" in w
               for w in warnings["A0004"])
    assert not any("DICOM" in w for w in warnings[case.case_id])
