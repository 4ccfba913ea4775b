"""Volumes loaded through Slicer's DICOM module, on a real MRML scene (slicer-core): b-values from what
the DICOM import keeps (a multi-volume sequence's b-value index or frame labels, the source files of
volumes loaded one per b-value), and a prediction from the panel written back as DICOM objects of the
study. slicer-core has no DICOM database: the tests give each volume the ``DICOM.instanceUIDs``
attribute Slicer's DICOM plugins set, and the lookup the database does (UID → file)."""

import shutil

import highdicom
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test dependencies")

from HEROVisionLib.errors import InputError  # noqa: E402
from HEROVisionLib.io.case import Case  # noqa: E402
from HEROVisionLib.io.dicom_study import import_study  # noqa: E402
from HEROVisionLib.predict.dicom_export import _grid_of, _slice_order  # noqa: E402
from HEROVisionLib.slicer.dicom_sources import INSTANCE_UIDS_ATTRIBUTE, export_scene_prediction  # noqa: E402
from HEROVisionLib.slicer.nodes import (BVALUE_ATTRIBUTE, case_from_scene, predict_scene,  # noqa: E402
                                        scene_inputs_from_case)
from HEROVisionLib.slicer.panel_inputs import bvalues_from_nodes, sequence_bvalues  # noqa: E402

from dicom_study_writer import write_case_study  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def study_case(phantom_cohort, tmp_path_factory):
    """A phantom case written as a DICOM study, and the case imported from it."""
    folder = tmp_path_factory.mktemp("slicer-dicom")
    source = Case(phantom_cohort / "A0003")
    study = write_case_study(source, folder / "study")
    imported, _ = import_study(folder / "study", folder / "cases")
    for name in ("us_roi.nrrd", "ceus_roi.nii.gz"):
        shutil.copy(source.folder / name, imported / name)
    return study, Case(imported)


def _series(study, description) -> list:
    return next(datasets for datasets in study.datasets.values() if datasets[0].SeriesDescription == description)


def _loaded_from_dicom(study, inputs) -> dict:
    """Tag the scene's MR volumes as Slicer's DICOM plugins do, and return the database's lookup."""
    files = {pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID: str(path)  # as the database indexes
             for path in study.folder.rglob("*.dcm")}
    ivim = _series(study, "ep2d_ivim")
    per_volume = len(ivim) // len(inputs.ivim_volumes)
    for k, node in enumerate(inputs.ivim_volumes):
        node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(ds.SOPInstanceUID for ds in
                                                            ivim[k * per_volume:(k + 1) * per_volume]))
    for modality, description in (("t2wi", "t2_haste_tra"), ("dwi", "ep2d_diff_b800_trace")):
        inputs.volumes[modality].SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(
            ds.SOPInstanceUID for ds in _series(study, description)))
    return files


def test_a_multivolume_sequence_gives_its_b_values_by_index_or_frame_labels(study_case):
    scene = slicer.vtkMRMLScene()
    _, case = study_case
    inputs = scene_inputs_from_case(scene, case)
    bvalues = list(case.load_ivim().bvalues)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "ep2d_ivim")
    sequence.SetIndexName("Standard.B-value")  # as Slicer's multi-volume DICOM import names it
    sequence.SetIndexUnit("sec/mm2")
    for node, b in zip(inputs.ivim_volumes, bvalues):
        sequence.SetDataNodeAtValue(node, f"{b:g}")
    assert sequence_bvalues(sequence) == bvalues
    sequence.SetIndexName("frame")
    sequence.SetIndexUnit("")
    sequence.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagName", "Siemens.B-value")
    sequence.SetAttribute("MultiVolume.FrameLabels", ",".join(f"{b:g}" for b in bvalues))
    assert sequence_bvalues(sequence) == bvalues
    sequence.SetAttribute("MultiVolume.FrameLabels", "0,10")
    with pytest.raises(InputError, match=f"its frame labels gives 2 b-value\\(s\\) for {len(bvalues)} volumes"):
        sequence_bvalues(sequence)


def test_volumes_loaded_one_per_b_value_take_their_b_values_from_their_dicom_files(study_case):
    scene = slicer.vtkMRMLScene()
    study, case = study_case
    inputs = scene_inputs_from_case(scene, case)
    files = _loaded_from_dicom(study, inputs)
    for node in inputs.ivim_volumes:
        node.RemoveAttribute(BVALUE_ATTRIBUTE)  # what the DICOM module leaves: no b-value on the node
    assert bvalues_from_nodes(inputs.ivim_volumes) is None  # without the database the panel asks
    assert bvalues_from_nodes(inputs.ivim_volumes, files.get) == list(case.load_ivim().bvalues)
    inputs.ivim_volumes[2].SetAttribute(INSTANCE_UIDS_ATTRIBUTE, inputs.volumes["t2wi"].GetAttribute(
        INSTANCE_UIDS_ATTRIBUTE))
    with pytest.raises(InputError, match="IVIM b=.*: its DICOM files hold no b-value"):
        bvalues_from_nodes(inputs.ivim_volumes, files.get)


def test_a_prediction_from_the_panel_goes_back_as_dicom_objects_of_the_loaded_study(study_case, untrained_models,
                                                                                   tmp_path):
    from HEROVisionLib.predict import load_models

    scene = slicer.vtkMRMLScene()
    study, case = study_case
    inputs = scene_inputs_from_case(scene, case)
    files = _loaded_from_dicom(study, inputs)
    memory_case = case_from_scene(scene, inputs)
    result, _ = predict_scene(scene, inputs, load_models(untrained_models, "cpu"), "cpu")
    nodes_before = scene.GetNumberOfNodes()
    written = export_scene_prediction(result, memory_case, inputs, files.get, tmp_path / "dicom")
    assert scene.GetNumberOfNodes() == nodes_before
    assert sorted(written) == sorted((tmp_path / "dicom").glob("*.dcm"))
    assert {"seg_ivim.dcm", "seg_t2wi.dcm", "seg_dwi.dcm", "pm_ivim_D.dcm", "sr_measurements.dcm"} <= {
        p.name for p in written}
    slices = _slice_order(_series(study, "t2_haste_tra"))
    segmentation = highdicom.seg.segread(tmp_path / "dicom" / "seg_t2wi.dcm")
    mask = segmentation.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in slices], combine_segments=True,
                                                      ignore_spatial_locations=True)
    roi = memory_case.load_roi("t2wi", memory_case.load_image("t2wi"))  # the segment drawn in the scene
    expected = sitk.GetArrayFromImage(sitk.Resample(roi, _grid_of(slices), sitk.Transform(), sitk.sitkNearestNeighbor))
    assert np.array_equal(mask > 0, expected > 0) and expected.any()
    report = pydicom.dcmread(tmp_path / "dicom" / "sr_measurements.dcm")
    assert report.PatientID == case.case_id and report.StudyInstanceUID == study.uid
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("a user's file")
    with pytest.raises(InputError, match="was not made by `herovision export-dicom`"):
        export_scene_prediction(result, memory_case, inputs, files.get, tmp_path / "elsewhere")
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["notes.txt"]


def test_export_needs_volumes_loaded_through_the_dicom_module(study_case, untrained_models, tmp_path):
    from HEROVisionLib.predict import load_models

    scene = slicer.vtkMRMLScene()
    _, case = study_case
    inputs = scene_inputs_from_case(scene, case)
    result, _ = predict_scene(scene, inputs, load_models(untrained_models, "cpu"), "cpu")
    with pytest.raises(InputError, match="none of the IVIM, T2WI or DWI volumes was loaded through Slicer's DICOM"):
        export_scene_prediction(result, case_from_scene(scene, inputs), inputs, {}.get, tmp_path / "dicom")
    assert not (tmp_path / "dicom").exists()

