"""DICOM studies written by the tests themselves (pydicom, highdicom): a case's images as a scanner
would store them — MR as single-frame slices (b-values in the standard or a vendor's tag), as one
enhanced multi-frame object, or as Siemens mosaics with their CSA header; US as one frame, CEUS as a
multi-frame cine with its frame times, ROIs as DICOM SEG."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, UltrasoundImageStorage, \
    UltrasoundMultiFrameImageStorage, generate_uid

#: Where each vendor writes a slice's b-value (the standard tag first), and the manufacturer name
#: that tells a reader to look there.
BVALUE_TAGS = {"standard": (0x00189087, "FD"), "siemens": (0x0019100C, "IS"), "ge": (0x00431039, "IS"),
               "philips": (0x20011003, "FL")}
MANUFACTURERS = {"standard": "HEROVision test scanner", "siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS",
                 "philips": "Philips Medical Systems"}


def csa_header(tags: dict[str, tuple[str, list]]) -> bytes:
    """A Siemens CSA2 ("SV10") header: name → (VR, values), each value an item of text, as the
    scanner writes (0029,1010); the layout nibabel's and dcm2niix's readers parse."""
    out = b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(tags), 77)
    for name, (vr, values) in tags.items():
        out += struct.pack("<64si4s3i", name.encode(), len(values), vr.encode(), 0, len(values), 77)
        for value in values:
            text = f"{value}".encode() + b"\0"
            out += struct.pack("<4i", len(text), len(text), 77, len(text)) + text + b"\0" * (-len(text) % 4)
    return out


def _position(point) -> list[str]:
    return [f"{x:.6f}" for x in point]


def _orientation(direction: np.ndarray) -> list[str]:
    """Image Orientation (Patient): the row and column direction cosines (the first two axes)."""
    return [f"{x:.8f}" for x in (*direction[:, 0], *direction[:, 1])]


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

    def _new_series(self, volumes: list[sitk.Image]):
        """A new series of this study: its UID, and the volumes' direction, spacing, origin and
        voxels (volumes × z × y × x)."""
        self.number += 1
        series_uid = generate_uid()
        self.datasets[series_uid] = []
        reference = volumes[0]
        return (series_uid, np.asarray(reference.GetDirection()).reshape(3, 3), reference.GetSpacing(),
                np.asarray(reference.GetOrigin()), np.stack([sitk.GetArrayFromImage(v) for v in volumes]).astype(np.float64))

    def mr_series(self, volumes: list[sitk.Image], description: str, bvalues=None, vendor: str = "standard") -> str:
        """Single-frame MR slices of one or more volumes on one grid (a diffusion series: one per b-value)."""
        series_uid, direction, spacing, origin, arrays = self._new_series(volumes)
        low, high = arrays.min(), arrays.max()
        instance = 0
        for v, array in enumerate(arrays):
            for k in range(array.shape[0]):
                instance += 1
                ds = self._dataset(MRImageStorage, series_uid, description, "MR")
                ds.InstanceNumber = instance
                ds.ImagePositionPatient = _position(origin + direction[:, 2] * spacing[2] * k)
                ds.ImageOrientationPatient = _orientation(direction)
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

    def enhanced_mr_series(self, volumes: list[sitk.Image], description: str, bvalues=None) -> str:
        """One enhanced MR object (multi-frame, functional groups) holding every slice of every
        volume, b-values in each frame's MR Diffusion sequence — as Philips scanners write them."""
        series_uid, direction, spacing, origin, arrays = self._new_series(volumes)
        ds = self._dataset(EnhancedMRImageStorage, series_uid, description, "MR")
        ds.InstanceNumber, ds.NumberOfFrames = 1, arrays.shape[0] * arrays.shape[1]
        ds.Manufacturer = MANUFACTURERS["philips"]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION" if bvalues is not None else "M", "NONE"]
        ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20260101", "120000", "20260101120000"
        ds.PresentationLUTShape, ds.ImageComments = "IDENTITY", ""
        ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
        shared, measures, plane, transform = Dataset(), Dataset(), Dataset(), Dataset()
        measures.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        measures.SliceThickness, measures.SpacingBetweenSlices = f"{spacing[2]:.6f}", f"{spacing[2]:.6f}"
        plane.ImageOrientationPatient = _orientation(direction)
        self._pixels(ds, arrays.reshape(-1, *arrays.shape[2:]))
        transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = (ds.RescaleIntercept,
                                                                                   ds.RescaleSlope, "US")
        del ds.RescaleIntercept, ds.RescaleSlope  # enhanced objects keep them in the functional groups
        shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
        shared.PixelValueTransformationSequence = [transform]
        ds.SharedFunctionalGroupsSequence = [shared]
        frames = []
        for v in range(arrays.shape[0]):
            for k in range(arrays.shape[1]):
                frame, content, position = Dataset(), Dataset(), Dataset()
                content.StackID, content.InStackPositionNumber = "1", k + 1
                content.DimensionIndexValues = [v + 1, k + 1]
                position.ImagePositionPatient = _position(origin + direction[:, 2] * spacing[2] * k)
                frame.FrameContentSequence, frame.PlanePositionSequence = [content], [position]
                if bvalues is not None:  # one gradient direction per b-value (Philips marks ISOTROPIC
                    diffusion = Dataset()  # frames as derived maps, which dcm2niix then leaves out)
                    diffusion.DiffusionBValue = float(bvalues[v])
                    diffusion.DiffusionDirectionality = "DIRECTIONAL" if bvalues[v] else "NONE"
                    if bvalues[v]:
                        gradient = Dataset()
                        gradient.DiffusionGradientOrientation = [0.0, 0.0, 1.0]
                        diffusion.DiffusionGradientDirectionSequence = [gradient]
                    frame.MRDiffusionSequence = [diffusion]
                frames.append(frame)
        ds.PerFrameFunctionalGroupsSequence = frames
        organisation, stack, in_stack = Dataset(), Dataset(), Dataset()
        organisation.DimensionOrganizationUID = generate_uid()
        ds.DimensionOrganizationSequence = [organisation]
        for item, pointer, group in ((stack, 0x00189087 if bvalues is not None else 0x00209056, 0x00189117
                                      if bvalues is not None else 0x00209111),
                                     (in_stack, 0x00209057, 0x00209111)):
            item.DimensionOrganizationUID = organisation.DimensionOrganizationUID
            item.DimensionIndexPointer, item.FunctionalGroupPointer = pointer, group
        ds.DimensionIndexSequence = [stack, in_stack]
        self._save(ds, series_uid)
        return series_uid

    def mosaic_series(self, volumes: list[sitk.Image], description: str, bvalues) -> str:
        """Siemens mosaics: each volume's slices tiled into one frame (row by row), geometry and
        b-value in the CSA header, the position that of the whole mosaic frame as the scanner
        writes it (the first slice's corner moved by half the extra rows and columns)."""
        series_uid, direction, spacing, origin, arrays = self._new_series(volumes)
        columns, rows, slices = volumes[0].GetSize()
        side = math.ceil(math.sqrt(slices))
        low, high = arrays.min(), arrays.max()
        corner = origin - (direction[:, 1] * spacing[1] * rows * (side - 1) / 2
                           + direction[:, 0] * spacing[0] * columns * (side - 1) / 2)
        for v, array in enumerate(arrays):
            mosaic = np.zeros((side * rows, side * columns))
            for k in range(slices):
                mosaic[(k // side) * rows:(k // side + 1) * rows, (k % side) * columns:(k % side + 1) * columns] = array[k]
            ds = self._dataset(MRImageStorage, series_uid, description, "MR")
            ds.Manufacturer, ds.InstanceNumber, ds.AcquisitionNumber = "SIEMENS", v + 1, v + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"]
            ds.ImagePositionPatient, ds.ImageOrientationPatient = _position(corner), _orientation(direction)
            ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
            ds.SliceThickness, ds.PatientPosition = f"{spacing[2]:.6f}", "HFS"
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "EP", "SK", "2D"
            ds.AcquisitionMatrix = [0, columns, rows, 0]
            ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0A, "US", slices)
            ds.private_block(0x0019, "SIEMENS MR HEADER").add_new(0x0C, "IS", str(int(bvalues[v])))
            csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            csa.add_new(0x10, "OB", csa_header({
                "NumberOfImagesInMosaic": ("US", [slices]),
                "B_value": ("IS", [int(bvalues[v])]),
                "SliceNormalVector": ("FD", [f"{x:.8f}" for x in direction[:, 2]]),
                "DiffusionDirectionality": ("CS", ["NONE" if bvalues[v] == 0 else "ISOTROPIC"])}))
            self._pixels(ds, mosaic, (low, high))
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
