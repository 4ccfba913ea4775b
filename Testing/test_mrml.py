"""The Slicer adapter on a real MRML scene (slicer-core): images ⇄ volume nodes with their geometry,
segments exported on another geometry, typed tables."""

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test dependencies")

from HEROVisionLib.errors import InputError  # noqa: E402
from HEROVisionLib.io.case import Case  # noqa: E402
from HEROVisionLib.io.geometry import resample_labels, same_grid  # noqa: E402
from HEROVisionLib.mrml import (image_from_volume_node, label_image_from_segment, table_node_from_rows,  # noqa: E402
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
    expected = sitk.GetArrayViewFromImage(resample_labels(sitk.Cast(roi == 1, sitk.sitkUInt8), _oblique(ivim_grid))) > 0
    found = sitk.GetArrayViewFromImage(exported) > 0
    dice = 2 * (expected & found).sum() / (expected.sum() + found.sum())
    assert dice > 0.85
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
