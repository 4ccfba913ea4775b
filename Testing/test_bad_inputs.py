"""The battery of bad inputs a careless user makes, command by command.

Every case is built the way a user would make it (a file cut short by a failed copy, a header edited
by hand, a cohort row typed wrong, an output folder chosen badly, a model package tampered with)
and run through the real command line. Each test asserts the one-line message (the input named, the
fault said), the exit status, that every input is byte-identical afterwards, and that the run left
nothing behind: no output folder, no half-written file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from HEROVisionLib.cli import BATCH_FAILED_CASES, main
from HEROVisionLib.io.output_folder import MARKER

from conftest import resign_manifest

ROOT = Path(__file__).resolve().parents[1]
NIFTI_PIXDIM_X = 80  # byte offset of pixdim[1] in a NIfTI-1 header
NIFTI_SROW_X = 280  # byte offset of srow_x


# --- the harness ---------------------------------------------------------------------------------


def _tree_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or the file itself) → SHA-256; links by their target text."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        items = [path]
    elif path.is_dir():
        items = sorted(path.rglob("*"))
    else:
        return {}
    digest = {}
    for item in items:
        if item.is_symlink():
            digest[str(item)] = "link→" + str(item.readlink())
        elif item.is_file():
            digest[str(item)] = hashlib.sha256(item.read_bytes()).hexdigest()
        else:
            digest[str(item)] = "folder"
    return digest


def refused(capsys, argv, *, watched, absent=(), message, status=2):
    """Run ``herovision argv``; assert the exit status, one ``herovision: error:`` line matching
    ``message``, every ``watched`` path unchanged, and every ``absent`` path not created."""
    before = {str(p): _tree_digest(p) for p in watched}
    capsys.readouterr()
    assert main([str(a) for a in argv]) == status
    error = capsys.readouterr().err.strip()
    assert "Traceback" not in error
    if status == 2:
        assert len(error.splitlines()) == 1 and error.startswith("herovision: error: "), error
        assert re.search(message, error), error
    assert {str(p): _tree_digest(p) for p in watched} == before
    for path in absent:
        assert not Path(path).exists(), f"{path} was left behind"
    return error


@pytest.fixture
def models(untrained_models):
    return untrained_models


@pytest.fixture
def case(phantom_cohort, tmp_path):
    """A fresh copy of one phantom case (with its cohort.csv row), to damage."""
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copytree(phantom_cohort / "A0001", cohort / "A0001")
    rows = (phantom_cohort / "cohort.csv").read_text().splitlines()
    (cohort / "cohort.csv").write_text("\n".join(rows[:2]) + "\n")
    return cohort / "A0001"


def _nifti_bytes(path: Path) -> bytearray:
    return bytearray(gzip.decompress(path.read_bytes()))


def _write_nifti(path: Path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))


# --- 1. images that do not hold what their header promises: `ivim` on the IVIM series ------------


def _cut_compressed(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cut_uncompressed(path):
    raw = _nifti_bytes(path)
    _write_nifti(path, raw[: len(raw) // 2])


def _longer_than_header(path):
    _write_nifti(path, _nifti_bytes(path) + b"\0" * 4096)


def _header_claims_more(path):
    raw = _nifti_bytes(path)
    raw[48:50] = struct.pack("<h", struct.unpack("<h", raw[48:50])[0] * 2)  # dim[4]: twice the b-values
    _write_nifti(path, raw)


def _with_value(value):
    def damage(path):
        raw = _nifti_bytes(path)
        offset = struct.unpack("<f", raw[108:112])[0]  # vox_offset
        position = int(offset) + 4 * 5000
        raw[position:position + 4] = struct.pack("<f", value)
        _write_nifti(path, raw)
    return damage


def _zero_spacing(path):
    raw = _nifti_bytes(path)
    raw[NIFTI_PIXDIM_X:NIFTI_PIXDIM_X + 4] = struct.pack("<f", 0.0)
    _write_nifti(path, raw)


def _negative_spacing(path):
    raw = _nifti_bytes(path)
    raw[NIFTI_PIXDIM_X + 4:NIFTI_PIXDIM_X + 8] = struct.pack("<f", -2.0)
    _write_nifti(path, raw)


def _sheared(path):
    raw = _nifti_bytes(path)
    raw[NIFTI_SROW_X + 4:NIFTI_SROW_X + 8] = struct.pack("<f", 1.5)  # srow_x[1]: y leans into x
    _write_nifti(path, raw)


def _damaged_magic(path):
    raw = _nifti_bytes(path)
    raw[345] = 0x80  # "n+1\0" → "n\x801\0"
    _write_nifti(path, raw)


def _scaling_overflow(path):
    raw = _nifti_bytes(path)
    raw[112:116] = struct.pack("<f", 1e37)  # scl_slope: ordinary voxels scale past float32's range
    _write_nifti(path, raw)


def _not_an_image(path):
    path.write_bytes(b"PK\x03\x04 a zip file renamed")


def _empty_file(path):
    path.write_bytes(b"")


IVIM_FAULTS = {
    "cut in half (compressed stream)": (_cut_compressed, r"ivim\.nii\.gz: cannot be read as an image: .*truncated"),
    "cut in half (data)": (_cut_uncompressed, r"ivim\.nii\.gz: truncated: shorter than its header declares"),
    "longer than its header": (_longer_than_header, r"ivim\.nii\.gz: longer than its header declares"),
    "header claims more volumes": (_header_claims_more, r"ivim\.nii\.gz: truncated: shorter than its header"),
    "a NaN voxel": (_with_value(float("nan")), r"ivim\.nii\.gz: 1 voxel value\(s\) are NaN or infinite"),
    "an infinite voxel": (_with_value(float("inf")), r"ivim\.nii\.gz: 1 voxel value\(s\) are NaN or infinite"),
    "zero voxel size": (_zero_spacing, r"ivim\.nii\.gz: voxel size in the header must be positive"),
    "negative voxel size": (_negative_spacing, r"ivim\.nii\.gz: voxel size in the header must be positive"),
    "sheared orientation": (_sheared, r"ivim\.nii\.gz: the image's axes are not perpendicular"),
    "damaged magic string": (_damaged_magic, r"ivim\.nii\.gz: not a readable NIfTI header \(magic string"),
    "intensity scaling beyond float32": (_scaling_overflow, r"ivim\.nii\.gz: \d+ voxel value\(s\) beyond the range of 32-bit"),
    "not an image": (_not_an_image, r"ivim\.nii\.gz: cannot be read as an image"),
    "empty file": (_empty_file, r"ivim\.nii\.gz: cannot be read as an image"),
}


@pytest.mark.parametrize("fault", sorted(IVIM_FAULTS))
def test_a_damaged_ivim_series_is_refused_naming_the_file(capsys, case, tmp_path, fault):
    damage, message = IVIM_FAULTS[fault]
    damage(case / "ivim.nii.gz")
    refused(capsys, ["ivim", case, "--out", tmp_path / "maps"], watched=[case], absent=[tmp_path / "maps"],
            message=message)


def test_a_damaged_nifti_header_is_one_line_on_the_console(case, tmp_path):
    """nibabel logs what its header check finds to its own handler, bound to the real console:
    only a separate process shows what a user sees."""
    import subprocess
    import sys

    _damaged_magic(case / "ivim.nii.gz")
    result = subprocess.run([sys.executable, "-m", "HEROVisionLib.cli", "ivim", str(case), "--out", str(tmp_path / "maps")],
                            capture_output=True, encoding="utf-8", errors="replace")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"herovision: error: {case / 'ivim.nii.gz'}: not a readable NIfTI "
                                                  "header (magic string 'n\\x801' is not valid)"]


# --- 2. the same faults in every format, at the reader -------------------------------------------


def _image_in(format_suffix: str, folder: Path) -> Path:
    image = sitk.GetImageFromArray(np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8))
    image.SetSpacing((0.8, 0.8, 3.0))
    path = folder / f"t2wi{format_suffix}"
    sitk.WriteImage(image, str(path), format_suffix in (".nrrd", ".mha"))
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_a_file_cut_short_is_refused_in_every_format(tmp_path, suffix):
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    path = _image_in(suffix, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(InputError, match=rf"t2wi{suffix.replace('.', '[.]')}: (cannot be read|truncated)"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_nan_and_infinite_voxels_are_refused_in_every_format(tmp_path, suffix, value):
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    array = np.ones((4, 5, 6), np.float32)
    array[1, 2, 3] = value
    path = tmp_path / f"dwi{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(InputError, match=r"dwi.*: 1 voxel value\(s\) are NaN or infinite"):
        read_image(path)


@pytest.mark.parametrize("reader", ["read_image", "read_multiframe"])
def test_a_nifti_scaling_that_overflows_32_bit_floats_is_refused(tmp_path, reader):
    """A damaged scl_slope (here 1e37) scales ordinary voxels past float32's ±3.4e38: they would read
    as infinity after the conversion every reader ends with."""
    import nibabel

    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io import images

    shape = (4, 5, 6) if reader == "read_image" else (4, 5, 6, 3)
    nifti = nibabel.Nifti1Image(np.full(shape, 100.0, np.float32), np.eye(4))
    nifti.header.set_slope_inter(1e37, 0.0)
    path = tmp_path / "dwi.nii"
    nibabel.save(nifti, path)
    with pytest.raises(InputError, match=r"dwi.nii: \d+ voxel value\(s\) beyond the range of 32-bit floats"):
        getattr(images, reader)(path)


@pytest.mark.parametrize("spacing", [b"0 0.8 3", b"-0.8 0.8 3", b"nan 0.8 3", b"0.8 x 3"])
def test_a_metaimage_voxel_size_that_is_not_positive_is_refused(tmp_path, spacing):
    """ITK would read a negative size as a flipped axis, and the ROI would then be blamed."""
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    path = _image_in(".mha", tmp_path)
    header, separator, data = path.read_bytes().partition(b"ElementDataFile = LOCAL\n")
    lines = [b"ElementSpacing = " + spacing if line.startswith(b"ElementSpacing") else line
             for line in header.split(b"\n")]
    path.write_bytes(b"\n".join(lines) + separator + data)
    with pytest.raises(InputError, match=r"t2wi\.mha: voxel size in the header must be positive"):
        read_image(path)


def _with_header_field(path: Path, field: bytes, value: bytes) -> None:
    """Rewrite one field of an uncompressed NRRD (``field: value``) or MetaImage (``field = value``)."""
    separator = b"\n\n" if path.suffix == ".nrrd" else b"ElementDataFile = LOCAL\n"
    header, separator, data = path.read_bytes().partition(separator)
    assign = b": " if path.suffix == ".nrrd" else b" = "
    lines = [field + assign + value if line.startswith(field + assign) else line for line in header.split(b"\n")]
    assert lines != header.split(b"\n"), field
    path.write_bytes(b"\n".join(lines) + separator + data)


@pytest.mark.parametrize("suffix, field, value, message", [
    (".mha", b"NDims", b"-1", "NDims in the header must be a whole number"),  # crashed ITK's reader
    (".mha", b"NDims", b"three", "NDims in the header must be a whole number"),
    (".mha", b"DimSize", b"6 5 4 3", "DimSize in the header must be 3 positive whole numbers"),  # 4th dropped
    (".mha", b"DimSize", b"6 -5 4", "DimSize in the header must be 3 positive whole numbers"),
    (".mha", b"BinaryDataByteOrderMSB", b"1e40", "BinaryDataByteOrderMSB in the header must be True or False"),
    (".mha", b"ElementType", b"MET_CHAR", "longer than its header declares"),  # float voxels read as bytes
    (".nrrd", b"type", b"int8", "longer than its header declares"),
    (".nrrd", b"sizes", b"6 5 2", "longer than its header declares"),
])
def test_a_header_that_misdescribes_its_voxels_is_refused(tmp_path, suffix, field, value, message):
    """Read silently, these gave another grid, another type or swapped bytes (or crashed)."""
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    path = tmp_path / f"t2wi{suffix}"
    image = sitk.GetImageFromArray(np.random.default_rng(0).uniform(1, 2, (4, 5, 6)).astype(np.float32))
    sitk.WriteImage(image, str(path), False)
    _with_header_field(path, field, value)
    with pytest.raises(InputError, match=rf"t2wi\{suffix}: {message}"):
        read_image(path)


def test_a_sheared_nrrd_is_refused_naming_the_image_not_its_roi(tmp_path):
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    path = _image_in(".nrrd", tmp_path)
    text = path.read_bytes().replace(b"(0,0.80000000000000004,0)", b"(0.4,0.8,0)", 1)
    text = text.replace(b"(0,0.8,0)", b"(0.4,0.8,0)", 1)
    path.write_bytes(text)
    with pytest.raises(InputError, match=r"t2wi\.nrrd: the image's axes are not perpendicular"):
        read_image(path)


def _dicom_series(folder: Path, patient: str, study: str, series: str, z0: float = 0.0, count: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        image = sitk.GetImageFromArray(np.full((1, 8, 8), 100 + k, np.int16))
        image.SetSpacing((1.0, 1.0, 3.0))
        image.SetOrigin((0.0, 0.0, z0 + 3.0 * k))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for tag, value in (("0010|0020", patient), ("0020|000d", study), ("0020|000e", series),
                           ("0020|0013", str(k + 1)), ("0008|0060", "MR"), ("0008|0020", "20260101"),
                           ("0008|0030", "120000"),
                           ("0020|0032", f"0\\0\\{z0 + 3.0 * k}"), ("0020|0037", "1\\0\\0\\0\\1\\0")):
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{patient}-{series}-{k}.dcm"))
        writer.Execute(image)


def test_a_dicom_folder_of_one_series_reads_as_one_volume(tmp_path):
    from HEROVisionLib.io.images import read_image

    _dicom_series(tmp_path / "t2wi", "P1", "1.2.3", "1.2.3.4")
    image = read_image(tmp_path / "t2wi")
    assert image.GetSize() == (8, 8, 4) and image.GetSpacing()[2] == pytest.approx(3.0)


@pytest.mark.parametrize("second, named", [
    (("P2", "1.2.3", "1.2.3.4"), r"more than one patient \(2: P1, P2\)"),
    (("P1", "1.2.9", "1.2.9.4"), r"more than one study \(2: 1\.2\.3, 1\.2\.9\).*series \(2"),
    (("P1", "1.2.3", "1.2.3.5"), r"more than one series \(2: 1\.2\.3\.4, 1\.2\.3\.5\)"),
])
def test_a_dicom_folder_mixing_patients_studies_or_series_is_refused_naming_the_uids(tmp_path, second, named):
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    _dicom_series(tmp_path / "t2wi", "P1", "1.2.3", "1.2.3.4")
    _dicom_series(tmp_path / "t2wi", *second, z0=30.0)
    with pytest.raises(InputError, match=rf"t2wi: holds {named}"):
        read_image(tmp_path / "t2wi")


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    _dicom_series(tmp_path / "t2wi", "P1", "1.2.3", "1.2.3.4", count=5)
    next(iter(sorted((tmp_path / "t2wi").glob("*-2.dcm")))).unlink()
    with pytest.raises(InputError, match=r"t2wi: slices are not evenly spaced"):
        read_image(tmp_path / "t2wi")


def _set(keyword, value, slices=(2,)):
    """A damage: ``keyword`` set to ``value`` (deleted when None) in the given slices of the series."""
    def damage(folder):
        import pydicom

        files = sorted(folder.glob("*.dcm"))
        for k in slices:
            dataset = pydicom.dcmread(files[k])
            if value is None:
                delattr(dataset, keyword)
            else:
                setattr(dataset, keyword, value)
            dataset.save_as(files[k])
    return damage


@pytest.mark.parametrize("damage, message", [
    (_set("ImagePositionPatient", None), r"-2\.dcm has no ImagePositionPatient"),  # the converter guessed its place
    (_set("PixelSpacing", [0.0, 1.0], range(5)), r"-0\.dcm: pixel spacing \['0\.0', '1\.0'\] mm is not positive"),
    (_set("PixelSpacing", [2.0, 2.0]), r"-2\.dcm: pixel spacing .* differs from the first slice's"),  # first kept
    (_set("BitsAllocated", 12), r"-2\.dcm: BitsAllocated 12 differs from the first slice's 16"),  # read as garbage
    (_set("RescaleSlope", "nan", range(5)), r"-0\.dcm: RescaleSlope nan is not a usable number"),  # dropped
    (_set("RescaleSlope", "1e38", range(5)), r"as converted by dcm2niix, \d+ voxel value\(s\) beyond the range"),
])
def test_dicom_slices_that_disagree_or_lack_their_geometry_are_refused_naming_the_slice(tmp_path, damage, message):
    """Each was converted without a word (the last named the converter's temporary file)."""
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.io.images import read_image

    _dicom_series(tmp_path / "t2wi", "P1", "1.2.3", "1.2.3.4", count=5)
    damage(tmp_path / "t2wi")
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 't2wi'))}: .*{message}"):
        read_image(tmp_path / "t2wi")


# --- 3. a damaged modality in a prediction: that modality refused with a named warning ------------


@pytest.mark.parametrize("damage, warning", [
    ("cut", r"t2wi not used: .*t2wi\.nii\.gz: cannot be read as an image"),
    ("constant", r"t2wi not used: .*t2wi\.nii\.gz: no contrast inside the ROI"),
    ("times", r"ceus not used: .*ceus\.times: 11 frame time\(s\) for 12 CEUS frame\(s\)"),
    ("more times", r"ceus not used: .*ceus\.times: 13 frame time\(s\) for 12 CEUS frame\(s\)"),
    ("no label 1", r"t2wi not used: .*t2wi_roi\.nii\.gz: no voxel labelled 1: .*labels found: 2"),  # crashed
    ("two images", r"t2wi not used: .*t2wi: 2 images of one series \(t2wi\.nii\.gz, t2wi\.nrrd\): keep one"),
])
def test_a_damaged_modality_is_not_scored_and_the_warning_names_it(capsys, case, models, tmp_path, damage, warning):
    if damage == "cut":
        _cut_compressed(case / "t2wi.nii.gz")
    elif damage == "constant":
        image = sitk.ReadImage(str(case / "t2wi.nii.gz"))
        flat = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 300.0
        flat.CopyInformation(image)
        sitk.WriteImage(flat, str(case / "t2wi.nii.gz"))
    elif damage == "two images":  # a corrected copy beside the original: the first found was read
        sitk.WriteImage(sitk.ReadImage(str(case / "t2wi.nii.gz")), str(case / "t2wi.nrrd"))
    elif damage == "no label 1":  # the largest tumour labelled 2, as if the labels were shifted
        roi = sitk.ReadImage(str(case / "t2wi_roi.nii.gz"))
        sitk.WriteImage(sitk.Cast(roi != 0, roi.GetPixelID()) * 2, str(case / "t2wi_roi.nii.gz"))
    else:
        times = (case / "ceus.times").read_text().split()
        (case / "ceus.times").write_text(" ".join(times[:11] if damage == "times" else times + ["300"]) + "\n")
    before = _tree_digest(case)
    out = tmp_path / "prediction"
    assert main(["predict", str(case), "--out", str(out), "--models", str(models), "--advice-draws", "0",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert re.search(warning, printed), printed
    assert re.search(warning, json.loads((out / "results.json").read_text())["warnings"].__str__())
    assert _tree_digest(case) == before


# --- 4. clinical values that cannot mean what their column means --------------------------------


@pytest.mark.parametrize("value, message", [
    ("tumor_size_cm=1e300", r"--clinical: column tumor_size_cm: '1e300' is outside 0\.5–30 cm"),
    ("tumor_size_cm=0.1", r"column tumor_size_cm: '0\.1' is outside"),
    ("tumor_size_cm=nan", r"column tumor_size_cm: 'nan' is not a finite number"),
    ("age=fifty", r"column age: 'fifty' is not a number"),
    ("tumor_size_cm=1_0", r"column tumor_size_cm: '1_0' is not a number"),  # Python's float() reads 10
    ("tumor_size_cm=٣", r"column tumor_size_cm: '٣' is not a number"),  # an Arabic-Indic 3
    ("age=130", r"column age: '130' is outside 0–120 years"),
    ("sex_male=2", r"column sex_male: '2' is outside 0–1"),
    ("afp_high=0.5", r"column afp_high: '0\.5' is not a whole number"),
    ("tumor_number=0", r"column tumor_number: '0' is outside 1–100"),
    ("echo=bright", r"column echo: 'bright' is not one of hypo, iso, hyper"),
    ("treatment=surgery", r"column treatment: 'surgery' is not one of TA, SR"),
    ("afp_high", r"--clinical: 'afp_high' is not NAME=VALUE"),
])
def test_an_impossible_clinical_value_is_refused_before_any_work(capsys, case, models, tmp_path, value, message):
    out = tmp_path / "prediction"
    refused(capsys, ["predict", case, "--out", out, "--models", models, "--clinical", value],
            watched=[case.parent, models], absent=[out], message=message)


def _cohort_with(case: Path, column: str, value: str) -> Path:
    table = case.parent / "cohort.csv"
    header, row = table.read_text().splitlines()
    names, values = header.split(","), row.split(",")
    values[names.index(column)] = value
    table.write_text(header + "\n" + ",".join(values) + "\n")
    return case.parent


def test_a_cohort_row_typed_wrong_fails_that_case_in_a_batch_naming_line_and_column(capsys, case, models, tmp_path):
    cohort = _cohort_with(case, "age", "fifty")
    out = tmp_path / "batch"
    refused(capsys, ["batch", cohort, "--out", out, "--models", models, "--advice-draws", "0"],
            watched=[cohort, models], status=BATCH_FAILED_CASES, message="")
    row = (out / "A0001" / "results.csv").read_text()
    assert "cohort.csv: line 2 (case A0001), column age: 'fifty' is not a number" in row


def test_a_cohort_table_with_a_repeated_column_is_refused(capsys, case, tmp_path):
    table = case.parent / "cohort.csv"
    table.write_text(table.read_text().replace("center,", "age,", 1))
    refused(capsys, ["inspect", case.parent], watched=[case.parent],
            message=r"cohort\.csv: column\(s\) age appear more than once in the header")


@pytest.mark.parametrize("save, message", [
    (lambda text: text.replace(",", ";").encode(), r"cohort\.csv: is separated by semicolons: save it comma-separated"),
    (lambda text: text.replace(",", "\t").encode(), r"cohort\.csv: is separated by tabs: save it comma-separated"),
    (lambda text: text.replace(",A,", ",Zürich,").encode("latin-1"), r"cohort\.csv: is not UTF-8 text: save it as UTF-8"),
    (lambda text: text.replace("\n", ",\n", 1).replace("\n", ",x\n").replace(",,x\n", ",\n", 1).encode(),
     r"cohort\.csv: a column with values has no name in the header"),  # the header's last name left empty
])
def test_a_cohort_table_as_spreadsheets_save_it_is_named_with_what_to_do(capsys, case, save, message):
    """Each said only "has no case_id column" or quoted a codec error."""
    table = case.parent / "cohort.csv"
    table.write_bytes(save(table.read_text()))
    refused(capsys, ["inspect", case.parent], watched=[case.parent], message=message)


def test_trailing_separators_of_a_spreadsheet_are_not_columns(case):
    from HEROVisionLib.io.case import Cohort

    table = case.parent / "cohort.csv"
    before = Cohort(case.parent).table
    table.write_bytes(("\ufeff" + table.read_text().replace("\n", ",,\r\n")).encode())  # BOM, CRLF, two empty columns
    pd.testing.assert_frame_equal(Cohort(case.parent).table, before)


def test_training_refuses_a_cohort_with_a_row_typed_wrong(capsys, case, tmp_path):
    cohort = _cohort_with(case, "pfs_event", "yes")
    out = tmp_path / "package"
    refused(capsys, ["train", "--task", "pfs-ta", "--cohort", cohort, "--out", out, "--preset", "tiny"],
            watched=[cohort], absent=[out, tmp_path / "package-training"],
            message=r"cohort\.csv: line 2 \(case A0001\), column pfs_event: 'yes' is not a number")


def test_a_nomogram_column_that_is_not_a_number_is_named(case):
    from HEROVisionLib.errors import InputError
    from HEROVisionLib.predict.case_prediction import nomogram_result

    from HEROVisionLib.models.package import load_package

    package = load_package(ROOT / "Resources" / "Models" / "HEROVision-TA")
    covariates = [name for name in package.herovision["nomogram"]["coefficients"] if name != "risk_score"]
    clinical = {name: 1 for name in covariates}
    clinical[covariates[0]] = "unknown"
    with pytest.raises(InputError, match=rf"column {covariates[0]}: 'unknown' is not a number"):
        nomogram_result(package, 0.1, clinical)


# --- 5. case ids that are paths, and output folders that are not ours ------------------------------


@pytest.mark.parametrize("case_id", ["../victim", "ABSOLUTE-VICTIM", "a/b", "..", ".hidden", "tab\there", ""])
def test_a_case_id_that_is_a_path_is_refused_and_nothing_outside_out_is_touched(capsys, case, models, tmp_path,
                                                                                 case_id):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    cohort = _cohort_with(case, "case_id", case_id.replace("ABSOLUTE-VICTIM", str(victim.resolve())))  # an absolute path
    out = tmp_path / "batch"
    refused(capsys, ["batch", cohort, "--out", out, "--models", models, "--advice-draws", "0"],
            watched=[cohort, victim, models], absent=[out], message=r"cohort\.csv: line 2: case id .* is not a plain name")


def _existing_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my own notes")
    return folder


OUT_CASES = {
    "batch into its own cohort": (lambda c, t: ["batch", c.parent, "--out", c.parent], r"is the input"),
    "batch into a folder inside the cohort": (lambda c, t: ["batch", c.parent, "--out", c.parent / "predictions"],
                                              r"lies inside the input"),
    "batch into a folder holding the cohort": (lambda c, t: ["batch", c.parent, "--out", t], r"holds the input"),
    "batch into a folder of the user's": (lambda c, t: ["batch", c.parent, "--out", _existing_folder(t)],
                                          r"exists and was not made by `herovision batch`"),
    "predict into the case": (lambda c, t: ["predict", c, "--out", c], r"is the input"),
    "predict into a folder inside the case": (lambda c, t: ["predict", c, "--out", c / "out"], r"lies inside the input"),
    "predict into a folder of the user's": (lambda c, t: ["predict", c, "--out", _existing_folder(t)],
                                            r"exists and was not made by `herovision predict`"),
    "predict into a file": (lambda c, t: ["predict", c, "--out", c / "ivim.bval"], r"lies inside the input"),
    "ivim into the case": (lambda c, t: ["ivim", c, "--out", c], r"is the input"),
    "ivim into a folder of the user's": (lambda c, t: ["ivim", c, "--out", _existing_folder(t)],
                                         r"exists and was not made by `herovision ivim`"),
    "phantom into a folder of the user's": (lambda c, t: ["phantom", "--n", "1", "--seed", "1", "--out",
                                                          _existing_folder(t)], r"not made by `herovision phantom`"),
    "phantom into a cohort": (lambda c, t: ["phantom", "--n", "1", "--seed", "1", "--out", c.parent],
                              r"not made by `herovision phantom`"),
    "train into a folder of the user's": (lambda c, t: ["train", "--task", "er", "--cohort", c.parent, "--out",
                                                        _existing_folder(t)], r"not a HEROVision model package"),
    "train into the cohort": (lambda c, t: ["train", "--task", "er", "--cohort", c.parent, "--out", c.parent],
                              r"is the input"),
    "evaluate into a folder of the user's": (lambda c, t: ["evaluate", "--package", ROOT / "Resources/Models/IVIM-ER",
                                                           "--cohort", c.parent, "--out", _existing_folder(t)],
                                             r"not made by `herovision evaluate`"),
    "evaluate into the package": (lambda c, t: ["evaluate", "--package", ROOT / "Resources/Models/IVIM-ER", "--cohort",
                                                c.parent, "--out", ROOT / "Resources/Models/IVIM-ER/metrics"],
                                  r"lies inside the input"),
    "cohort analysis into the cohort": (lambda c, t: ["cohort-analysis", c.parent / "cohort.csv", "--cohort",
                                                      c.parent, "--out", c.parent / "analysis"], r"inside the input"),
    "report over a file of the user's": (lambda c, t: ["report", t / "prediction", "--out", _report_of_user(t)],
                                         r"exists and is not a report HEROVision wrote"),
    "report into the case": (lambda c, t: ["report", t / "prediction", "--out", c / "report.pdf"],
                             r"lies inside the input"),
    "report as a text file": (lambda c, t: ["report", t / "prediction", "--out", t / "report.txt"],
                              r"must be a \.pdf or a \.png"),
    "report of a folder that is not a prediction": (lambda c, t: ["report", c, "--out", t / "report.pdf"],
                                                    r"A0001/results\.json: not found"),
    "report of a results.json of another tool": (
        lambda c, t: ["report", _foreign_results(t), "--out", t / "report.pdf"],
        r"results\.json: is not what `herovision predict` writes"),
}


def _foreign_results(tmp_path: Path) -> Path:
    folder = tmp_path / "other-tool"
    folder.mkdir()
    (folder / "results.json").write_text("[0.3, 0.7]")
    return folder


def _report_of_user(tmp_path: Path) -> Path:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 someone else's report")
    return path


@pytest.fixture
def prediction(case, tmp_path):
    """A prediction folder as `herovision predict` leaves it (its results.json names the case)."""
    folder = tmp_path / "prediction"
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"command": "predict"}))
    (folder / "results.json").write_text(json.dumps({"case_id": "A0001", "case_folder": str(case.resolve())}))
    return folder


@pytest.mark.parametrize("situation", sorted(OUT_CASES))
def test_an_output_that_is_not_ours_is_refused_before_any_work(capsys, case, prediction, tmp_path, situation):
    make, message = OUT_CASES[situation]
    argv = make(case, tmp_path)
    watched = [tmp_path]  # the cohort, the case, the user's folders: everything here
    refused(capsys, argv, watched=watched, message=message)


def test_train_over_a_package_holding_other_files_keeps_them(capsys, case, models, tmp_path):
    package = tmp_path / "IVIM-ER"
    shutil.copytree(models / "IVIM-ER", package)
    (package / "my-notes.txt").write_text("do not delete")
    refused(capsys, ["train", "--task", "er", "--cohort", case.parent, "--out", package, "--preset", "tiny"],
            watched=[tmp_path], message=r"IVIM-ER: exists and is not a HEROVision model package holding only")


def test_an_output_reached_through_a_link_to_the_input_is_refused(capsys, case, tmp_path):
    link = tmp_path / "looks-new"
    link.symlink_to(case, target_is_directory=True)
    refused(capsys, ["ivim", case, "--out", link], watched=[case, link], message=r"looks-new: is the input")


# --- 6. model packages that are not closed boxes ----------------------------------------------------


def _edit_metadata(change):
    def tamper(package: Path):
        path = package / "configs" / "metadata.json"
        metadata = json.loads(path.read_text())
        change(metadata["herovision"])
        path.write_text(json.dumps(metadata))
        resign_manifest(package)
    return tamper


def _weights_link_outside(package: Path):
    outside = package.parent.parent / "weights-elsewhere.safetensors"
    shutil.move(package / "models" / "model.safetensors", outside)
    (package / "models" / "model.safetensors").symlink_to(outside)


def _listed_link_to_system(package: Path):
    (package / "docs" / "passwd").symlink_to("/etc/passwd")
    with open(package / "manifest.sha256", "a") as manifest:
        manifest.write(f"{hashlib.sha256(Path('/etc/passwd').read_bytes()).hexdigest()}  docs/passwd\n")


def _manifest_not_utf8(package: Path):
    (package / "manifest.sha256").write_bytes((package / "manifest.sha256").read_bytes() + b"\xff\xfe\x00bad\n")


def _manifest_outside(package: Path):
    with open(package / "manifest.sha256", "a") as manifest:
        manifest.write(f"{'0' * 64}  ../HEROVision-SR/LICENSE\n")


PACKAGE_FAULTS = {
    "weights are a link outside": (_weights_link_outside, r"HEROVision-TA: holds symbolic link\(s\) models/model"),
    "manifest names a link to /etc/passwd": (_listed_link_to_system, r"holds symbolic link\(s\) docs/passwd"),
    "manifest not UTF-8": (_manifest_not_utf8, r"manifest\.sha256: is not UTF-8 text"),
    "manifest reaches outside": (_manifest_outside, r"manifest\.sha256: line 5 is not '<sha256>  <relative path>'"),
    "no risk cutoff": (_edit_metadata(lambda block: block.pop("risk_cutoff")),
                       r"metadata\.json: metadata does not describe a usable model: herovision: 'risk_cutoff' is a "
                       r"required property"),
    "negative embedding size": (_edit_metadata(lambda block: block["architecture"]["config"]["encoder"].update(
        embed_dim=-48)), r"herovision\.architecture\.config\.encoder\.embed_dim: -48 is less than the minimum of 1"),
    "unknown modality": (_edit_metadata(lambda block: block["architecture"]["config"]["modality_images"].update(
        pet=2)), r"modality_images: Additional properties are not allowed \('pet' was unexpected\)"),
    "cutoff is text": (_edit_metadata(lambda block: block.update(risk_cutoff="high")),
                       r"herovision\.risk_cutoff: 'high' is not of type 'number'"),
    "unknown kind": (_edit_metadata(lambda block: block.update(kind="segmentation")),
                     r"herovision\.kind: 'segmentation' is not one of \['survival', 'early_recurrence'\]"),
    "negative baseline hazard": (_edit_metadata(lambda block: block["baseline_cumulative_hazard"].update({"24": -1})),
                                 r"baseline_cumulative_hazard\.24: -1 is less than the minimum of 0"),
}


@pytest.mark.parametrize("fault", sorted(PACKAGE_FAULTS))
def test_a_tampered_package_is_refused_before_any_network_is_built(capsys, case, models, tmp_path, fault):
    tampered = tmp_path / "models"
    shutil.copytree(models, tampered, symlinks=True)
    damage, message = PACKAGE_FAULTS[fault]
    damage(tampered / "HEROVision-TA")
    out = tmp_path / "prediction"
    refused(capsys, ["predict", case, "--out", out, "--models", tampered], watched=[case, tampered],
            absent=[out], message=message)


# --- 7. exit statuses and leftovers --------------------------------------------------------------


def test_a_batch_in_which_every_case_failed_does_not_exit_0(capsys, case, models, tmp_path):
    for path in case.glob("*.nii.gz"):
        _cut_compressed(path)
    for path in case.glob("*.nrrd"):
        path.write_bytes(b"NRRD0004\nbroken")
    out = tmp_path / "batch"
    refused(capsys, ["batch", case.parent, "--out", out, "--models", models], watched=[case.parent, models],
            status=BATCH_FAILED_CASES, message="")
    assert "error" in (out / "results.csv").read_text()


def test_a_bad_option_found_late_leaves_no_output_folder(capsys, case, models, tmp_path):
    out = tmp_path / "deep" / "prediction"
    refused(capsys, ["predict", case, "--out", out, "--models", tmp_path / "no-models"],
            watched=[case], absent=[tmp_path / "deep"], message=r"no-models: model packages missing")


def test_a_rerun_into_the_commands_own_folder_is_accepted(capsys, case, tmp_path):
    out = tmp_path / "maps"
    for _ in range(2):
        assert main(["ivim", str(case), "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "ivim_D.nrrd").is_file() and json.loads((out / MARKER).read_text())["command"] == "ivim"
    refused(capsys, ["predict", case, "--out", out], watched=[out, case],
            message=r"was made by `herovision ivim`, not `herovision predict`")


def test_a_prediction_made_from_a_relative_path_is_reported_from_anywhere(capsys, case, models, tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(case.parent)
    assert main(["predict", "A0001", "--out", "../prediction", "--models", str(models), "--advice-draws", "0",
                 "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "prediction" / "results.json").read_text())["case_folder"] == str(case.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for _ in range(2):  # the second replaces the report the first wrote
        assert main(["report", "../prediction", "--out", "report.png", "--models", str(models)]) == 0
    assert (elsewhere / "report.png").stat().st_size > 50_000
    assert sorted(p.name for p in elsewhere.iterdir()) == ["report.png"]
