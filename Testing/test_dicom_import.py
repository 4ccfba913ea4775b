"""``herovision import``: DICOM studies written by the tests (every vendor's b-value tag, enhanced
multi-frame objects, Siemens mosaics with their CSA header, oblique and flipped orientations, US and a CEUS cine, ROIs as DICOM SEG) and the real Siemens mosaic DWI files
nibabel ships become case folders with the right shape, geometry and b-values; a phantom case
round-trips through DICOM to the same prediction; a study of two patients is refused."""

import gzip
import json
import math
import re
import shutil
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from HEROVisionLib.cli import main
from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Case
from HEROVisionLib.io.diffusion import read_diffusion_series
from HEROVisionLib.io.dicom_study import import_study
from HEROVisionLib.io.images import read_image, read_multiframe, vector_to_frames
from HEROVisionLib.predict import load_models, predict_case

from dicom_study_writer import Study, write_case_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _corners(image: sitk.Image) -> np.ndarray:
    """World positions (mm) of the eight corner voxels, in a fixed order of the points themselves."""
    size = image.GetSize()
    points = [image.TransformIndexToPhysicalPoint((i, j, k)) for i in (0, size[0] - 1) for j in (0, size[1] - 1)
              for k in (0, size[2] - 1)]
    return np.array(sorted(np.round(points, 3).tolist()))


def _volume(direction, size=(14, 10, 6), spacing=(1.5, 1.25, 4.0), origin=(-20.0, 35.0, 12.0), seed=0) -> sitk.Image:
    values = np.random.default_rng(seed).uniform(50, 900, size=size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _rotation(degrees: float, axis) -> tuple:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    return tuple((np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross).ravel())


ORIENTATIONS = {"axial": (1, 0, 0, 0, 1, 0, 0, 0, 1), "flipped": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
                "oblique": _rotation(17.0, (0.3, 1.0, 0.2))}


def _same_image(written: sitk.Image, imported: sitk.Image) -> None:
    """Same grid in the world (corners within 0.01 mm) and the same values at the same places."""
    assert imported.GetSize() == written.GetSize()
    assert np.abs(_corners(imported) - _corners(written)).max() < 0.01
    on_written = sitk.Resample(imported, written, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(written)
    assert np.abs(sitk.GetArrayFromImage(on_written) - values).max() <= 2e-5 * np.ptp(values)


def _diffusion_series(study: Study, storage: str, volumes, bvalues) -> None:
    """Single-frame slices with the b-value in the standard or a vendor's tag, one enhanced
    multi-frame object, or Siemens mosaics with their CSA header."""
    if storage == "enhanced":
        study.enhanced_mr_series(volumes, "ep2d_ivim_4b", bvalues=bvalues)
    elif storage == "mosaic":
        study.mosaic_series(volumes, "ep2d_ivim_4b", bvalues=bvalues)
    else:
        study.mr_series(volumes, "ep2d_ivim_4b", bvalues=bvalues, vendor=storage)


STORAGES = ["standard", "siemens", "ge", "philips", "enhanced", "mosaic"]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("storage", STORAGES)
def test_a_diffusion_series_keeps_its_geometry_and_b_values_whatever_the_vendor_storage_and_orientation(
        tmp_path, storage, orientation):
    bvalues = (0.0, 50.0, 300.0, 800.0)
    volumes = [_volume(ORIENTATIONS[orientation], seed=k) for k in range(len(bvalues))]
    study = Study(tmp_path / "study", "P7")
    _diffusion_series(study, storage, volumes, bvalues)
    t2wi = _volume(ORIENTATIONS[orientation], size=(20, 16, 6), spacing=(0.9, 0.8, 4.0), seed=9)
    study.mr_series([t2wi], "t2_tse_tra")
    case, assignment = import_study(tmp_path / "study", tmp_path / "cases")
    assert case.name == "P7" and set(assignment.used) == {"ivim.nii.gz + ivim.bval", "t2wi.nii.gz"}
    series = read_diffusion_series(case / "ivim.nii.gz")
    assert series.bvalues == pytest.approx(bvalues)
    for written, imported in zip(volumes, vector_to_frames(series.image)):
        _same_image(written, imported)
    _same_image(t2wi, read_image(case / "t2wi.nii.gz"))


def _siemens_mosaic_files(folder: Path) -> None:
    """The two real Siemens mosaic files the nibabel wheel ships, unpacked into ``folder``."""
    data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    folder.mkdir()
    for name in ("siemens_dwi_0", "siemens_dwi_1000"):
        with gzip.open(data / f"{name}.dcm.gz") as packed:
            (folder / f"{name}.dcm").write_bytes(packed.read())


def test_the_siemens_mosaic_files_nibabel_ships_import_as_a_48_slice_dwi(tmp_path):
    """Two real Siemens files (b = 0 and 1000), each 48 slices tiled in one 896 × 896 mosaic frame:
    one volume of 128 × 128 × 48 at b = 1000, at the world positions nibabel's own decoder gives."""
    from nibabel.nicom import dicomwrappers

    _siemens_mosaic_files(tmp_path / "study")
    case, assignment = import_study(tmp_path / "study", tmp_path / "cases", case_id="mosaic")
    assert assignment.used["dwi.nii.gz"].endswith("b = 1000")
    image = read_image(case / "dwi.nii.gz")
    assert image.GetSize() == (128, 128, 48)
    wrapper = dicomwrappers.wrapper_from_file(tmp_path / "study" / "siemens_dwi_1000.dcm")
    rows, columns, slices = wrapper.image_shape
    theirs = np.array(sorted(np.round([(wrapper.affine @ [r, c, s, 1])[:3] for r in (0, rows - 1)
                                       for c in (0, columns - 1) for s in (0, slices - 1)], 3).tolist()))
    assert np.abs(_corners(image) - theirs).max() < 0.01


@pytest.mark.parametrize("storage", STORAGES)
def test_a_per_modality_dicom_folder_reads_through_the_same_converter(tmp_path, storage):
    """A case may name a DICOM folder per modality: a mosaic or an enhanced object is tiled into its
    slices there too, with its b-values (a reader of single slices would see one tiled slice)."""
    bvalues = (0.0, 100.0, 800.0, 1000.0)
    volumes = [_volume(ORIENTATIONS["oblique"], seed=k) for k in range(len(bvalues))]
    _diffusion_series(Study(tmp_path / "ivim", "P8"), storage, volumes, bvalues)
    series = read_diffusion_series(tmp_path / "ivim" / "series01")
    assert series.bvalues == pytest.approx(bvalues)
    for written, imported in zip(volumes, vector_to_frames(series.image)):
        _same_image(written, imported)


def test_the_siemens_mosaic_files_as_a_dwi_folder_read_as_two_48_slice_volumes(tmp_path):
    _siemens_mosaic_files(tmp_path / "dwi")
    series = read_diffusion_series(tmp_path / "dwi")
    assert series.bvalues == (0.0, 1000.0) and series.image.GetSize() == (128, 128, 48)


def test_a_phantom_case_round_trips_through_dicom_to_the_same_prediction(phantom_cohort, untrained_models, tmp_path):
    """Case → a DICOM study (MR slices, US, a CEUS cine, the MR ROIs as DICOM SEG) → import → predict:
    the scores of the NIfTI case within 1e-4 (16-bit storage rounds intensities to ~1e-5 of their range),
    the same tumour measures."""
    case = Case(phantom_cohort / "A0003")
    write_case_study(case, tmp_path / "study")
    imported, assignment = import_study(tmp_path / "study", tmp_path / "cases")
    assert any(line.startswith("ignored: series 4 'localizer'") for line in assignment.lines())
    for name in ("us_roi.nrrd", "ceus_roi.nii.gz"):  # ROIs may also come as label maps on any grid
        shutil.copy(case.folder / name, imported / name)
    assert (imported / "ceus.times").read_text().split() == (case.folder / "ceus.times").read_text().split()
    models = load_models(untrained_models, "cpu")
    original, again = (predict_case(Case(folder, case.clinical), models, "cpu").row() for folder in
                       (case.folder, imported))
    assert again["inputs_used"] == original["inputs_used"] == "ivim;t2wi;dwi;us;ceus"
    for column in ("ta_risk_score", "sr_risk_score", "er_probability", "er_probability_combined"):
        assert again[column] == pytest.approx(original[column], abs=1e-4), column
    assert again["ivim_D_median"] == pytest.approx(original["ivim_D_median"], rel=1e-4)
    assert again["tumor_size_cm"] == original["tumor_size_cm"] and again["tumor_volume_ml"] == original["tumor_volume_ml"]


@pytest.mark.parametrize("syntax", ["RLE Lossless", "JPEG-LS Lossless"])
def test_a_study_stored_compressed_imports_to_the_same_voxels(phantom_cohort, tmp_path, syntax):
    """PACS exports are often compressed: every MR, US and CEUS file re-encoded losslessly gives the
    case the uncompressed study gives, voxel for voxel."""
    import pydicom
    from pydicom.uid import JPEGLSLossless, RLELossless

    write_case_study(Case(phantom_cohort / "A0003"), tmp_path / "study")
    plain, _ = import_study(tmp_path / "study", tmp_path / "plain")
    shutil.copytree(tmp_path / "study", tmp_path / "compressed")
    for file in (tmp_path / "compressed").rglob("*.dcm"):
        dataset = pydicom.dcmread(file)
        if dataset.Modality in ("MR", "US"):
            dataset.compress({"RLE Lossless": RLELossless, "JPEG-LS Lossless": JPEGLSLossless}[syntax])
            dataset.save_as(file)
    compressed, _ = import_study(tmp_path / "compressed", tmp_path / "cases")
    images = sorted(p.name for p in plain.iterdir() if p.name.endswith((".nii.gz", ".nrrd")))
    assert {"ivim.nii.gz", "t2wi.nii.gz", "dwi.nii.gz", "us.nrrd", "ceus.nii.gz"} <= set(images)
    for name in images:
        expected, found = (sitk.ReadImage(str(folder / name)) for folder in (plain, compressed))
        assert np.array_equal(sitk.GetArrayFromImage(found), sitk.GetArrayFromImage(expected)), name
        assert found.GetSpacing() == expected.GetSpacing() and found.GetDirection() == expected.GetDirection()


def test_a_folder_of_two_patients_is_refused_naming_both(tmp_path):
    for patient in ("ALPHA", "BRAVO"):
        Study(tmp_path / "study" / patient, patient).mr_series([_volume(ORIENTATIONS["axial"])], "t2_tse")
    with pytest.raises(InputError, match="holds 2 patients: ALPHA .*BRAVO"):
        import_study(tmp_path / "study", tmp_path / "cases")
    assert not (tmp_path / "cases").exists()  # refused before anything was written


def test_a_site_names_its_series_by_a_rules_file_and_the_command_says_what_went_where(tmp_path, capsys):
    study = Study(tmp_path / "study", "P1")
    study.mr_series([_volume(ORIENTATIONS["axial"])], "ax liver fs")
    assert main(["import", str(tmp_path / "study"), "--out", str(tmp_path / "plain")]) == 2
    assert "no series could be assigned" in capsys.readouterr().err
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"t2wi": ["ax liver"]}))
    assert main(["import", str(tmp_path / "study"), "--out", str(tmp_path / "cases"), "--case-id", "site-01",
                 "--rules", str(rules)]) == 0
    assert "t2wi.nii.gz ← series 1 'ax liver fs'" in capsys.readouterr().out
    assert (tmp_path / "cases" / "site-01" / "t2wi.nii.gz").is_file()
    rules.write_text(json.dumps({"t2": ["x"]}))
    assert main(["import", str(tmp_path / "study"), "--out", str(tmp_path / "other"), "--rules", str(rules)]) == 2
    assert "unknown rule(s) t2" in capsys.readouterr().err


@pytest.mark.parametrize("damage, reason", [
    (lambda files: files[2].unlink(), r"slices are not evenly spaced"),  # a gap dcm2niix would stack over
    (lambda files: _set_in(files[1], "ImagePositionPatient", None), r"has no ImagePositionPatient"),
])
def test_a_series_whose_slices_cannot_be_stacked_is_left_out_with_the_reason(tmp_path, capsys, damage, reason):
    """As a per-modality DICOM folder is refused, a study's series is left out, and the command says why
    (a localizer's three planes are such a series, and must not stop an import)."""
    study = Study(tmp_path / "study", "P1")
    uid = study.mr_series([_volume(ORIENTATIONS["axial"])], "t2_tse")
    study.mr_series([_volume(ORIENTATIONS["axial"], seed=1)], "dwi b800", bvalues=[800.0])
    damage(sorted(p for p in (tmp_path / "study").rglob("*") if p.is_file() and _series_of(p) == uid))
    assert main(["import", str(tmp_path / "study"), "--out", str(tmp_path / "cases")]) == 0
    printed = capsys.readouterr().out
    assert re.search(rf"ignored: series 1 't2_tse' \(MR, \d file\(s\)\): .*{reason}", printed), printed
    assert not (tmp_path / "cases" / "P1" / "t2wi.nii.gz").exists() and (tmp_path / "cases" / "P1" / "dwi.nii.gz").is_file()


def _series_of(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _set_in(path: Path, keyword: str, value) -> None:
    import pydicom

    dataset = pydicom.dcmread(path)
    if value is None:
        delattr(dataset, keyword)
    else:
        setattr(dataset, keyword, value)
    dataset.save_as(path)


def test_a_multiframe_ceus_cine_keeps_one_time_per_frame(tmp_path):
    frames = [_volume(ORIENTATIONS["axial"], size=(30, 20, 1), spacing=(0.3, 0.3, 1.0), origin=(0, 0, 0), seed=k)
              for k in range(5)]
    study = Study(tmp_path / "study", "P2")
    study.ceus_series(frames, (0.0, 7.5, 15.0, 40.0, 120.0))
    study.us_series(frames[0])
    case, _ = import_study(tmp_path / "study", tmp_path / "cases")
    assert (case / "ceus.times").read_text().split() == ["0", "7.5", "15", "40", "120"]
    cine = read_multiframe(case / "ceus.nii.gz")
    assert cine.GetNumberOfComponentsPerPixel() == 5 and cine.GetSpacing()[:2] == pytest.approx((0.3, 0.3))
    for written, imported in zip(frames, vector_to_frames(cine)):
        values = sitk.GetArrayFromImage(written)
        assert np.abs(sitk.GetArrayFromImage(imported) - values).max() <= 2e-5 * np.ptp(values)


def test_a_patient_id_that_is_a_path_never_leaves_the_output_folder(tmp_path):
    """The case folder is named by the DICOM Patient ID unless --case-id is given: an ID such as
    '../outside' is refused before anything is written, and the study is left as it was."""
    Study(tmp_path / "study", "../outside").mr_series([_volume(ORIENTATIONS["axial"])], "t2_tse")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match="not a plain name"):
        import_study(tmp_path / "study", tmp_path / "cases")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    case, _ = import_study(tmp_path / "study", tmp_path / "cases", case_id="P-1")
    assert case == (tmp_path / "cases" / "P-1").resolve() and (case / "t2wi.nii.gz").is_file()


def test_a_file_that_claims_to_be_a_segmentation_but_is_not_is_refused_naming_it(tmp_path):
    import pydicom

    study = Study(tmp_path / "study", "P3")
    study.mr_series([_volume(ORIENTATIONS["axial"])], "t2_tse")
    fake = pydicom.dcmread(next((tmp_path / "study").rglob("*.dcm")))
    fake.Modality, fake.SOPInstanceUID = "SEG", pydicom.uid.generate_uid()
    fake.save_as(tmp_path / "study" / "fake_seg.dcm")
    with pytest.raises(InputError, match=r"fake_seg\.dcm: is not a DICOM SEG HEROVision can read"):
        import_study(tmp_path / "study", tmp_path / "cases")
    assert not (tmp_path / "cases").exists()


@pytest.mark.parametrize("cut", ["in its pixels", "in its header"])
def test_a_dicom_file_cut_short_is_refused_naming_it_in_a_folder_and_in_a_study(tmp_path, cut):
    """A converter fills or drops what is missing; HEROVision refuses the file by name, and writes nothing."""
    study = Study(tmp_path / "study", "P9")
    study.mr_series([_volume(ORIENTATIONS["axial"], seed=k) for k in range(4)], "ep2d_ivim", bvalues=(0, 50, 300, 800))
    file = sorted((tmp_path / "study" / "series01").glob("*.dcm"))[3]
    data = file.read_bytes()
    file.write_bytes(data[:-100] if cut == "in its pixels" else data[:len(data) // 2])
    with pytest.raises(InputError, match=rf"{file.name}: (truncated|cannot be read as DICOM: truncated)"):
        read_diffusion_series(tmp_path / "study" / "series01")
    with pytest.raises(InputError, match=rf"{file.name}: (truncated|cannot be read as DICOM: truncated)"):
        import_study(tmp_path / "study", tmp_path / "cases")
    assert not (tmp_path / "cases").exists()
