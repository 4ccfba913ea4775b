"""Prediction of whole cases: the result and its table row, missing modalities, overlays that land
on the tumour whatever the image orientation, batches that survive bad cases and resume."""

import math
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Case
from HEROVisionLib.transforms.crops import slice_crops
from HEROVisionLib.io.geometry import label_centroid, same_grid
from HEROVisionLib.models.ivim_net import IVIM_MAP_CHANNELS
from HEROVisionLib.predict import RESULT_COLUMNS, load_models, predict_case
from HEROVisionLib.staging import stage_patient
from HEROVisionLib.transforms.ivim_crops import IVIM_PREPROCESSING, ivim_inputs
from HEROVisionLib.transforms.overlays import overlay_on_source


@pytest.fixture(scope="session")
def models(untrained_models):
    return load_models(untrained_models, "cpu")


def test_the_prediction_carries_the_patients_stage_under_the_six_systems(phantom_cohort, models):
    from HEROVisionLib.io.case import Cohort

    case = Cohort(phantom_cohort).case("A0003")  # with its cohort.csv record (spec v1.1 staging fields)
    result = predict_case(case, models, "cpu", overlays=False)
    assert result.staging == {system: stage.text for system, stage in stage_patient(case.clinical).items()}
    assert not any(text.startswith("not computable") for text in result.staging.values())


def _copy_case(phantom_cohort, tmp_path, case_id="A0003"):
    return Case(shutil.copytree(phantom_cohort / case_id, tmp_path / case_id))


def test_a_full_case_gives_every_number_overlay_and_map(phantom_cohort, models):
    case = Case(phantom_cohort / "A0003")
    result = predict_case(case, models, "cpu")
    row = result.row()
    assert list(row) == list(RESULT_COLUMNS)
    assert row["inputs_used"] == "ivim;t2wi;dwi;us;ceus" and row["inputs_missing"] == ""
    for key in ("ta", "sr"):
        pfs = [row[f"{key}_pfs_{y}y"] for y in (1, 2, 3)]
        assert all(0 < p < 1 for p in pfs) and pfs[0] > pfs[1] > pfs[2]
        cutoff = (models.ta if key == "ta" else models.sr).herovision["risk_cutoff"]
        assert row[f"{key}_risk_group"] == ("high" if row[f"{key}_risk_score"] > cutoff else "low")
    assert 0 < row["er_probability"] < 1 and 0 < row["er_probability_combined"] < 1
    assert all(text.startswith("not computable") for text in result.staging.values())  # no clinical record here
    assert row["models_trained"] is False and any("untrained" in w for w in result.warnings)
    sources = {"t2wi": case.load_image("t2wi"), "dwi": case.load_image("dwi"), "us": case.load_image("us")}
    for key in ("ta", "sr"):
        for modality, source in sources.items():
            overlay = result.overlays[f"attention_{key}_{modality}"]
            assert same_grid(overlay, source)
            values = sitk.GetArrayViewFromImage(overlay)
            assert values.max() > 0 and values.min() >= 0 and values.max() <= 1
    ivim_roi = case.load_roi("ivim", result.maps["ivim_D"])
    assert same_grid(result.overlays["attention_er_maps"], ivim_roi)
    tumour_d = sitk.GetArrayViewFromImage(result.maps["ivim_D"])[sitk.GetArrayViewFromImage(ivim_roi) == 1]
    assert row["ivim_D_median"] == pytest.approx(float(np.median(tumour_d)), rel=1e-6)
    assert json_keys(result) >= {"survival", "er_probability", "warnings", "timings", "model_versions"}


def json_keys(result):
    import json

    return set(json.loads(result.to_json()))


def test_the_same_case_twice_gives_identical_numbers(phantom_cohort, models):
    case = Case(phantom_cohort / "A0004")
    first, second = predict_case(case, models, "cpu"), predict_case(case, models, "cpu")
    drop = ("seconds",)
    assert {k: v for k, v in first.row().items() if k not in drop} == {k: v for k, v in second.row().items() if k not in drop}
    for name, image in first.overlays.items():
        assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(second.overlays[name]))


def test_a_missing_modality_is_reported_and_the_rest_is_used(phantom_cohort, models, tmp_path):
    case = _copy_case(phantom_cohort, tmp_path)
    (case.folder / "us.nrrd").unlink()
    (case.folder / "ceus.times").write_text(" ".join(str(t) for t in range(150, 270, 10)) + "\n")  # late frames only
    result = predict_case(case, models, "cpu")
    assert set(result.inputs_missing) == {"us", "ceus"}
    assert "no frame in the arterial phase" in result.inputs_missing["ceus"]
    assert result.inputs_used == ("ivim", "t2wi", "dwi")
    assert result.survival["ta"].modalities_used == ("t2wi", "dwi")
    assert not any(name.endswith(("_us", "_ceus")) for name in result.overlays)
    assert math.isfinite(result.row()["ta_risk_score"])
    assert any(w.startswith("us not used") for w in result.warnings)


def _reoriented(image, direction, interpolator):
    """``image`` resampled onto a grid with another direction covering the same physical region."""
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    new_size = np.ceil(size * np.array([1.5, 1.5, 1.0])).astype(int)
    origin = centre - direction @ (spacing * (new_size - 1) / 2)
    reference = sitk.Image(new_size.tolist(), image.GetPixelID())
    reference.SetSpacing(spacing.tolist())
    reference.SetOrigin(origin.tolist())
    reference.SetDirection(direction.ravel().tolist())
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


ANGLE = np.deg2rad(30)
ORIENTATIONS = {
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    "oblique": np.array([[np.cos(ANGLE), -np.sin(ANGLE), 0], [np.sin(ANGLE), np.cos(ANGLE), 0], [0, 0, 1]])
    @ np.diag([-1.0, 1.0, 1.0]),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_an_overlay_maps_back_onto_the_roi(phantom_cohort, orientation):
    """Independent of any network: a crop-space copy of the ROI, mapped back, must cover the ROI."""
    case = Case(phantom_cohort / "A0003")
    image = _reoriented(case.load_image("t2wi"), ORIENTATIONS[orientation], sitk.sitkLinear)
    roi = _reoriented(case.load_roi("t2wi"), ORIENTATIONS[orientation], sitk.sitkNearestNeighbor)
    crops = slice_crops(image, roi, neighbours=1)
    masks = [(sitk.GetArrayFromImage(crop.roi)[0] == 1).astype(np.float32) for crop in crops]
    back = sitk.GetArrayFromImage(overlay_on_source(masks, crops, image)) >= 0.5
    truth = sitk.GetArrayViewFromImage(roi) == 1
    slices = sorted({int(round(image.TransformPhysicalPointToContinuousIndex(
        crop.roi.TransformIndexToPhysicalPoint((0, 0, 0)))[2])) for crop in crops})
    truth_on_slices = np.zeros_like(truth)
    truth_on_slices[slices] = truth[slices]
    dice = 2 * (back & truth_on_slices).sum() / (back.sum() + truth_on_slices.sum())
    assert dice > 0.9


def _weighted_centre(overlay):
    weights = sitk.GetArrayFromImage(overlay).astype(float)
    zyx = np.argwhere(weights > 0)
    points = np.array([overlay.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in zyx])
    return (points * weights[weights > 0][:, None]).sum(0) / weights.sum()


@pytest.fixture(scope="module")
def original_a0003(phantom_cohort, models):
    return predict_case(Case(phantom_cohort / "A0003"), models, "cpu")


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_attention_overlays_land_on_the_tumour_of_reoriented_images(phantom_cohort, models, tmp_path, orientation,
                                                                    original_a0003):
    """The same anatomy stored flipped or oblique: the T2WI overlay's centre of mass stays inside the
    tumour, and the IVIM Grad-CAM (its VOI crop is world-aligned, so the network sees the same crop)
    lands where it lands for the original orientation."""
    case = _copy_case(phantom_cohort, tmp_path)
    direction = ORIENTATIONS[orientation]
    sitk.WriteImage(_reoriented(case.load_image("t2wi"), direction, sitk.sitkLinear), str(case.folder / "t2wi.nii.gz"))
    series = case.load_ivim()
    frames = [_reoriented(sitk.VectorIndexSelectionCast(series.image, k, sitk.sitkFloat32), direction, sitk.sitkLinear)
              for k in range(series.n_frames)]
    (case.folder / "ivim.nii.gz").unlink()
    sitk.WriteImage(sitk.Compose(frames), str(case.folder / "ivim.nrrd"))  # ivim.bval still applies
    for name in ("t2wi", "ivim"):
        roi = sitk.ReadImage(str(case.folder / f"{name}_roi.nii.gz"))
        sitk.WriteImage(_reoriented(roi, direction, sitk.sitkNearestNeighbor), str(case.folder / f"{name}_roi.nii.gz"))
    result = predict_case(case, models, "cpu")
    overlay = result.overlays["attention_ta_t2wi"]
    assert not same_grid(overlay, original_a0003.overlays["attention_ta_t2wi"])
    centre = _weighted_centre(overlay)
    assert np.linalg.norm(centre - label_centroid(case.load_roi("t2wi", overlay), 1)) < 10 * result.tumor_size_cm / 2
    for name in ("attention_er_bvalues", "attention_er_maps"):
        shift = np.linalg.norm(_weighted_centre(result.overlays[name]) - _weighted_centre(original_a0003.overlays[name]))
        # mm: the reoriented series was itself resampled (rotated, linear), so its crop differs by
        # interpolation; a wrong geometry would move the map by tens of mm. IVIM slices are 5 mm.
        assert shift < 5.0, (name, shift)


def test_the_ivim_map_crops_hold_the_tumour_alone_unless_an_older_package_saw_the_liver(phantom_cohort):
    """Packages trained with ``maps_roi_only`` see maps zeroed outside the tumour VOI; packages made before
    that option existed (no key in their preprocessing block) keep getting the whole crop, so their
    numbers do not change. The b-value crop keeps the surrounding liver either way."""
    case = Case(phantom_cohort / "A0003")
    tumour_only = ivim_inputs(case, IVIM_PREPROCESSING)
    legacy = ivim_inputs(case, {k: v for k, v in IVIM_PREPROCESSING.items() if k != "maps_roi_only"})
    tumour = sitk.GetArrayViewFromImage(tumour_only.crop.roi) == 1
    d_channel = IVIM_MAP_CHANNELS.index("D")
    assert tumour.any() and (~tumour).any()
    assert np.all(tumour_only.maps[:, ~tumour] == 0)
    np.testing.assert_array_equal(tumour_only.maps[:, tumour], legacy.maps[:, tumour])
    liver_d = legacy.maps[d_channel][~tumour]
    assert np.median(liver_d[liver_d > 0]) == pytest.approx(1.1, rel=0.25)  # liver D ≈ 1.1e-3 mm²/s, scaled ×10³
    np.testing.assert_array_equal(tumour_only.bvalues, legacy.bvalues)


def test_each_survival_model_is_scored_with_its_own_recorded_preprocessing(phantom_cohort, untrained_models, tmp_path):
    """An SR package made for 32-pixel images beside a 128-pixel TA package: each gets its own
    inputs (the SR network would refuse TA-sized images), and the TA result is unchanged by it."""
    from HEROVisionLib.models.herovision_net import HEROVisionNet
    from HEROVisionLib.models.package import save_package
    from HEROVisionLib.models.model_set import survival_package
    from HEROVisionLib.transforms.network_inputs import SURVIVAL_PREPROCESSING

    folder = shutil.copytree(untrained_models, tmp_path / "models")
    small = dict(image_size=32, stem_channels=8, patch_grid=4, embed_dim=16, depth=1, num_heads=2, out_features=16)
    preprocessing = dict(SURVIVAL_PREPROCESSING, image_size=32, us_margins=[0.5, 2.0], percentiles=[1.0, 99.0])
    shutil.rmtree(folder / "HEROVision-SR")
    save_package(survival_package(HEROVisionNet(encoder=small), "SR", trained=False, cutoff=0.0,
                                  baseline_cumulative_hazard={12: 0.3, 24: 0.6, 36: 0.9}, version="0.0.0",
                                  description="small", preprocessing=preprocessing), folder / "HEROVision-SR")
    mixed, same = load_models(folder, "cpu"), load_models(untrained_models, "cpu")
    case = Case(phantom_cohort / "A0003")
    result = predict_case(case, mixed, "cpu")
    assert {m: tuple(t.shape) for m, t in result.survival_inputs["sr"].images.items()} == {
        "t2wi": (3, 32, 32), "dwi": (3, 32, 32), "us": (2, 32, 32), "ceus": (3, 32, 32)}
    assert result.survival_inputs["ta"].images["t2wi"].shape == (3, 128, 128)
    assert math.isfinite(result.survival["sr"].risk_score)
    assert result.survival["ta"].risk_score == predict_case(case, same, "cpu").survival["ta"].risk_score
    wide_us = result.survival_inputs["sr"].crops["us"][1].image.GetSpacing()[0]
    narrow_us = result.survival_inputs["ta"].crops["us"][1].image.GetSpacing()[0]
    assert wide_us * 32 > narrow_us * 128  # the SR package's 200 % context view reaches further than TA's 100 %


def test_the_ivim_model_reads_each_b_value_in_its_own_channel_whatever_the_volume_order(phantom_cohort, models,
                                                                                      tmp_path):
    """The same series stored in reverse volume order (its .bval reversed alike) gives the same
    early-recurrence probability."""
    from HEROVisionLib.io.diffusion import DiffusionSeries, read_diffusion_series, write_diffusion_series
    from HEROVisionLib.io.images import frames_to_vector, vector_to_frames

    original = predict_case(Case(phantom_cohort / "A0003"), models, "cpu")
    case = _copy_case(phantom_cohort, tmp_path)
    series = read_diffusion_series(case.folder / "ivim.nii.gz")
    reversed_series = DiffusionSeries(frames_to_vector(vector_to_frames(series.image)[::-1]), series.bvalues[::-1],
                                      series.source)
    write_diffusion_series(reversed_series, case.folder / "ivim.nii.gz")
    reordered = predict_case(case, models, "cpu")
    assert reordered.er_probability == pytest.approx(original.er_probability, abs=1e-6)


def _keep_bvalues(case: Case, kept) -> None:
    """Rewrite the case's IVIM series with only the volumes at the b-values ``kept`` (another scheme)."""
    from HEROVisionLib.io.diffusion import DiffusionSeries, read_diffusion_series, write_diffusion_series
    from HEROVisionLib.io.images import frames_to_vector, vector_to_frames

    series = read_diffusion_series(case.folder / "ivim.nii.gz")
    volumes = [k for k, b in enumerate(series.bvalues) if b in kept]
    frames = vector_to_frames(series.image)
    write_diffusion_series(DiffusionSeries(frames_to_vector([frames[k] for k in volumes]),
                                           tuple(series.bvalues[k] for k in volumes), series.source),
                           case.folder / "ivim.nii.gz")


def test_another_b_value_scheme_is_resampled_onto_the_models_b_values(phantom_cohort, models, tmp_path):
    """A six-b-value scheme: the channels it measured are fed as measured; the ones it lacks are
    interpolated, and in the tumour they match the volumes the full series measured at those
    b-values (the independent truth) within noise."""
    full = ivim_inputs(Case(phantom_cohort / "A0003"), IVIM_PREPROCESSING, "cpu")
    case = _copy_case(phantom_cohort, tmp_path)
    _keep_bvalues(case, (0.0, 20.0, 80.0, 200.0, 400.0, 1000.0))
    sparse = ivim_inputs(case, IVIM_PREPROCESSING, "cpu")
    channel = {b: k for k, b in enumerate(IVIM_PREPROCESSING["bvalues"])}
    for b in (0.0, 20.0, 80.0, 200.0, 400.0, 1000.0):
        np.testing.assert_array_equal(sparse.bvalues[channel[b]], full.bvalues[channel[b]])
    tumour = sitk.GetArrayFromImage(full.crop.roi) == 1
    for b in (10.0, 40.0, 600.0):
        measured, resampled = full.bvalues[channel[b]][tumour].mean(), sparse.bvalues[channel[b]][tumour].mean()
        assert float(resampled) == pytest.approx(float(measured), rel=0.05)
    assert math.isfinite(predict_case(case, models, "cpu").er_probability)


def test_a_b_value_scheme_that_cannot_be_resampled_is_refused_for_the_ivim_model(phantom_cohort, models, tmp_path):
    """No b-value of 500 s/mm² or more: nothing to resample 600 and 1000 from. And a package trained
    before resampling existed reads only its own scheme. Either way the other models still run."""
    case = _copy_case(phantom_cohort, tmp_path)
    _keep_bvalues(case, (0.0, 10.0, 20.0, 40.0, 80.0, 200.0, 400.0))
    refused = predict_case(case, models, "cpu")
    assert math.isnan(refused.er_probability) and "cannot be resampled" in refused.inputs_missing["ivim"]
    assert math.isfinite(refused.survival["ta"].risk_score)
    _keep_bvalues(case, (0.0, 20.0, 80.0, 200.0, 400.0, 1000.0))
    exact_only = {k: v for k, v in IVIM_PREPROCESSING.items() if k != "bvalue_resampling"}
    with pytest.raises(InputError, match="are not the 9 the IVIM model was trained on"):
        ivim_inputs(case, exact_only, "cpu")


def test_survival_crops_cover_a_fixed_field_so_a_pixel_is_one_length_on_every_grid(tmp_path):
    """The same patient acquired by two centres (profile A: 1 mm T2WI pixels; B: 0.75 mm, flipped):
    each crop spans its modality's field in mm, so the tumour covers as many crop pixels in both
    (its size is part of the image, whatever the grid)."""
    from HEROVisionLib.phantom import generate_case, write_case
    from HEROVisionLib.transforms.network_inputs import SURVIVAL_PREPROCESSING, survival_inputs

    from conftest import COHORT_SEED

    fields, size = SURVIVAL_PREPROCESSING["fields_mm"], SURVIVAL_PREPROCESSING["image_size"]
    tumour_pixels = []
    for profile in ("A", "B"):
        inputs = survival_inputs(Case(write_case(generate_case(COHORT_SEED, 3, profile), tmp_path / profile)))
        for modality in ("t2wi", "dwi", "ceus"):
            for crop in inputs.crops[modality]:
                assert crop.image.GetSpacing()[0] * size == pytest.approx(fields[modality])
        assert inputs.crops["us"][0].image.GetSpacing()[0] * size == pytest.approx(fields["us"][0])
        tumour_pixels.append(int((sitk.GetArrayViewFromImage(inputs.crops["t2wi"][1].roi) == 1).sum()))
    assert tumour_pixels[1] == pytest.approx(tumour_pixels[0], rel=0.1)


def test_ivim_inputs_made_ahead_in_another_process_are_the_ones_made_here(phantom_cohort, untrained_models, tmp_path,
                                                                          monkeypatch):
    """``herovision predict`` forks a process that makes the case's IVIM inputs while it loads torch:
    what it hands over is what prediction makes itself (arrays, maps, statistics); for another
    preprocessing block the inputs are made anew, and a refusal comes back word for word."""
    import pandas as pd

    from HEROVisionLib.io.model_folders import recorded_block
    from HEROVisionLib.transforms.ivim_crops import IVIMInputsAhead

    case = Case(phantom_cohort / "A0003")
    settings = recorded_block(untrained_models, "er")["preprocessing"]
    here = ivim_inputs(case, settings, "cpu")
    ahead = IVIMInputsAhead(case.folder, untrained_models).inputs(case, settings, "cpu")
    np.testing.assert_array_equal(ahead.bvalues, here.bvalues)
    np.testing.assert_array_equal(ahead.maps, here.maps)
    pd.testing.assert_frame_equal(ahead.statistics, here.statistics)
    for name, image in here.source_maps.items():
        assert same_grid(ahead.source_maps[name], image)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(ahead.source_maps[name]), sitk.GetArrayViewFromImage(image))
    assert (ahead.tumor_d, ahead.tumor_size_cm, ahead.bvalue_list) == (here.tumor_d, here.tumor_size_cm, here.bvalue_list)

    coarser = dict(settings, spacing_mm=2.0)  # not the block the package records: made here, for this block
    anew = IVIMInputsAhead(case.folder, untrained_models).inputs(case, coarser, "cpu")
    np.testing.assert_array_equal(anew.bvalues, ivim_inputs(case, coarser, "cpu").bvalues)
    assert not np.array_equal(anew.bvalues, here.bvalues)

    monkeypatch.chdir(tmp_path)  # a case given by a relative path: the refusal names its files the same way
    broken = Case(shutil.copytree(phantom_cohort / "A0003", "A0003"))
    series = broken.folder / "ivim.nii.gz"
    series.write_bytes(series.read_bytes()[: series.stat().st_size // 2])
    with pytest.raises(InputError) as made_here:
        ivim_inputs(broken, settings, "cpu")
    with pytest.raises(InputError) as made_ahead:
        IVIMInputsAhead(broken.folder, untrained_models).inputs(broken, settings, "cpu")
    assert str(made_here.value).startswith("A0003/ivim.nii.gz: ")
    assert str(made_ahead.value) == str(made_here.value) and "truncated" in str(made_here.value)


def test_the_command_line_prediction_with_its_inputs_made_ahead_is_the_prediction_made_here(phantom_cohort, models,
                                                                                          untrained_models, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "HEROVisionLib.cli", "predict", str(phantom_cohort / "A0004"), "--out",
                           str(out), "--models", str(untrained_models), "--device", "cpu", "--threads", "2",
                           "--advice-draws", "0"], capture_output=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((out / "results.json").read_text())
    here = predict_case(Case(phantom_cohort / "A0004"), models, "cpu").to_record()
    for key in ("er_probability", "er_probability_combined", "ivim_medians", "ivim_statistics", "tumor_size_cm"):
        assert written[key] == here[key], key
    assert written["survival"]["ta"]["risk_score"] == here["survival"]["ta"]["risk_score"]
