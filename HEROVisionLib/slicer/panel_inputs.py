"""What the Predict panel reads from the scene before it predicts: b-values from the nodes, volume
sequences unpacked into the volumes a prediction takes, a tumour VOI carried from one series to
another, the VOI's size as it is drawn, and every problem a prediction would meet — listed while the
user is still choosing inputs, not discovered after Predict was pressed.

A VOI is carried the way the IVIM study carried the b = 1000 VOI onto the parametric maps: the
segment is resampled in physical space onto the other series' grid and added as a segment of its
own, so the radiologist sees it on that series and can confirm or correct it there.
"""

from __future__ import annotations

import re

import SimpleITK as sitk

from ..errors import HEROVisionError, InputError
from ..io.case import MODALITIES
from ..io.ceus import select_phase_frames
from ..io.diffusion import validate_bvalues
from ..io.numbers import plain_number
from ..io.geometry import same_grid
from ..io.measure import largest_axial_diameter_cm, volume_ml
from .dicom_sources import bvalues_from_dicom_sources
from .nodes import (BVALUE_ATTRIBUTE, SceneInputs, image_from_volume_node, label_image_from_segment,
                   volume_node_from_image)


#: What Slicer's DICOM multi-volume import writes on the node it loads: the tag its frames differ
#: by (e.g. "Standard.B-value") and the frames' values of that tag, comma separated.
MULTIVOLUME_TAG_ATTRIBUTE = "MultiVolume.FrameIdentifyingDICOMTagName"
MULTIVOLUME_LABELS_ATTRIBUTE = "MultiVolume.FrameLabels"


def _is_bvalue_index(name: str, unit: str = "") -> bool:
    """A sequence index that counts b-values: "b-value", "DiffusionBValue", or the names Slicer's
    DICOM import (MultiVolumeImporter) gives it — "Standard.B-value", "Siemens.B-value", … in sec/mm2."""
    key = re.sub(r"[^a-z]", "", name.lower())
    return key == "b" or key.endswith("bvalue") or re.sub(r"[^a-z0-9]", "", unit.lower()) in {"smm2", "smm", "secmm2"}


def bvalues_from_nodes(nodes, file_for_instance=None) -> list[float] | None:
    """The b-values of IVIM volumes from their ``DiffusionBValue`` attributes, else — for volumes
    loaded through Slicer's DICOM module, given its database's ``file_for_instance`` — from their
    DICOM files; None when some volume has neither (the panel then asks for them)."""
    values = [node.GetAttribute(BVALUE_ATTRIBUTE) for node in nodes]
    if not values:
        return None
    if any(v is None for v in values):
        return bvalues_from_dicom_sources(nodes, file_for_instance) if file_for_instance else None
    try:
        return [float(v) for v in values]
    except ValueError as error:
        raise InputError(BVALUE_ATTRIBUTE, f"attribute is not a number: {error}") from None


def sequence_volumes(sequence_node) -> list:
    """The volumes of a volume sequence, in order (its data nodes, read without copying)."""
    volumes = [sequence_node.GetNthDataNode(k) for k in range(sequence_node.GetNumberOfDataNodes())]
    if not volumes or any(v is None or not v.IsA("vtkMRMLScalarVolumeNode") for v in volumes):
        raise InputError(sequence_node.GetName(), "is not a sequence of scalar volumes")
    return volumes


def sequence_bvalues(sequence_node, file_for_instance=None) -> list[float] | None:
    """A diffusion sequence's b-values: its index values when its index is a b-value, else the
    frame labels of a DICOM multi-volume import identified by a b-value tag, else its volumes'
    (:func:`bvalues_from_nodes`), else None."""
    count = sequence_node.GetNumberOfDataNodes()
    if _is_bvalue_index(sequence_node.GetIndexName() or "", sequence_node.GetIndexUnit() or ""):
        labels, what = [sequence_node.GetNthIndexValue(k) for k in range(count)], "its b-value index"
    elif _is_bvalue_index(sequence_node.GetAttribute(MULTIVOLUME_TAG_ATTRIBUTE) or ""):
        labels, what = (sequence_node.GetAttribute(MULTIVOLUME_LABELS_ATTRIBUTE) or "").split(","), "its frame labels"
    else:
        return bvalues_from_nodes(sequence_volumes(sequence_node), file_for_instance)
    try:
        values = [float(v) for v in labels]
    except ValueError:
        raise InputError(sequence_node.GetName(), f"{what} holds a value that is not a number") from None
    if len(values) != count:
        raise InputError(sequence_node.GetName(), f"{what} gives {len(values)} b-value(s) for {count} volumes")
    return values


def ceus_phase_volumes_from_sequence(sequence_node) -> list:
    """The arterial, portal and late frames of a CEUS sequence indexed by time in seconds."""
    try:
        times = [float(sequence_node.GetNthIndexValue(k)) for k in range(sequence_node.GetNumberOfDataNodes())]
    except ValueError:
        raise InputError(sequence_node.GetName(), "CEUS frames need time index values in seconds") from None
    volumes = sequence_volumes(sequence_node)
    return [volumes[k] for k in select_phase_frames(times, source=sequence_node.GetName()).values()]


def parse_bvalues(text: str, source: str = "b-values") -> list[float]:
    """b-values typed by the user: numbers separated by commas, semicolons or spaces."""
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        return [plain_number(p) for p in parts]
    except ValueError:
        raise InputError(source, f"{text!r} is not a list of numbers (e.g. 0, 10, 20, 40, 80, 200, 400, 600, 1000)") from None


def segment_measures(scene, segmentation_node, segment_id: str, reference_node) -> tuple[float, float]:
    """Largest axial diameter (cm) and volume (ml) of a segment on a volume's grid."""
    label = label_image_from_segment(scene, segmentation_node, segment_id, reference_node)
    name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
    return largest_axial_diameter_cm(label, 1, name), volume_ml(label, 1, name)


def carry_segment(scene, segmentation_node, segment_id: str, source_node, target_node, name: str) -> str:
    """Copy a VOI drawn on ``source_node`` onto ``target_node``'s grid (resampled in physical space,
    nearest neighbour) as a new segment called ``name``; returns its id. The original segment is
    untouched; a segment of that name made by an earlier carry is replaced."""
    import slicer

    source_label = label_image_from_segment(scene, segmentation_node, segment_id, source_node)
    target = image_from_volume_node(target_node)
    carried = sitk.Resample(source_label, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(carried).any():
        raise InputError(name, f"the VOI drawn on {source_node.GetName()} lies outside {target_node.GetName()}")
    segmentation = segmentation_node.GetSegmentation()
    previous = segmentation.GetSegmentIdBySegmentName(name)
    labelmap = volume_node_from_image(scene, carried, "__herovision_carry", "vtkMRMLLabelMapVolumeNode")
    try:
        before = segmentation.GetNumberOfSegments()
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
            raise InputError(name, f"could not be added to {segmentation_node.GetName()}")
        new_id = segmentation.GetNthSegmentID(before)
    finally:
        for k in reversed(range(labelmap.GetNumberOfDisplayNodes())):
            scene.RemoveNode(labelmap.GetNthDisplayNode(k))
        scene.RemoveNode(labelmap)
    segmentation.GetSegment(new_id).SetName(name)
    segmentation.GetSegment(new_id).SetColor(segmentation.GetSegment(segment_id).GetColor())
    if previous:
        segmentation.RemoveSegment(previous)
    return new_id


def input_problems(scene, inputs: SceneInputs) -> list[str]:
    """Everything that would stop or weaken a prediction of ``inputs``, in words, before it runs:
    no input at all, missing or empty segments, b-value counts, grids that disagree."""
    problems = []
    modalities = {m: inputs.reference_node(m) for m in MODALITIES}
    chosen = {m: node for m, node in modalities.items() if node is not None}
    if not chosen:
        return ["choose at least one input volume"]
    if inputs.segmentation is None:
        return ["choose the segmentation that holds the tumour VOI"]
    if inputs.ivim_volumes:
        try:
            validate_bvalues(inputs.bvalues, len(inputs.ivim_volumes), "IVIM b-values")
        except InputError as error:
            problems.append(error.problem.replace("IVIM b-values: ", ""))
        first = image_from_volume_node(inputs.ivim_volumes[0])
        if any(not same_grid(image_from_volume_node(v), first) for v in inputs.ivim_volumes[1:]):
            problems.append("the IVIM b-value volumes are not on one grid")
    if inputs.ceus_phase_volumes and len(inputs.ceus_phase_volumes) != 3:
        problems.append(f"CEUS needs 3 phase volumes (arterial, portal, late), got {len(inputs.ceus_phase_volumes)}")
    for modality, node in chosen.items():
        segment_id = inputs.segments.get(modality)
        if not segment_id:
            problems.append(f"{modality.upper()}: choose the tumour segment")
            continue
        try:
            label_image_from_segment(scene, inputs.segmentation, segment_id, node)
        except HEROVisionError as error:
            problems.append(f"{modality.upper()}: {error}")
    return problems
