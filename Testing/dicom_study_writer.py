"""DICOM studies written by the tests themselves (pydicom, highdicom): a case's images as a scanner
would store them — MR as single-frame slices (b-values in the standard or a vendor's tag), US as one
frame, CEUS as a multi-frame cine with its frame times, ROIs as DICOM SEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, UltrasoundImageStorage, \
    UltrasoundMultiFrameImageStorage, generate_uid

#: Where each vendor writes a slice's b-value (the standard tag first), and the manufacturer name
#: that tells a reader to look there.
BVALUE_TAGS = {"standard": (0x00189087, "FD"), "siemens": (0x0019100C, "IS"), "ge": (0x00431039, "IS"),
               "philips": (0x20011003, "FL")}
MANUFACTURERS = {"standard": "HEROVision test scanner", "siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS",
                 "philips": "Philips Medical Systems"}


class Study:
    """One patient's study: every series written into ``folder`` shares the patient and study."""

    def __init__(self, folder: Path, patient: str = "PATIENT1", study_uid: str | None = None):
        self.folder, self.patient, self.uid = Path(folder), patient, study_uid or generate_uid()
        self.frame_of_reference = generate_uid()
        self.number = 0
        self.datasets: dict[str, list] = {}  # series UID → its datasets (what a SEG references)

    def _dataset(self, sop_class: str, series_uid: str, description: str, modality: str) -> FileDataset:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = self.patient, f"{self.patient}^", "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.StudyDate, ds.StudyTime = self.uid, "1", "20260101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, self.number, description
        ds.Modality, ds.Manufacturer = modality, "SIEMENS"
        ds.FrameOfReferenceUID = self.frame_of_reference
        return ds

    @staticmethod
    def _pixels(ds: FileDataset, values: np.ndarray, value_range=None) -> None:
        """Store float ``values`` as 16-bit integers with a rescale (over ``value_range``, default their
        own) that keeps them to ~1e-5 of that range."""
        low, high = value_range or (float(values.min()), float(values.max()))
        slope = (high - low) / 65535.0 or 1.0
        ds.RescaleIntercept, ds.RescaleSlope = f"{low:.10g}", f"{slope:.10g}"
        stored = np.clip(np.round((values - float(ds.RescaleIntercept)) / float(ds.RescaleSlope)), 0, 65535)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.Rows, ds.Columns = values.shape[-2:]
        ds.PixelData = stored.astype(np.uint16).tobytes()

    def mr_series(self, volumes: list[sitk.Image], description: str, bvalues=None, vendor: str = "standard",
                  direction_override=None) -> str:
        """Single-frame MR slices of one or more volumes on one grid (a diffusion series: one per b-value)."""
        self.number += 1
        series_uid = generate_uid()
        self.datasets[series_uid] = []
        range_values = np.stack([sitk.GetArrayFromImage(v) for v in volumes]).astype(np.float64)
        low, high = range_values.min(), range_values.max()
        reference = volumes[0]
        direction = np.asarray(direction_override or reference.GetDirection()).reshape(3, 3)
        spacing, origin = reference.GetSpacing(), np.asarray(reference.GetOrigin())
        instance = 0
        for v, volume in enumerate(volumes):
            array = sitk.GetArrayFromImage(volume).astype(np.float64)
            for k in range(array.shape[0]):
                instance += 1
                ds = self._dataset(MRImageStorage, series_uid, description, "MR")
                ds.InstanceNumber = instance
                ds.ImagePositionPatient = [f"{x:.6f}" for x in origin + direction[:, 2] * spacing[2] * k]
                ds.ImageOrientationPatient = [f"{x:.8f}" for x in (*direction[:, 0], *direction[:, 1])]
                ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
                ds.SliceThickness, ds.PatientPosition = f"{spacing[2]:.6f}", "HFS"
                ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION" if bvalues is not None else "M", "NONE"]
                ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
                if bvalues is not None:
                    tag, vr = BVALUE_TAGS[vendor]
                    b = float(bvalues[v])
                    value = {"IS": str(int(round(b))), "FD": b, "FL": b}[vr]
                    if vendor == "ge":  # GE: b-value first of four, gradient direction in (0019,10bb–bd)
                        value = [str(int(round(b))), "0", "0", "0"]
                        for element, component in zip((0x001910BB, 0x001910BC, 0x001910BD), (0.0, 0.0, 1.0)):
                            ds.add_new(element, "DS", f"{component if b else 0.0:g}")
                    ds.add_new(tag, vr, value)
                    ds.Manufacturer = MANUFACTURERS[vendor]
                self._pixels(ds, array[k], (low, high))  # one scale for the series, as scanners do
                self._save(ds, series_uid)
        return series_uid

    def us_series(self, image: sitk.Image, description: str = "B-mode liver") -> str:
        self.number += 1
        series_uid = generate_uid()
        self.datasets[series_uid] = []
        ds = self._dataset(UltrasoundImageStorage, series_uid, description, "US")
        ds.InstanceNumber = 1
        ds.PixelSpacing = [f"{image.GetSpacing()[1]:.6f}", f"{image.GetSpacing()[0]:.6f}"]
        self._pixels(ds, sitk.GetArrayFromImage(image).astype(np.float64).reshape(image.GetSize()[1::-1]))
        self._save(ds, series_uid)
        return series_uid

    def ceus_series(self, frames: list[sitk.Image], times_s, description: str = "CEUS liver") -> str:
        self.number += 1
        series_uid = generate_uid()
        self.datasets[series_uid] = []
        ds = self._dataset(UltrasoundMultiFrameImageStorage, series_uid, description, "US")
        ds.InstanceNumber, ds.NumberOfFrames = 1, len(frames)
        ds.FrameIncrementPointer = pydicom.tag.Tag(0x0018, 0x1065)
        ds.FrameTimeVector = [f"{1000 * step:.3f}" for step in np.diff([times_s[0], *times_s])]
        ds.PixelSpacing = [f"{frames[0].GetSpacing()[1]:.6f}", f"{frames[0].GetSpacing()[0]:.6f}"]
        shape = frames[0].GetSize()[1::-1]
        self._pixels(ds, np.stack([sitk.GetArrayFromImage(f).astype(np.float64).reshape(shape) for f in frames]))
        self._save(ds, series_uid)
        return series_uid

    def segmentation(self, series_uid: str, labels: sitk.Image, description: str = "tumour") -> Path:
        """A DICOM SEG (highdicom) of ``series_uid``'s first volume: label k → segment k."""
        import highdicom
        from pydicom.sr.codedict import codes

        sources = self.datasets[series_uid]
        positions = {}
        for ds in sources:  # the first volume's slices, by position
            positions.setdefault(tuple(float(v) for v in ds.ImagePositionPatient), ds)
        slices = sorted(positions.values(), key=lambda ds: int(ds.InstanceNumber))
        array = sitk.GetArrayFromImage(labels).astype(np.uint8)[:len(slices)]
        descriptions = [highdicom.seg.SegmentDescription(
            segment_number=label, segment_label=f"{description} {label}",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.MANUAL)
            for label in sorted(int(v) for v in np.unique(array) if v)]
        seg = highdicom.seg.Segmentation(
            source_images=slices, pixel_array=array, segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=100 + self.number,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer="HEROVision tests",
            manufacturer_model_name="writer", software_versions="1", device_serial_number="1")
        path = self.folder / f"seg_{series_uid[-8:]}.dcm"
        seg.save_as(path)
        return path

    def _save(self, ds: FileDataset, series_uid: str) -> None:
        folder = self.folder / f"series{ds.SeriesNumber:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"{ds.InstanceNumber:05d}.dcm", enforce_file_format=True)
        self.datasets[series_uid].append(ds)


def write_case_study(case, folder: Path) -> Study:
    """A phantom case as a scanner's study: IVIM, T2WI and DWI as MR slices with their ROIs as DICOM
    SEG, a localizer (to be ignored), US as one frame and CEUS as a cine with its frame times."""
    from HEROVisionLib.io.images import vector_to_frames

    study = Study(folder, case.case_id)
    ivim = case.load_ivim()
    b0 = vector_to_frames(ivim.image)[0]
    uids = {"ivim": study.mr_series(vector_to_frames(ivim.image), "ep2d_ivim", bvalues=ivim.bvalues),
            "t2wi": study.mr_series([case.load_image("t2wi")], "t2_haste_tra"),
            "dwi": study.mr_series([case.load_image("dwi")], "ep2d_diff_b800_trace", bvalues=[800.0])}
    study.mr_series([case.load_image("t2wi")], "localizer")
    study.us_series(case.load_image("us"))
    ceus = case.load_image("ceus")
    study.ceus_series(vector_to_frames(ceus), case.load_ceus_times(ceus))
    for modality, uid in uids.items():
        study.segmentation(uid, case.load_roi(modality, b0 if modality == "ivim" else case.load_image(modality)))
    return study
