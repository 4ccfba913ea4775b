"""Volumes that came through Slicer's DICOM module: their source files, the b-values those files
hold, and a prediction made from them written back as DICOM objects of their study.

Slicer's DICOM plugins keep on each volume node they load the SOP Instance UIDs of its slices
(attribute ``DICOM.instanceUIDs``), and its DICOM database maps a UID to its file
(``slicer.dicomDatabase.fileForInstance``). That mapping is passed in as ``file_for_instance`` so
this module needs no running Slicer application. The files are read by the converter every DICOM
input goes through (dcm2niix, :mod:`HEROVisionLib.io.dicom_folder`): no vendor tag is read here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import InputError
from ..io.dicom_folder import read_dicom_folder
from ..io.output_folder import output_folder
from ..predict.dicom_export import dicom_objects, write_dicom_objects
from ..predict.outputs import write_case_outputs

#: The node attribute in which Slicer's DICOM plugins list the SOP Instance UIDs a volume was loaded from.
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


def source_files(node, file_for_instance) -> list[Path] | None:
    """The DICOM files a volume node was loaded from, or None when it did not come from DICOM."""
    uids = (node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return None
    files = [file_for_instance(uid) for uid in uids]
    missing = [uid for uid, file in zip(uids, files) if not file or not Path(file).is_file()]
    if missing:
        raise InputError(node.GetName(), f"{len(missing)} of its DICOM instances are not in the DICOM database "
                                         f"(e.g. {missing[0]}): re-import the study")
    return [Path(file) for file in files]


def _link_into(files, folder: Path) -> Path:
    """``folder`` holding (links to) ``files``, named by position so that no two collide."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, file in enumerate(files):
        target = folder / f"{k:06d}.dcm"
        try:
            os.symlink(Path(file).resolve(), target)
        except OSError:  # a file system without links
            target.write_bytes(Path(file).read_bytes())
    return folder


def bvalues_from_dicom_sources(nodes, file_for_instance) -> list[float] | None:
    """One b-value per volume node, from the diffusion attributes of the files each was loaded
    from; None when any node did not come from DICOM (the panel then asks). A node whose files
    hold no b-value, or several, is refused by name."""
    values = []
    with tempfile.TemporaryDirectory(prefix="herovision-slicer-dicom-") as work:
        for k, node in enumerate(nodes):
            files = source_files(node, file_for_instance)
            if files is None:
                return None
            bvalues = read_dicom_folder(_link_into(files, Path(work) / str(k))).bvalues
            if not bvalues or len(bvalues) != 1:
                raise InputError(node.GetName(), "its DICOM files hold " + (
                    "no b-value" if not bvalues else f"{len(bvalues)} b-values ({', '.join(f'{b:g}' for b in bvalues)})")
                    + ": choose one volume per b-value, or type the b-values")
            values.append(bvalues[0])
    return values


def export_scene_prediction(result, case, inputs, file_for_instance, out) -> list[Path]:
    """A prediction made from the panel's inputs as DICOM objects of their source study, into the
    new folder ``out``: a SEG, and for IVIM the Parametric Maps, of every MR input loaded through
    Slicer's DICOM module, and the measurement report. Refused when no MR input came from DICOM."""
    sources = {"ivim": list(inputs.ivim_volumes), "t2wi": [inputs.volumes.get("t2wi")],
               "dwi": [inputs.volumes.get("dwi")]}
    files = {}
    for modality, nodes in sources.items():
        found = [source_files(node, file_for_instance) for node in nodes if node is not None]
        if found and all(found):
            files[modality] = [file for group in found for file in group]
    if not files:
        raise InputError("DICOM export", "none of the IVIM, T2WI or DWI volumes was loaded through Slicer's DICOM "
                                         "module: there is no study to export into")
    with output_folder(out, "export-dicom") as claimed, \
            tempfile.TemporaryDirectory(prefix="herovision-slicer-export-") as work:
        study = _link_into([file for group in files.values() for file in group], Path(work) / "study")
        prediction = Path(work) / "prediction"
        prediction.mkdir()
        write_case_outputs(result, prediction)
        return write_dicom_objects(dicom_objects(prediction, study, case, modalities=list(files)), claimed.path)
