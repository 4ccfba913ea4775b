"""The I/O layer: round trips, physical-space geometry, crops, measures, and every input error."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Case, Cohort
from HEROVisionLib.io.ceus import select_phase_frames
from HEROVisionLib.transforms.crops import slice_crops, voi_crop
from HEROVisionLib.io.diffusion import read_diffusion_series
from HEROVisionLib.io.geometry import resample_labels, resample_roi_to
from HEROVisionLib.io.images import frame_array, read_image, read_multiframe, write_image
from HEROVisionLib.io.measure import largest_axial_diameter_cm, volume_ml
from HEROVisionLib.phantom import generate_case


@pytest.fixture(scope="module")
def case1():
    return generate_case(3, 1)


def _same_geometry(a, b, origin_mm=1e-5):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=origin_mm)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-9)


def test_phantom_case_round_trips_with_geometry(phantom_cohort):
    case = Cohort(phantom_cohort).case("A0003")
    series = case.load_ivim()
    assert series.bvalues == (0, 10, 20, 40, 80, 200, 400, 600, 1000)
    assert series.image.GetNumberOfComponentsPerPixel() == 9
    ceus = case.load_image("ceus")
    assert ceus.GetNumberOfComponentsPerPixel() == len(case.load_ceus_times()) == 12
    for modality in ("t2wi", "dwi", "us"):
        image, roi = case.load_image(modality), case.load_roi(modality)
        _same_geometry(image, roi)
        written = write_image(image, phantom_cohort / f".roundtrip_{modality}.nrrd")
        again = read_image(written)
        _same_geometry(image, again)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(again))
        written.unlink()


def _resampled(image, spacing, direction, interpolator=sitk.sitkLinear):
    """``image`` on a new grid with ``spacing`` and ``direction`` covering the same physical field."""
    direction = np.asarray(direction, float).reshape(3, 3)
    corners = np.array([[i, j, k] for i in (-0.5, image.GetSize()[0] - 0.5)
                        for j in (-0.5, image.GetSize()[1] - 0.5) for k in (-0.5, image.GetSize()[2] - 0.5)])
    world = corners @ (np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())).T \
        + image.GetOrigin()
    local = world @ direction  # coordinates along the new axes
    low, high = local.min(axis=0), local.max(axis=0)
    size = np.ceil((high - low) / spacing).astype(int)
    reference = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    reference.SetSpacing(spacing)
    reference.SetDirection(direction.ravel().tolist())
    reference.SetOrigin((direction @ (low + np.asarray(spacing) / 2)).tolist())
    if image.GetPixelID() == sitk.sitkUInt8:
        return resample_labels(image, reference)
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)


FLIPPED = np.diag([-1.0, 1.0, -1.0])  # left–right and head–foot axes reversed
OBLIQUE = np.array([[math.cos(0.35), -math.sin(0.35), 0], [math.sin(0.35), math.cos(0.35), 0], [0, 0, 1]])


@pytest.mark.parametrize("direction", [FLIPPED, OBLIQUE], ids=["flipped", "oblique"])
def test_crop_and_size_do_not_depend_on_orientation_or_spacing(case1, direction):
    t2, roi = case1.images["t2wi"], case1.images["t2wi_roi"]
    other_t2 = _resampled(t2, (0.8, 0.8, 2.5), direction)
    other_roi = _resampled(roi, (0.8, 0.8, 2.5), direction)

    reference = voi_crop(t2, roi, size=48, spacing_mm=1.0)
    moved = voi_crop(other_t2, other_roi, size=48, spacing_mm=1.0)
    _same_geometry(reference.image, moved.image, origin_mm=0.5)  # centroid of a resampled ROI
    a, b = sitk.GetArrayFromImage(reference.image), sitk.GetArrayFromImage(moved.image)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    tumour_a, tumour_b = sitk.GetArrayFromImage(reference.roi) == 1, sitk.GetArrayFromImage(moved.roi) == 1
    dice = 2 * np.count_nonzero(tumour_a & tumour_b) / (tumour_a.sum() + tumour_b.sum())
    assert dice > 0.85

    if direction is FLIPPED:  # same axial planes: the in-plane measure must agree to one voxel
        assert largest_axial_diameter_cm(other_roi) == pytest.approx(largest_axial_diameter_cm(roi), abs=0.1)
    assert volume_ml(other_roi) == pytest.approx(volume_ml(roi), rel=0.1)


def test_lossless_flips_give_identical_slice_crops(case1):
    t2, roi = case1.images["t2wi"], case1.images["t2wi_roi"]
    flipped_t2 = sitk.Flip(t2, [True, True, True])
    flipped_roi = sitk.Flip(roi, [True, True, True])
    for original, flipped in zip(slice_crops(t2, roi), slice_crops(flipped_t2, flipped_roi)):
        _same_geometry(original.image, flipped.image)
        np.testing.assert_allclose(sitk.GetArrayFromImage(original.image), sitk.GetArrayFromImage(flipped.image),
                                   atol=1e-3)
    assert largest_axial_diameter_cm(flipped_roi) == pytest.approx(largest_axial_diameter_cm(roi), abs=1e-9)


def test_slice_crops_take_the_largest_tumour_slice(case1):
    t2, roi = case1.images["t2wi"], case1.images["t2wi_roi"]
    areas = (sitk.GetArrayFromImage(roi) == 1).sum(axis=(1, 2))
    crops = slice_crops(t2, roi, size=64)
    assert len(crops) == 3
    centre = crops[1]
    assert centre.image.GetSize() == (64, 64, 1)
    assert centre.image.GetOrigin()[2] == pytest.approx(5.0 * int(np.argmax(areas)))
    assert (sitk.GetArrayFromImage(centre.roi) == 1).sum() > 0.2 * 64 * 64  # tumour fills the crop


def test_voi_crop_takes_all_b_values_at_once(case1):
    crop = voi_crop(case1.images["ivim"], case1.images["ivim_roi"], size=64, spacing_mm=1.5)
    assert crop.image.GetSize() == (64, 64, 64)
    assert crop.image.GetNumberOfComponentsPerPixel() == 9
    assert crop.image.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    values = frame_array(crop.image)
    inside = sitk.GetArrayFromImage(crop.roi) == 1
    assert values[0][inside].mean() > values[8][inside].mean() * 2  # diffusion decay b0 → b1000


def test_us_bounding_box_crop(case1):
    crops = slice_crops(case1.images["us"], case1.images["us_roi"], neighbours=0, size=96, margin=0.1)
    assert len(crops) == 1
    tumour = sitk.GetArrayFromImage(crops[0].roi)[0] == 1
    rows, cols = np.flatnonzero(tumour.any(axis=1)), np.flatnonzero(tumour.any(axis=0))
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == pytest.approx(96 / 1.2, abs=3)


def test_ceus_phase_frames_by_time():
    times = [0, 10, 20, 30, 45, 60, 90, 120, 150, 180, 210, 240]
    assert select_phase_frames(times) == {"arterial": 3, "portal": 5, "late": 9}
    with pytest.raises(InputError, match="no frame in the late phase"):
        select_phase_frames([0, 15, 30, 60, 90])


def test_tumour_size_and_volume_of_a_known_shape():
    roi = sitk.Image([40, 40, 5], sitk.sitkUInt8)
    roi.SetSpacing((0.5, 0.5, 2.0))
    array = np.zeros((5, 40, 40), np.uint8)
    array[1:4, 10:20, 5:29] = 1  # 24 × 10 voxels of 0.5 mm on 3 slices
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(roi)
    assert largest_axial_diameter_cm(image) == pytest.approx(math.hypot(12.0, 5.0) / 10)
    assert volume_ml(image) == pytest.approx(3 * 240 * 0.5 * 0.5 * 2.0 / 1000)


# --- b-values from every source


def test_bvalues_from_nrrd_dwi_header(tmp_path, case1):
    series = case1.images["ivim"]
    path = tmp_path / "dwi.nrrd"
    sitk.WriteImage(series, str(path))
    header = {"DWMRI_b-value": "1000", "modality": "DWMRI"}
    for i, b in enumerate(case1.bvalues):
        scale = math.sqrt(b / 1000)
        header[f"DWMRI_gradient_{i:04d}"] = f"{scale:.10f} 0 0"
    image = sitk.ReadImage(str(path))
    for key, value in header.items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path))
    read = read_diffusion_series(path)
    assert read.bvalues == pytest.approx(case1.bvalues, abs=1e-4)


def test_bvalues_from_dicom_tags(tmp_path, case1):
    """A diffusion DICOM series with (0018,9087) per image, slices of all b-values in one folder."""
    volumes = [sitk.VectorIndexSelectionCast(case1.images["ivim"], c) for c in range(3)]
    bvalues = case1.bvalues[:3]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    number = 0
    for b, volume in zip(bvalues, volumes):
        volume = sitk.Cast(sitk.RescaleIntensity(volume, 0, 4000), sitk.sitkUInt16)
        for z in range(volume.GetDepth()):
            number += 1
            piece = volume[:, :, z]
            piece.SetMetaData("0008|0060", "MR")
            piece.SetMetaData("0008|0020", "20260101")  # one study date and time, as a scanner writes
            piece.SetMetaData("0008|0030", "120000")
            piece.SetMetaData("0020|000d", "1.2.826.0.1.3680043.2.1125.1")
            piece.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2")
            piece.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.2.{number}")
            piece.SetMetaData("0020|0013", str(number))
            piece.SetMetaData("0020|0032", "\\".join(f"{v:g}" for v in volume.TransformIndexToPhysicalPoint((0, 0, z))))
            piece.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
            piece.SetMetaData("0018|9087", f"{b:g}")
            writer.SetFileName(str(tmp_path / f"IM{number:04d}.dcm"))
            writer.Execute(piece)
    series = read_diffusion_series(tmp_path)
    assert series.bvalues == bvalues
    assert series.image.GetSize() == volumes[0].GetSize()
    np.testing.assert_allclose(series.image.GetSpacing(), volumes[0].GetSpacing(), atol=1e-4)


# --- every input error, with its message


@pytest.fixture
def case_folder(tmp_path, case1):
    from HEROVisionLib.phantom import write_case

    return write_case(case1, tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"t2wi.nii.gz: file not found"):
        read_image(tmp_path / "t2wi.nii.gz")


def test_unreadable_file(tmp_path):
    path = tmp_path / "t2wi.nii.gz"
    path.write_bytes(b"this is not an image")
    with pytest.raises(InputError, match=r"t2wi.nii.gz: cannot be read as an image"):
        read_image(path)


def test_wrong_dimensionality(case_folder):
    with pytest.raises(InputError, match=r"t2wi.nii.gz: expected a 4-D image .*found 3-D"):
        read_multiframe(case_folder / "t2wi.nii.gz")
    with pytest.raises(InputError, match=r"expected a scalar image|expected a 2-D or 3-D image"):
        read_image(case_folder / "ivim.nii.gz")


def test_bvalue_count_differs_from_volume_count(case_folder):
    (case_folder / "ivim.bval").write_text("0 10 20 40 80 200 400 600\n")
    with pytest.raises(InputError, match=r"ivim.bval: 8 b-values for 9 volumes"):
        Case(case_folder).load_ivim()


def test_duplicate_bvalues(case_folder):
    (case_folder / "ivim.bval").write_text("0 10 20 40 80 200 400 600 600\n")
    with pytest.raises(InputError, match=r"ivim.bval: duplicate b-value\(s\) \[600.0\]"):
        Case(case_folder).load_ivim()


@pytest.mark.parametrize("text, message", [
    ("0 10 20 40 80 200 400 600 1e9", r"b-value 1e\+09 s/mm² is beyond any clinical diffusion sequence"),  # s/m²
    ("0 10 20 40 80 200 400 600 nan", r"b-values must be finite and ≥ 0"),
    ("0 10 20 40 80 200 -400 600 1000", r"b-values must be finite and ≥ 0"),
    ("0, 10, 20, 40, 80, 200, 400, 600, 1000", r"b-values must be numbers separated by spaces"),
    ("0 10 20 40 80 200 400 600 1_000", r"b-values must be numbers separated by spaces"),  # float() reads 1000
])
def test_bvalues_outside_their_meaning_are_refused(case_folder, text, message):
    (case_folder / "ivim.bval").write_text(text + "\n")
    with pytest.raises(InputError, match=rf"ivim.bval: {message}"):
        Case(case_folder).load_ivim()


@pytest.mark.parametrize("text", ["0 5 1_0 15", "0 5 ١٠ 15", "0 5 10 x"])
def test_frame_times_must_be_written_as_numbers(tmp_path, text):
    from HEROVisionLib.io.case import read_frame_times

    (tmp_path / "ceus.times").write_text(text + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"ceus.times: frame times must be numbers"):
        read_frame_times(tmp_path / "ceus.times")


def test_empty_roi(case_folder):
    roi = read_image(case_folder / "t2wi_roi.nii.gz", label=True) * 0
    write_image(roi, case_folder / "t2wi_roi.nii.gz")
    with pytest.raises(InputError, match=r"t2wi_roi.nii.gz: ROI is empty"):
        Case(case_folder).load_roi("t2wi")


def test_roi_partly_outside_the_image(case_folder):
    roi = read_image(case_folder / "t2wi_roi.nii.gz", label=True)
    shifted = sitk.Image(roi)
    shifted.SetOrigin((-100.0, 0.0, 0.0))  # the tumour now hangs over the image's left edge
    write_image(shifted, case_folder / "t2wi_roi.nii.gz")
    with pytest.raises(InputError, match=r"t2wi_roi.nii.gz: ROI outside the image .*t2wi.nii.gz: \d+\.\d% of"):
        Case(case_folder).load_roi("t2wi")


def test_roi_not_overlapping_the_image(case_folder):
    roi = read_image(case_folder / "t2wi_roi.nii.gz", label=True)
    roi.SetOrigin((0.0, 0.0, 500.0))
    write_image(roi, case_folder / "t2wi_roi.nii.gz")
    with pytest.raises(InputError, match=r"t2wi_roi.nii.gz: ROI and image .* do not overlap in physical space"):
        Case(case_folder).load_roi("t2wi")


def test_nan_voxels(case_folder):
    image = read_image(case_folder / "dwi.nii.gz")
    array = sitk.GetArrayFromImage(image)
    array[3, 10, 10:13] = np.nan
    array[4, 4, 4] = np.inf
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    (case_folder / "dwi.nii.gz").unlink()
    write_image(bad, case_folder / "dwi.nrrd")  # (SimpleITK's NIfTI writer does not keep NaN)
    with pytest.raises(InputError, match=r"dwi.nrrd: 4 voxel value\(s\) are NaN or infinite"):
        Case(case_folder).load_image("dwi")


def test_missing_modality_is_reported_not_fatal(case_folder):
    (case_folder / "us_roi.nrrd").unlink()
    (case_folder / "ceus.nii.gz").unlink()
    case = Case(case_folder)
    assert case.available == ("ivim", "t2wi", "dwi")
    assert case.missing() == {"us": "us.nrrd has no ROI (us_roi.nii.gz)", "ceus": "no image"}
    with pytest.raises(InputError, match=r"ceus unavailable \(no image\)"):
        case.load_image("ceus")


def test_roi_on_another_grid_is_resampled_in_physical_space(case1):
    roi_t2 = case1.images["t2wi_roi"]
    on_ivim_grid = resample_roi_to(roi_t2, case1.images["dwi"])
    assert on_ivim_grid.GetSize() == case1.images["dwi"].GetSize()
    assert volume_ml(on_ivim_grid) == pytest.approx(volume_ml(roi_t2), rel=0.15)
    assert largest_axial_diameter_cm(on_ivim_grid) == pytest.approx(largest_axial_diameter_cm(roi_t2), abs=0.2)
