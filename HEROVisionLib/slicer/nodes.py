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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk

from ..errors import InputError
from ..io.ceus import CEUS_PHASES
from ..io.diffusion import DiffusionSeries, validate_bvalues
from ..io.geometry import same_grid
from ..io.images import frames_to_vector, staged_outputs
from ..io.memory_case import MemoryCase
from ..io.output_folder import claim_output_folder

_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])

#: The attribute holding a volume's b-value (s/mm²), named after the DICOM keyword of (0018,9087).
BVALUE_ATTRIBUTE = "DiffusionBValue"


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


@dataclass
class SceneInputs:
    """The nodes one prediction reads: volumes per modality (IVIM as one scalar volume per b-value,
    CEUS as arterial/portal/late phase volumes), one segmentation and the segment to use on each."""

    case_id: str
    segmentation: object
    segments: dict[str, str]  # modality → segment id
    ivim_volumes: list = field(default_factory=list)
    bvalues: list[float] = field(default_factory=list)
    volumes: dict[str, object] = field(default_factory=dict)  # "t2wi", "dwi", "us" → volume node
    ceus_phase_volumes: list = field(default_factory=list)  # arterial, portal, late
    clinical: dict = field(default_factory=dict)  # clinical values for the nomograms, by cohort.csv name

    def reference_node(self, modality: str):
        if modality == "ivim":
            return self.ivim_volumes[0] if self.ivim_volumes else None
        if modality == "ceus":
            return self.ceus_phase_volumes[0] if self.ceus_phase_volumes else None
        return self.volumes.get(modality)


#: Frame times given to CEUS phase volumes: the preferred time of each phase window.
CEUS_PHASE_TIMES_S = tuple(preferred for _, _, preferred in CEUS_PHASES.values())


def case_from_scene(scene, inputs: SceneInputs) -> MemoryCase:
    """A :class:`MemoryCase` of the scene's nodes (nothing in the scene is modified)."""
    images, rois, sources = {}, {}, {}
    if inputs.ivim_volumes:
        frames = [image_from_volume_node(node) for node in inputs.ivim_volumes]
        if any(not same_grid(frame, frames[0]) for frame in frames[1:]):
            raise InputError(inputs.ivim_volumes[0].GetName(), "IVIM b-value volumes are not on one grid")
        names = ", ".join(node.GetName() for node in inputs.ivim_volumes)
        bvalues = validate_bvalues(inputs.bvalues, len(frames), f"b-values of {names}")
        images["ivim"] = DiffusionSeries(frames_to_vector(frames), bvalues, inputs.ivim_volumes[0].GetName())
    for modality, node in inputs.volumes.items():
        if node is not None:
            images[modality] = image_from_volume_node(node)
    if inputs.ceus_phase_volumes:
        if len(inputs.ceus_phase_volumes) != len(CEUS_PHASE_TIMES_S):
            raise InputError("CEUS", f"expected {len(CEUS_PHASE_TIMES_S)} phase volumes (arterial, portal, late), "
                                     f"got {len(inputs.ceus_phase_volumes)}")
        images["ceus"] = frames_to_vector([image_from_volume_node(n) for n in inputs.ceus_phase_volumes])
    for modality in images:
        node = inputs.reference_node(modality)
        sources[modality] = node.GetName()
        segment_id = inputs.segments.get(modality)
        if segment_id:
            rois[modality] = label_image_from_segment(scene, inputs.segmentation, segment_id, node)
            segment = inputs.segmentation.GetSegmentation().GetSegment(segment_id)
            sources[f"{modality}_roi"] = f"segment {segment.GetName()!r} on {node.GetName()}"
    return MemoryCase(inputs.case_id, images, rois, CEUS_PHASE_TIMES_S if "ceus" in images else None, sources,
                      dict(inputs.clinical) or None)


def _subject_hierarchy_item(hierarchy, node) -> int:
    """The node's subject-hierarchy item, made if the scene has none yet (headless scenes)."""
    item = hierarchy.GetItemByDataNode(node)
    return item or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)


def heat_colour_table(scene):
    """The scene's HEROVision heat-map colour table (transparent-to-red-to-yellow), made once."""
    existing = scene.GetFirstNodeByName(HEAT_COLOUR_TABLE)
    if existing is not None:
        return existing
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", HEAT_COLOUR_TABLE)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    for k in range(256):
        t = k / 255
        table.SetColor(k, min(1.0, 2 * t), max(0.0, 2 * t - 1), 0.0, 0.0 if k == 0 else min(1.0, 0.4 + t))
    return table


HEAT_COLOUR_TABLE = "HEROVision heat map"


def add_result_to_scene(scene, result, inputs: SceneInputs) -> dict[str, object]:
    """New nodes for a prediction: results, IVIM statistics and guideline-stage tables, parametric maps and attention
    maps (heat colour table, 0–1 window) in a subject-hierarchy folder beside the inputs' study.

    A previous run's folder for the same case is replaced; inputs are never touched. If anything
    fails, every node made here is removed again.
    """
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    anchor = next(node for node in (inputs.reference_node(m) for m in ("t2wi", "ivim", "dwi", "us", "ceus"))
                  if node is not None)
    parent = hierarchy.GetItemParent(_subject_hierarchy_item(hierarchy, anchor)) or hierarchy.GetSceneItemID()
    folder_name = f"HEROVision {result.case_id}"
    previous = hierarchy.GetItemChildWithName(parent, folder_name)
    if previous:
        children = vtk.vtkIdList()
        hierarchy.GetItemChildren(previous, children, True)
        for k in range(children.GetNumberOfIds()):
            _remove_node(scene, hierarchy.GetItemDataNode(children.GetId(k)))
        hierarchy.RemoveItem(previous, False, True)
    created = {}
    try:
        created["results"] = table_node_from_rows(scene, [result.row()], f"{folder_name} results")
        created["ivim_statistics"] = table_node_from_rows(scene, result.ivim_statistics, f"{folder_name} IVIM statistics")
        created["staging"] = table_node_from_rows(scene, [{"system": system, "stage": text}
                                                          for system, text in result.staging.items()],
                                                  f"{folder_name} guideline stages")
        for name, image in result.maps.items():
            created[name] = volume_node_from_image(scene, image, f"{folder_name} {name}")
        colours = heat_colour_table(scene)
        for name, image in result.overlays.items():
            node = volume_node_from_image(scene, image, f"{folder_name} {name}")
            display = node.GetDisplayNode()
            display.SetAndObserveColorNodeID(colours.GetID())
            display.SetAutoWindowLevel(False)
            display.SetWindowLevelMinMax(0.0, 1.0)
            created[name] = node
        folder = hierarchy.CreateFolderItem(parent, folder_name)
        for node in created.values():
            hierarchy.SetItemParent(_subject_hierarchy_item(hierarchy, node), folder)
    except Exception:
        for node in created.values():
            _remove_node(scene, node)
        raise
    return created


def _remove_node(scene, node) -> None:
    """A node and the display nodes made for it."""
    if node is None:
        return
    for k in reversed(range(node.GetNumberOfDisplayNodes()) if hasattr(node, "GetNumberOfDisplayNodes") else ()):
        scene.RemoveNode(node.GetNthDisplayNode(k))
    scene.RemoveNode(node)


def predict_scene(scene, inputs: SceneInputs, models, device="auto"):
    """Predict the case the scene's nodes hold and add its output nodes: (result, new nodes)."""
    from ..predict import predict_case

    result = predict_case(case_from_scene(scene, inputs), models, device)
    return result, add_result_to_scene(scene, result, inputs)


def scene_inputs_from_case(scene, case) -> SceneInputs:
    """Load a case folder into the scene the way Slicer holds a case: one scalar volume per IVIM
    b-value, T2WI/DWI/US volumes, the three CEUS phase frames, one segmentation node with a segment
    from each ROI's label 1 (the largest tumour), all in a patient/study of the subject hierarchy."""
    import slicer

    from ..io.ceus import select_phase_frames
    from ..io.images import vector_to_frames

    available = case.available
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), case.case_id),
                                      "HEROVision inputs")
    inputs = SceneInputs(case.case_id, scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case.case_id} tumour"), {})
    if "ivim" in available:
        series = case.load_ivim()
        inputs.ivim_volumes = [volume_node_from_image(scene, frame, f"{case.case_id} IVIM b={b:g}")
                               for frame, b in zip(vector_to_frames(series.image), series.bvalues)]
        for node, b in zip(inputs.ivim_volumes, series.bvalues):
            node.SetAttribute(BVALUE_ATTRIBUTE, f"{b:g}")
        inputs.bvalues = list(series.bvalues)
    for modality in ("t2wi", "dwi", "us"):
        if modality in available:
            inputs.volumes[modality] = volume_node_from_image(scene, case.load_image(modality),
                                                              f"{case.case_id} {modality.upper()}")
    if "ceus" in available:
        series = case.load_image("ceus")
        frames = vector_to_frames(series)
        phases = select_phase_frames(case.load_ceus_times(series), source=case.frame_times_source)
        inputs.ceus_phase_volumes = [volume_node_from_image(scene, frames[k], f"{case.case_id} CEUS {phase}")
                                     for phase, k in phases.items()]
    for modality in available:
        roi = sitk.Cast(case.load_roi(modality, image_from_volume_node(inputs.reference_node(modality))) == 1,
                        sitk.sitkUInt8)
        labelmap = volume_node_from_image(scene, roi, f"{modality} tumour", "vtkMRMLLabelMapVolumeNode")
        segmentation = inputs.segmentation.GetSegmentation()
        before = segmentation.GetNumberOfSegments()
        slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, inputs.segmentation)
        _remove_node(scene, labelmap)
        inputs.segments[modality] = segmentation.GetNthSegmentID(before)
        segmentation.GetSegment(inputs.segments[modality]).SetName(f"tumour on {modality.upper()}")
    for node in (*inputs.ivim_volumes, *inputs.volumes.values(), *inputs.ceus_phase_volumes, inputs.segmentation):
        hierarchy.SetItemParent(_subject_hierarchy_item(hierarchy, node), study)
    return inputs


def save_scene(scene, folder, inputs=()) -> Path:
    """Write every node's data beside ``folder/scene.mrml`` and the scene itself; Slicer opens it as
    is. ``folder`` is claimed for ``herovision scene`` (never one of ``inputs``); the files are staged
    and move in together when complete, so data paths stay relative and a failed write leaves
    nothing half-made."""
    with staged_outputs(claim_output_folder(folder, "scene", inputs).path) as partial:
        for k in range(scene.GetNumberOfNodes()):
            node = scene.GetNthNode(k)
            if not node.IsA("vtkMRMLStorableNode") or not node.AddDefaultStorageNode():
                continue
            storage = node.GetStorageNode()
            safe_name = "".join(c if c.isalnum() or c in "-_=." else "_" for c in node.GetName())
            file_name = f"{safe_name}.{storage.GetDefaultWriteFileExtension()}"
            storage.SetFileName(str(partial / file_name))
            if not storage.WriteData(node):
                raise InputError(node.GetName(), f"could not be written as {file_name}")
        scene.SetRootDirectory(str(partial))
        scene.SetURL(str(partial / "scene.mrml"))
        if not scene.Commit():
            raise InputError(folder, "the scene file could not be written")
    return Path(folder) / "scene.mrml"
