"""The Slicer adapter on a real MRML scene (slicer-core): images ⇄ volume nodes with their geometry,
segments exported on another geometry, typed tables."""

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test dependencies")

from HEROVisionLib.errors import InputError  # noqa: E402
from HEROVisionLib.io.case import Case  # noqa: E402
from HEROVisionLib.io.geometry import label_centroid, resample_labels, same_grid  # noqa: E402
from HEROVisionLib.io.measure import volume_ml  # noqa: E402
from HEROVisionLib.slicer.nodes import (image_from_volume_node, label_image_from_segment, table_node_from_rows,  # noqa: E402
                                volume_node_from_image)


def _oblique(image):
    """``image``'s grid turned 25° about its centre and flipped in x (same region, new direction)."""
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rotation @ np.diag([-1.0, 1.0, 1.0]) @ np.asarray(image.GetDirection()).reshape(3, 3)
    half = np.asarray(image.GetSpacing()) * (np.asarray(image.GetSize()) - 1) / 2
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(((np.asarray(image.GetSize()) - 1) / 2).tolist()))
    image = sitk.Image(image)
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin((centre - direction @ half).tolist())
    return image


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def test_an_oblique_flipped_image_round_trips_through_a_volume_node(phantom_cohort, scene):
    image = _oblique(Case(phantom_cohort / "A0001").load_image("t2wi"))
    node = volume_node_from_image(scene, image, "T2WI")
    # MRML speaks RAS: a voxel's RAS position is its LPS position with x and y negated.
    ijk = (17, 41, 9)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint((*ijk, 1.0))
    lps = image.TransformIndexToPhysicalPoint(ijk)
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)
    back = image_from_volume_node(node)
    assert same_grid(back, image)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_a_segment_exports_onto_another_geometry_in_physical_space(phantom_cohort, scene):
    case = Case(phantom_cohort / "A0001")
    roi = case.load_roi("t2wi")
    ivim_grid = sitk.VectorIndexSelectionCast(case.load_ivim().image, 0, sitk.sitkFloat32)
    labelmap = volume_node_from_image(scene, sitk.Cast(roi == 1, sitk.sitkUInt8), "roi", "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    reference = volume_node_from_image(scene, _oblique(ivim_grid), "IVIM b0")
    nodes_before = scene.GetNumberOfNodes()
    exported = label_image_from_segment(scene, segmentation, segment_id, reference)
    assert scene.GetNumberOfNodes() == nodes_before  # the temporary label map is gone
    assert same_grid(exported, image_from_volume_node(reference))
    # Slicer resamples segments its own way (not our label-fraction rule): the same tumour in the same
    # place is what counts — a wrong axis convention would move it by tens of millimetres.
    expected = resample_labels(sitk.Cast(roi == 1, sitk.sitkUInt8), _oblique(ivim_grid))
    shift = np.linalg.norm(label_centroid(exported, 1) - label_centroid(expected, 1))
    assert shift < 2.0, shift  # mm; the IVIM voxels are 2 × 2 × 5 mm
    assert 0.75 < volume_ml(exported) / volume_ml(expected) < 1.33
    with pytest.raises(InputError, match="no segment 'missing'"):
        label_image_from_segment(scene, segmentation, "missing", reference)


def test_tables_have_typed_columns(scene):
    node = table_node_from_rows(scene, [{"case_id": "A0001", "ta_risk_score": 0.25, "ta_risk_group": "high"},
                                        {"case_id": "A0002", "ta_risk_score": None, "ta_risk_group": "low"}], "results")
    table = node.GetTable()
    assert table.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == 3
    scores = table.GetColumnByName("ta_risk_score")
    assert scores.IsA("vtkDoubleArray") and scores.GetValue(0) == 0.25 and np.isnan(scores.GetValue(1))
    assert table.GetColumnByName("ta_risk_group").GetValue(1) == "low"


@pytest.fixture(scope="module")
def placeholder_models(untrained_models):
    from HEROVisionLib.predict import load_models

    return load_models(untrained_models, "cpu")


def _scene_with_case(case, scene):
    from HEROVisionLib.slicer.nodes import scene_inputs_from_case

    inputs = scene_inputs_from_case(scene, case)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    return inputs, hierarchy.GetItemParent(hierarchy.GetItemByDataNode(inputs.volumes["t2wi"]))


def test_prediction_from_the_scene_adds_tables_maps_and_overlays_and_leaves_inputs_alone(
        phantom_cohort, scene, placeholder_models):
    from HEROVisionLib.slicer.nodes import add_result_to_scene, case_from_scene, predict_scene
    from HEROVisionLib.predict import predict_case

    inputs, study = _scene_with_case(Case(phantom_cohort / "A0003"), scene)
    watched = [*inputs.ivim_volumes, *inputs.volumes.values(), *inputs.ceus_phase_volumes]
    before = [(node.GetMTime(), slicer.util.arrayFromVolume(node).tobytes()) for node in watched]
    result, nodes = predict_scene(scene, inputs, placeholder_models, "cpu")
    assert [(node.GetMTime(), slicer.util.arrayFromVolume(node).tobytes()) for node in watched] == before
    # the scene's nodes hold the same case as the folder: the same numbers come out
    from_folder = predict_case(Case(phantom_cohort / "A0003"), placeholder_models, "cpu").row()
    assert {k: v for k, v in result.row().items() if k != "seconds"} == \
        {k: v for k, v in from_folder.items() if k != "seconds"}

    table = nodes["results"].GetTable()
    row = result.row()
    assert table.GetColumnByName("ta_risk_score").GetValue(0) == pytest.approx(row["ta_risk_score"])
    assert table.GetColumnByName("inputs_used").GetValue(0) == "ivim;t2wi;dwi;us;ceus"
    assert nodes["ivim_statistics"].GetTable().GetNumberOfRows() == len(result.ivim_statistics)
    stages = nodes["staging"].GetTable()  # the guideline stages beside the risk
    assert [stages.GetColumnByName("stage").GetValue(k) for k in range(stages.GetNumberOfRows())] == \
        list(result.staging.values()) and len(result.staging) == 6

    overlay, t2wi = nodes["attention_ta_t2wi"], inputs.volumes["t2wi"]
    overlay_matrix, input_matrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    overlay.GetIJKToRASMatrix(overlay_matrix)
    t2wi.GetIJKToRASMatrix(input_matrix)
    assert all(overlay_matrix.GetElement(i, j) == pytest.approx(input_matrix.GetElement(i, j))
               for i in range(4) for j in range(4))
    assert overlay.GetDisplayNode().GetColorNode().GetName() == "HEROVision heat map"
    heat = slicer.util.arrayFromVolume(overlay)
    tumour = sitk.GetArrayFromImage(case_from_scene(scene, inputs).load_roi("t2wi")) == 1
    assert heat[tumour].mean() > heat[~tumour].mean()

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(overlay))
    assert hierarchy.GetItemName(folder) == "HEROVision A0003" and hierarchy.GetItemParent(folder) == study

    count = scene.GetNumberOfNodes()
    add_result_to_scene(scene, result, inputs)  # a re-run replaces its own outputs
    assert scene.GetNumberOfNodes() == count


def test_bad_scene_inputs_are_refused_and_add_no_node(phantom_cohort, scene):
    from HEROVisionLib.slicer.nodes import case_from_scene

    inputs, _ = _scene_with_case(Case(phantom_cohort / "A0003"), scene)
    count = scene.GetNumberOfNodes()
    inputs.bvalues = inputs.bvalues[:-1]
    with pytest.raises(InputError, match="8 b-values for 9 volumes"):
        case_from_scene(scene, inputs)
    inputs.bvalues = None
    empty = inputs.segmentation.GetSegmentation().AddEmptySegment("empty")
    inputs.bvalues = [0, 10, 20, 40, 80, 200, 400, 600, 1000]
    inputs.segments["t2wi"] = empty
    with pytest.raises(InputError, match="segment is empty on the grid of A0003 T2WI"):
        case_from_scene(scene, inputs)
    assert scene.GetNumberOfNodes() == count


def test_scene_command_writes_a_scene_slicer_reads_back(phantom_cohort, tmp_path, placeholder_models):
    from HEROVisionLib.cli import main
    from HEROVisionLib.predict import write_untrained_models

    models = write_untrained_models(tmp_path / "models")
    out = tmp_path / "scene"
    assert main(["scene", str(phantom_cohort / "A0004"), "--out", str(out), "--models", str(models),
                 "--device", "cpu"]) == 0
    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(out / "scene.mrml"))
    assert reloaded.Connect()
    overlay = reloaded.GetFirstNodeByName("HEROVision A0004 attention_ta_t2wi")
    t2wi = reloaded.GetFirstNodeByName("A0004 T2WI")
    assert overlay is not None and overlay.GetImageData() is not None
    assert same_grid(image_from_volume_node(overlay), image_from_volume_node(t2wi))
    assert reloaded.GetFirstNodeByName("HEROVision A0004 results").GetTable().GetNumberOfRows() == 1
    assert reloaded.GetFirstNodeByName("A0004 tumour").GetSegmentation().GetNumberOfSegments() == 5
