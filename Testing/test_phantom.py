"""The phantom honours PHANTOM.md: reproducibility, layout, distributions and the outcome model."""

import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from lifelines import CoxPHFitter

from HEROVisionLib.io.case import COHORT_COLUMNS, Cohort
from HEROVisionLib.io.images import frame_array
from HEROVisionLib.phantom import generate_case
from HEROVisionLib.phantom.generate import draw_case_variables

from conftest import COHORT_SEED


def test_case_alone_equals_case_in_cohort(phantom_cohort):
    alone = generate_case(COHORT_SEED, 7)
    case = Cohort(phantom_cohort).case("A0007")
    np.testing.assert_array_equal(frame_array(case.load_ivim().image), frame_array(alone.images["ivim"]))
    for modality in ("t2wi", "dwi", "us"):  # us: 2-D in memory, read back as a one-slice volume
        for loaded, generated in ((case.load_image(modality), alone.images[modality]),
                                  (case.load_roi(modality), alone.images[f"{modality}_roi"])):
            np.testing.assert_array_equal(np.squeeze(sitk.GetArrayFromImage(loaded)),
                                          np.squeeze(sitk.GetArrayFromImage(generated)))
    row = pd.read_csv(phantom_cohort / "cohort.csv").set_index("case_id").loc["A0007"]
    assert row["pfs_months"] == pytest.approx(alone.outcome.pfs_months, abs=1e-3)
    assert row["treatment"] == alone.outcome.treatment


def test_cohort_layout(phantom_cohort):
    table = pd.read_csv(phantom_cohort / "cohort.csv")
    assert tuple(table.columns) == COHORT_COLUMNS
    staging = ["ecog", "child_pugh_score", "vascular_invasion", "extrahepatic_spread"]  # §6: after pni_low
    assert list(table.columns[table.columns.get_loc("pni_low"):][:6]) == ["pni_low", *staging, "treatment"]
    assert table["case_id"].tolist() == [f"A{i:04d}" for i in range(1, 11)]
    truth = pd.read_csv(phantom_cohort / "truth.csv")
    assert {"lp_TA", "lp_SR", "T_TA", "T_SR", "best_treatment"} <= set(truth.columns)
    assert (truth["best_treatment"] == np.where(truth["lp_TA"] < truth["lp_SR"], "TA", "SR")).all()
    latent_columns = {"margin", "heterogeneity", "tumor_D", "washout"}
    assert not latent_columns & set(table.columns)
    for case in Cohort(phantom_cohort):
        assert case.available == ("ivim", "t2wi", "dwi", "us", "ceus")
        assert not list(case.folder.parent.glob(".*partial*"))
        assert (case.folder / "ivim.bval").read_text().split() == ["0", "10", "20", "40", "80", "200", "400",
                                                                   "600", "1000"]


def test_images_follow_profile_a(phantom_cohort):
    case = Cohort(phantom_cohort).case("A0001")
    ivim = sitk.ReadImage(str(case.folder / "ivim.nii.gz"))
    assert ivim.GetSize() == (96, 96, 20, 9) and ivim.GetSpacing()[:3] == (2.0, 2.0, 5.0)
    assert ivim.GetPixelID() == sitk.sitkFloat32
    t2 = sitk.ReadImage(str(case.folder / "t2wi.nii.gz"))
    assert t2.GetSize() == (192, 192, 20) and t2.GetSpacing() == (1.0, 1.0, 5.0) and t2.GetOrigin() == (0, 0, 0)
    us = sitk.ReadImage(str(case.folder / "us.nrrd"))
    assert us.GetDimension() == 2 and us.GetSize() == (256, 256)
    assert us.GetSpacing() == pytest.approx((0.3, 0.3))
    ceus = sitk.ReadImage(str(case.folder / "ceus.nii.gz"))
    assert ceus.GetSize() == (256, 256, 1, 12)
    assert sitk.ReadImage(str(case.folder / "ceus_roi.nii.gz")).GetPixelID() == sitk.sitkUInt8
    assert [float(t) for t in (case.folder / "ceus.times").read_text().split()] == \
        [0, 10, 20, 30, 45, 60, 90, 120, 150, 180, 210, 240]


def test_tumour_signal_matches_its_truth(phantom_cohort):
    """The tumour's b-value decay inside the ROI follows the latent D and f of truth.csv."""
    truth = pd.read_csv(phantom_cohort / "truth.csv").set_index("case_id")
    for case in Cohort(phantom_cohort):
        series = case.load_ivim()
        roi = sitk.GetArrayFromImage(case.load_roi("ivim")) == 1
        signal = frame_array(series.image)[:, roi].mean(axis=1)
        b = np.array(series.bvalues)
        high = b >= 200
        slope = -np.polyfit(b[high], np.log(signal[high]), 1)[0]
        assert slope == pytest.approx(truth.loc[case.case_id, "tumor_D"], rel=0.25)


def test_subcapsular_tumours_lie_within_10_mm_of_the_liver_surface(phantom_cohort):
    """Distance from the T2WI ROI to a dense sampling of the liver ellipsoid (70, 55, 40) mm."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, 200), np.linspace(0, 2 * np.pi, 400), indexing="ij")
    surface = np.stack([70 * np.sin(theta) * np.cos(phi), 55 * np.sin(theta) * np.sin(phi),
                        40 * np.cos(theta)], axis=-1).reshape(-1, 3) + np.array([95.0, 95.0, 47.5])
    table = pd.read_csv(phantom_cohort / "cohort.csv").set_index("case_id")
    from scipy.spatial import cKDTree
    tree = cKDTree(surface)
    for case in Cohort(phantom_cohort):
        roi = case.load_roi("t2wi")
        zyx = np.argwhere(sitk.GetArrayFromImage(roi) == 1)
        distance = tree.query(zyx[:, ::-1] * np.array(roi.GetSpacing()))[0].min()
        if table.loc[case.case_id, "subcapsular"]:
            assert distance <= 10.0 + 3.0, case.case_id  # voxel centres: up to half a 5 mm slice deeper
        else:
            assert distance > 10.0, case.case_id


# --- the outcome model, checked on many patients (latents and outcomes only: no images needed)

N_PATIENTS = 3000


@pytest.fixture(scope="module")
def patients():
    rows = []
    for i in range(1, N_PATIENTS + 1):
        _, p, o = draw_case_variables(11, i)
        rows.append({**p.as_dict(), **o.__dict__})
    return pd.DataFrame(rows)


def _binomial_ok(observed_share, p, n, k=4.0):
    return abs(observed_share - p) <= k * math.sqrt(p * (1 - p) / n)


def test_clinical_distributions(patients):
    n = len(patients)
    assert _binomial_ok(patients["sex_male"].mean(), 0.83, n)
    assert _binomial_ok(patients["cirrhosis"].mean(), 0.80, n)
    assert _binomial_ok(patients.loc[patients.cirrhosis == 1, "ctp_b"].mean(), 0.10, (patients.cirrhosis == 1).sum())
    assert (patients.loc[patients.cirrhosis == 0, "ctp_b"] == 0).all()
    assert _binomial_ok((patients["tumor_number"] == 1).mean(), 0.80, n)
    assert _binomial_ok((patients["echo"] == "hypo").mean(), 0.70, n)
    assert patients["diameter_cm"].between(1.0, 5.0).all()
    assert patients["diameter_cm"].median() == pytest.approx(2.3, rel=0.05)
    assert patients["age"].between(30, 85).all()
    assert patients["tumor_D"].between(0.5e-3, 1.5e-3).all()


def test_staging_fields_follow_spec_v1_1_from_their_own_generator(patients):
    """§6: drawn from [seed, i, 11] after the v1 patient, which they never change."""
    from HEROVisionLib.phantom.latents import draw_staging_fields

    draws = [draw_staging_fields(np.random.default_rng([11, i, 11]), draw_case_variables(11, i)[1])
             for i in range(1, len(patients) + 1)]
    fields = pd.DataFrame([draw.__dict__ for draw in draws])
    n = len(fields)
    for level, p in ((0, 0.85), (1, 0.12), (2, 0.03)):
        assert _binomial_ok((fields["ecog"] == level).mean(), p, n)
    ctp_b, cirrhosis = patients["ctp_b"] == 1, patients["cirrhosis"] == 1
    for score, p in ((7, 0.5), (8, 0.3), (9, 0.2)):
        assert _binomial_ok((fields.loc[ctp_b, "child_pugh_score"] == score).mean(), p, ctp_b.sum())
    for group, p in ((~ctp_b & cirrhosis, 0.55), (~cirrhosis, 0.70)):
        assert set(fields.loc[group, "child_pugh_score"]) == {5, 6}
        assert _binomial_ok((fields.loc[group, "child_pugh_score"] == 5).mean(), p, group.sum())
    assert (fields["vascular_invasion"] == 0).all() and (fields["extrahepatic_spread"] == 0).all()


def test_outcome_rates_in_spec_ranges(patients):
    assert 0.50 <= (patients["T_TA"] > 24).mean() <= 0.70  # "about 60 % progression-free at 2 years"
    assert 0.50 <= (patients["T_SR"] > 24).mean() <= 0.70
    assert 0.30 <= patients["er_2y"].mean() <= 0.50  # "about 40 % recur early after resection"
    assert 0.40 <= patients["pfs_event"].mean() <= 0.60  # "about half of the observed times are events"
    assert (patients["er_2y"] == (patients["T_SR"] <= 24)).all()


def test_treatment_share_follows_the_assignment_model(patients):
    zsize = (patients.diameter_cm - 2.3) / 0.9
    p_sr = 1 / (1 + np.exp(-(-0.3 + 0.8 * zsize - 0.8 * patients.portal_hypertension - 0.8 * patients.ctp_b
                             - 0.3 * patients.cirrhosis)))
    share = (patients["treatment"] == "SR").mean()
    assert abs(share - p_sr.mean()) <= 4 * math.sqrt((p_sr * (1 - p_sr)).sum()) / len(patients)


def test_cox_fit_recovers_the_linear_predictor(patients):
    observed_lp = np.where(patients.treatment == "TA", patients.lp_TA, patients.lp_SR)
    data = pd.DataFrame({"lp": observed_lp, "T": patients.pfs_months, "E": patients.pfs_event})
    fit = CoxPHFitter().fit(data, "T", "E")
    coefficient, se = fit.params_["lp"], fit.standard_errors_["lp"]
    assert abs(coefficient - 1.0) < 4 * se and abs(coefficient - 1.0) < 0.15


def test_cox_fit_recovers_the_resection_hazard_coefficients(patients):
    """Uncensored potential times under resection give back the spec's coefficients of lp_SR."""
    covariates = pd.DataFrame({
        "zsize": (patients.diameter_cm - 2.3) / 0.9, "margin": patients.margin,
        "heterogeneity": patients.heterogeneity, "zD": (patients.tumor_D - 1.0e-3) / 0.15e-3,
        "washout": patients.washout, "afp_high": patients.afp_high, "inr_high": patients.inr_high,
        "ca19_9_high": patients.ca19_9_high, "extra_tumours": patients.tumor_number - 1,
        "portal_hypertension": patients.portal_hypertension, "ctp_b": patients.ctp_b,
        "cirrhosis": patients.cirrhosis})
    expected = {"zsize": 0.5, "margin": 0.6, "heterogeneity": 0.5, "zD": -0.4, "washout": 0.3, "afp_high": 0.3,
                "inr_high": 0.25, "ca19_9_high": 0.2, "extra_tumours": 0.2, "portal_hypertension": 0.5,
                "ctp_b": 0.4, "cirrhosis": 0.2}
    fit = CoxPHFitter().fit(covariates.assign(T=patients.T_SR, E=1), "T", "E")
    for name, value in expected.items():
        assert abs(fit.params_[name] - value) < 4 * fit.standard_errors_[name], name


def test_profile_b_is_the_same_patient_acquired_by_another_centre():
    """Case (seed, i) under profile B: the same latents, outcome and tumour in the same place, seen on
    other grids (4 mm slices, 1.6 / 0.75 mm pixels), stored flipped, with other gain, SNR and CEUS timing."""
    from HEROVisionLib.io.geometry import label_centroid
    from HEROVisionLib.phantom.profiles import PROFILE_A, PROFILE_B

    a, b = generate_case(COHORT_SEED, 3, "A"), generate_case(COHORT_SEED, 3, "B")
    assert b.case_id == "B0003" and a.truth_row() == {**b.truth_row(), "case_id": "A0003"}
    rows = a.cohort_row(), b.cohort_row()
    differing = {k for k in rows[0] if rows[0][k] != rows[1][k]}
    assert differing <= {"case_id", "center", "tumor_size_cm"}
    assert abs(rows[0]["tumor_size_cm"] - rows[1]["tumor_size_cm"]) <= 0.3  # measured on another grid
    t2wi = b.images["t2wi"]
    assert t2wi.GetSpacing() == (0.75, 0.75, 4.0) and t2wi.GetDirection() == (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    assert np.allclose(PROFILE_B.ivim.centre, PROFILE_A.ivim.centre) and np.allclose(PROFILE_B.t2wi.centre,
                                                                                     PROFILE_A.ivim.centre)
    for name in ("t2wi_roi", "ivim_roi"):
        assert np.linalg.norm(label_centroid(a.images[name]) - label_centroid(b.images[name])) < 1.5  # mm
    assert b.images["ceus"].GetNumberOfComponentsPerPixel() == len(PROFILE_B.ceus_times_s) == 14
    signal_a, signal_b = (np.percentile(sitk.GetArrayViewFromImage(case.images["t2wi"]), 90) for case in (a, b))
    assert signal_b / signal_a == pytest.approx(1.8, abs=0.2)  # receiver gain 1.8 on the same anatomy


def test_the_bundled_models_know_both_centres_and_name_an_acquisition_beyond_their_training(tmp_path):
    """Trained on randomised acquisitions, the bundled models take profiles A and B as familiar; a
    case with 8 mm slices, 3 mm IVIM pixels and CEUS followed to 420 s is named, modality and measure
    with the recorded range, and still scored."""
    from dataclasses import replace
    from pathlib import Path

    from HEROVisionLib.io.case import Case
    from HEROVisionLib.phantom import write_case
    from HEROVisionLib.phantom.profiles import PROFILE_A, PROFILE_B, Grid
    from HEROVisionLib.predict import load_models, predict_case

    models = load_models(Path(__file__).resolve().parents[1] / "Resources" / "Models", "cpu")
    for profile in ("A", "B"):
        folder = write_case(generate_case(COHORT_SEED, 3, profile), tmp_path / profile)
        assert predict_case(Case(folder), models, "cpu").out_of_distribution == [], profile
    unusual = replace(PROFILE_B, ivim=Grid.centred(PROFILE_A.ivim.centre, (64, 64, 13), (3.0, 3.0, 8.0)),
                      ceus_times_s=(*PROFILE_B.ceus_times_s, 360.0, 420.0))
    folder = write_case(generate_case(COHORT_SEED, 3, unusual), tmp_path / "unusual")
    result = predict_case(Case(folder), models, "cpu")
    ranges = models.er.herovision["acquisition_ranges"]["ivim"]
    low, high = ranges["slice thickness (mm)"]
    assert f"ivim: slice thickness (mm) 8 is outside the training cohort's {low:.3g}–{high:.3g}" in \
        result.out_of_distribution
    assert any(line.startswith("ivim: in-plane spacing (mm) 3 is outside") for line in result.out_of_distribution)
    assert any(line.startswith("ceus: last CEUS frame (s) 420 is outside") for line in result.out_of_distribution)
    assert not any(line.startswith("t2wi") for line in result.out_of_distribution)  # T2WI as profile B's
    assert np.isfinite(result.survival["ta"].risk_score) and 0 < result.er_probability < 1


def test_profile_r_draws_each_case_its_own_acquisition_within_the_documented_ranges(tmp_path):
    from HEROVisionLib.io.case import Case
    from HEROVisionLib.io.ceus import select_phase_frames
    from HEROVisionLib.phantom import write_case
    from HEROVisionLib.phantom.profiles import IDENTITY, PROFILE_A, draw_profile

    profiles = [draw_profile(COHORT_SEED, i) for i in range(1, 41)]
    assert draw_profile(COHORT_SEED, 5) == profiles[4]  # the same case, the same acquisition
    for p in profiles:
        assert p.ivim.spacing[0] == pytest.approx(1.8, abs=0.4) and p.t2wi.spacing[0] == pytest.approx(0.9, abs=0.3)
        assert 3.0 <= p.ivim.spacing[2] <= 6.0 and 3.0 <= p.t2wi.spacing[2] <= 6.0
        assert np.allclose(p.ivim.matrix.T @ p.ivim.matrix, np.eye(3)) and p.ivim.direction == p.t2wi.direction
        tilt = np.degrees(np.arccos(np.clip(abs(p.ivim.matrix[2, 2]), -1, 1)))
        assert tilt <= 15.0 + 1e-6
        assert np.allclose(p.ivim.centre, PROFILE_A.ivim.centre) and np.allclose(p.t2wi.centre, PROFILE_A.ivim.centre)
        assert np.all(p.ivim.field_mm >= PROFILE_A.ivim.field_mm - 1e-6)
        assert 20 <= p.snr_ivim <= 60 and 15 <= p.snr_t2wi <= 45 and 0.5 <= p.gain_mr <= 2.0 and 0.6 <= p.gain_us <= 1.6
        assert p.ceus_times_s[0] == 0 and 240 <= p.ceus_times_s[-1] <= 300
        select_phase_frames(p.ceus_times_s)  # arterial, portal and late frames always exist
        b = np.asarray(p.bvalues)
        assert b[0] == 0 and 5 <= len(b) <= 10 and 600 <= b[-1] <= 1000 and np.all(np.diff(b) > 0)
        assert 2 <= np.sum((b > 0) & (b < 200)) <= 5 and p.dwi_bvalue in (800, 1000)
    assert len({p.bvalues for p in profiles}) > 30  # schemes differ from case to case
    assert len({p.ivim.spacing for p in profiles}) == 40 and sum(p.ivim.direction != IDENTITY for p in profiles) == 40

    a, r = generate_case(COHORT_SEED, 3, "A"), generate_case(COHORT_SEED, 3, "R")
    assert r.case_id == "R0003" and a.truth_row() == {**r.truth_row(), "case_id": "A0003"}
    case = Case(write_case(r, tmp_path / "cohort"))
    image = case.load_image("t2wi")  # every reading check passes on the oblique grid
    assert image.GetDirection() == pytest.approx(draw_profile(COHORT_SEED, 3).t2wi.direction)
    assert case.missing() == {}
    assert case.load_ivim().bvalues == pytest.approx(draw_profile(COHORT_SEED, 3).bvalues)
