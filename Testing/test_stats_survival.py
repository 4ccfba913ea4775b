"""Survival statistics against R (survival 3.5): concordance, log-rank and hazard ratio of risk groups,
Kaplan–Meier, Breslow's baseline hazard and survival probabilities; time-dependent AUC against
scikit-learn's ROC AUC where the two must coincide; bad inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from HEROVisionLib.errors import InputError
from HEROVisionLib.models.model_set import survival_probability
from HEROVisionLib.stats import (breslow_baseline_cumulative_hazard, compare_risk_groups, harrell_c,
                                 time_dependent_auc, uno_c)

R_FIXTURES = Path(__file__).parent / "fixtures" / "r"
ROSSI = pd.read_csv(R_FIXTURES / "rossi.csv")
SYNTHETIC_C = pd.read_csv(R_FIXTURES / "survival_synthetic.csv").query("set == 'c'")
CONCORDANCE = pd.read_csv(R_FIXTURES / "concordance.csv").set_index("data")["harrell"]


def _rossi_linear_predictor(ties: str) -> np.ndarray:
    coefficients = pd.read_csv(R_FIXTURES / "cox_coefficients.csv").query("ties == @ties")
    return ROSSI[list(coefficients["term"])].to_numpy() @ coefficients["coef"].to_numpy()


def test_harrell_c_matches_r_concordance():
    """R: concordance(Surv(week, arrest) ~ lp, reverse = TRUE) = 0.6403 (higher risk, shorter survival)."""
    c_index = harrell_c(_rossi_linear_predictor("efron"), ROSSI["week"], ROSSI["arrest"])
    assert c_index == pytest.approx(CONCORDANCE["rossi_efron_lp"], rel=1e-9)


@pytest.mark.parametrize("row", pd.read_csv(R_FIXTURES / "truncated_concordance.csv").to_dict(orient="records"),
                         ids=lambda row: f"{row['set']}-{row['tau']:g}")
def test_truncated_harrell_c_matches_r_concordance_with_ymax(row):
    """R: concordance(Surv(time, event) ~ score, reverse = TRUE, ymax = tau), on sets with tied times
    and tied (integer, stage-like) scores; the truncated C differs from the untruncated one."""
    synthetic = pd.read_csv(R_FIXTURES / "survival_synthetic.csv")
    rows = synthetic[synthetic["set"] == row["set"]]
    c_index = harrell_c(rows["score"], rows["time"], rows["event"], tau=row["tau"])
    assert c_index == pytest.approx(row["harrell"], rel=1e-9)
    assert c_index != pytest.approx(harrell_c(rows["score"], rows["time"], rows["event"]), rel=1e-6)


def test_uno_c_without_censoring_is_harrell_c():
    """With no censoring every pair weighs the same, so Uno's C is R's Harrell C."""
    everyone_fails = np.ones(len(SYNTHETIC_C))
    c_index = uno_c(SYNTHETIC_C["score"], SYNTHETIC_C["time"], everyone_fails)
    assert c_index == pytest.approx(CONCORDANCE["synthetic_c_all_events"], rel=1e-9)


@pytest.mark.parametrize("tau", [None, 2.0])
def test_uno_c_agrees_with_r_inverse_censoring_weights(tau):
    """R: concordance(..., timewt = "n/G2", ymax = tau). R's censoring Kaplan–Meier counts a censoring tied
    with an event as at risk with it, scikit-survival as later: the weights differ slightly, here by < 2e-4."""
    reference = pd.read_csv(R_FIXTURES / "uno_concordance.csv")
    expected = reference["uno"][reference["tau"].isna() if tau is None else reference["tau"] == tau].item()
    c_index = uno_c(SYNTHETIC_C["score"], SYNTHETIC_C["time"], SYNTHETIC_C["event"], tau=tau)
    assert c_index == pytest.approx(expected, abs=2e-4)


def test_time_dependent_auc_without_censoring_is_the_roc_auc_of_failing_by_t():
    """Uncensored: cases (time ≤ t) against controls (time > t) with equal weights — scikit-learn's ROC AUC."""
    score, time = SYNTHETIC_C["score"].to_numpy(), SYNTHETIC_C["time"].to_numpy()
    times = np.array([0.5, 1.0, 2.0])
    auc, mean_auc = time_dependent_auc(score, time, np.ones(len(time)), times)
    expected = [roc_auc_score(time <= t, score) for t in times]
    np.testing.assert_allclose(auc, expected, rtol=1e-12)
    assert min(expected) <= mean_auc <= max(expected)


def test_risk_groups_match_r_survdiff_coxph_and_survfit():
    """High risk = efron linear predictor above its median. R: survdiff chi-square, coxph(~ high) hazard
    ratio with 95 % CI and Wald p, survfit (conf.type = "log-log") at weeks 10–52."""
    linear_predictor = _rossi_linear_predictor("efron")
    high = linear_predictor > np.median(linear_predictor)
    result = compare_risk_groups(ROSSI["week"], ROSSI["arrest"], high)
    reference = pd.read_csv(R_FIXTURES / "risk_groups_rossi.csv").iloc[0]
    assert result.logrank_statistic == pytest.approx(reference["logrank_chisq"], rel=1e-9)
    assert result.logrank_p == pytest.approx(reference["logrank_p"], rel=1e-7)
    assert result.hazard_ratio == pytest.approx(reference["hazard_ratio"], rel=1e-6)
    assert result.hazard_ratio_ci == pytest.approx((reference["lower"], reference["upper"]), rel=1e-6)
    assert result.hazard_ratio_p == pytest.approx(reference["wald_p"], rel=1e-5)

    kaplan_meier = pd.read_csv(R_FIXTURES / "km_rossi.csv")
    for group, curve in kaplan_meier.groupby("high"):
        fitter = result.kaplan_meier["high" if group else "low"]
        np.testing.assert_allclose(fitter.predict(curve["time"].to_numpy()), curve["survival"], rtol=1e-12)
        band = fitter.confidence_interval_survival_function_
        at_times = band.reindex(band.index.union(curve["time"])).ffill().loc[curve["time"]]
        np.testing.assert_allclose(at_times.iloc[:, 0], curve["lower"], rtol=1e-9)
        np.testing.assert_allclose(at_times.iloc[:, 1], curve["upper"], rtol=1e-9)


def test_breslow_baseline_matches_r_basehaz():
    """R: basehaz(coxph(..., ties = "breslow"), centered = FALSE) at every event and censoring time."""
    reference = pd.read_csv(R_FIXTURES / "basehaz_rossi.csv")
    hazard = breslow_baseline_cumulative_hazard(_rossi_linear_predictor("breslow"), ROSSI["week"], ROSSI["arrest"],
                                                reference["time"])
    np.testing.assert_allclose(hazard, reference["hazard"], rtol=1e-10)


def test_breslow_baseline_is_zero_before_the_first_event_and_flat_after_the_last():
    risk = _rossi_linear_predictor("breslow")
    hazard = breslow_baseline_cumulative_hazard(risk, ROSSI["week"], ROSSI["arrest"], [0.5, 52, 100])
    assert hazard[0] == 0 and hazard[2] == hazard[1] > 0


def test_survival_probability_matches_r_survfit_for_new_subjects():
    """R: summary(survfit(coxph(..., ties = "breslow"), newdata = rossi[1:5, ]), times = c(12, 24, 36, 52))."""
    reference = pd.read_csv(R_FIXTURES / "survfit_rossi.csv")
    horizons = np.array([12, 24, 36, 52])
    risk = _rossi_linear_predictor("breslow")
    baseline = breslow_baseline_cumulative_hazard(risk, ROSSI["week"], ROSSI["arrest"], horizons)
    probability = survival_probability(risk[:5], baseline)
    np.testing.assert_allclose(probability.ravel(), reference["survival"], rtol=1e-10)


def test_bad_survival_inputs_raise_input_errors():
    score, time, event = np.array([0.1, 0.5, 0.2]), np.array([3.0, 1.0, 2.0]), np.array([1, 0, 1])
    with pytest.raises(InputError, match="time: has 2 values"):
        harrell_c(score, time[:2], event[:2])
    with pytest.raises(InputError, match="risk score: has 1 missing"):
        harrell_c([0.1, np.nan, 0.2], time, event)
    with pytest.raises(InputError, match="event: must hold only 0 and 1"):
        harrell_c(score, time, [1, 2, 0])
    with pytest.raises(InputError, match="negative"):
        breslow_baseline_cumulative_hazard(score, [-1.0, 1.0, 2.0], event, [1.0])
    with pytest.raises(InputError, match="no event"):
        breslow_baseline_cumulative_hazard(score, time, [0, 0, 0], [1.0])
    with pytest.raises(InputError, match="both risk groups"):
        compare_risk_groups(time, event, [1, 1, 1])
    with pytest.raises(InputError, match="tau"):
        uno_c(_rossi_linear_predictor("efron"), ROSSI["week"], ROSSI["arrest"])  # everyone left is censored at 52
