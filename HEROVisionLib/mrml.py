"""The Slicer adapter's foundation: MRML nodes ⇄ SimpleITK images with their geometry, segments as
label maps on a chosen reference geometry, and typed table nodes.

MRML stores geometry as an IJK-to-RAS matrix; SimpleITK (and DICOM, NIfTI readers, the rest of
HEROVisionLib) uses LPS. The two differ by negating the first two world axes — done here once, so
images made from nodes overlay the nodes exactly, and nodes made from images (maps, attention)
overlay their inputs. Everything here takes the scene explicitly and uses only what both Slicer and
the ``slicer-core`` wheel provide (MRML classes, the segmentations logic, ``slicer.util`` array
helpers), so it runs inside Slicer and headless in the tests alike.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import vtk

from .errors import InputError

_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])


def _matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def image_from_volume_node(node) -> sitk.Image:
    """A scalar volume node as a float32 (or, for a label map node, uint8) SimpleITK image in LPS."""
    import slicer.util

    if node is None or node.GetImageData() is None:
        raise InputError(getattr(node, "GetName", lambda: "volume")(), "volume node has no image data")
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    ijk_to_lps = _RAS_FROM_LPS @ _matrix_to_numpy(ijk_to_ras)[:3]
    spacing = np.linalg.norm(ijk_to_lps[:, :3], axis=0)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    label = node.IsA("vtkMRMLLabelMapVolumeNode")
    image = sitk.GetImageFromArray(array.astype(np.uint8 if label else np.float32))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(ijk_to_lps[:, 3].tolist())
    image.SetDirection((ijk_to_lps[:, :3] / spacing).ravel().tolist())
    return image


def _ijk_to_ras(image: sitk.Image) -> vtk.vtkMatrix4x4:
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    ras = lps.copy()
    ras[:3] = _RAS_FROM_LPS @ lps[:3]
    matrix = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            matrix.SetElement(i, j, ras[i, j])
    return matrix


def volume_node_from_image(scene, image: sitk.Image, name: str, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` with ``image``'s voxels and geometry (a 3-D scalar image)."""
    import slicer.util

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(name, "only 3-D scalar images become volume nodes")
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetIJKToRASMatrix(_ijk_to_ras(image))
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.CreateDefaultDisplayNodes()
    return node


def label_image_from_segment(scene, segmentation_node, segment_id: str, reference_node) -> sitk.Image:
    """The segment as a uint8 label map (1 inside) on ``reference_node``'s geometry, in LPS.

    The segmentation logic resamples it in physical space; the temporary nodes it needs (a label map
    and its display and colour nodes) are removed again, so the scene is left as it was. An empty
    result is refused.
    """
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(segment_id) is None:
        raise InputError(segmentation_node.GetName(), f"no segment {segment_id!r}")
    name = segmentation.GetSegment(segment_id).GetName()
    existing = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__herovision_export")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_node)
        if not exported or labelmap.GetImageData() is None:
            raise InputError(name, f"segment could not be exported on the geometry of {reference_node.GetName()}")
        image = image_from_volume_node(labelmap)
    finally:
        created = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in created:
            if node.GetID() not in existing:
                scene.RemoveNode(node)
    image = sitk.Cast(image != 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(image).any():
        raise InputError(name, f"segment is empty on the grid of {reference_node.GetName()}")
    return image


def table_node_from_rows(scene, rows: list[dict], name: str):
    """A table node with one row per dict: numeric columns as doubles (NaN when empty), others as text."""
    import numbers

    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        values = [row.get(column) for row in rows]
        numeric = all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(column)
        for value in values:
            if numeric:
                array.InsertNextValue(math.nan if value is None else float(value))
            else:
                array.InsertNextValue("" if value is None else str(value))
        table.AddColumn(array)
    node.Modified()
    return node
