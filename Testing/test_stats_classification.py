"""Binary-outcome statistics against R (pROC 1.18 DeLong, hoslem.test's arithmetic, decision-curve
net benefit as dca/stdca compute it) and bootstrap intervals against SciPy; bad inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap

from HEROVisionLib.errors import InputError
from HEROVisionLib.stats import (auc_with_delong_ci, bootstrap_ci, calibration, delong_test, hosmer_lemeshow,
                                 net_benefit, survival_net_benefit)

R_FIXTURES = Path(__file__).parent / "fixtures" / "r"
DATA = pd.read_csv(R_FIXTURES / "classification_synthetic.csv")
SURVIVAL = pd.read_csv(R_FIXTURES / "survival_synthetic.csv").query("set == 'c'")


@pytest.mark.parametrize("score", ["score1", "score2"])
def test_auc_and_delong_interval_match_proc(score):
    """R: ci.auc(roc(outcome, score, direction = "<"), method = "delong"); scores have ties."""
    reference = pd.read_csv(R_FIXTURES / "roc_auc.csv").set_index("score").loc[score]
    result = auc_with_delong_ci(DATA["outcome"], DATA[score])
    assert result.auc == pytest.approx(reference["auc"], rel=1e-12)
    assert (result.lower, result.upper) == pytest.approx((reference["lower"], reference["upper"]), rel=1e-10)


def test_paired_delong_test_matches_proc_roc_test():
    """R: roc.test(roc1, roc2, method = "delong", paired = TRUE): Z, p and the 95 % CI of AUC₁ − AUC₂."""
    reference = pd.read_csv(R_FIXTURES / "roc_test.csv").iloc[0]
    result = delong_test(DATA["outcome"], DATA["score1"], DATA["score2"])
    assert result.z == pytest.approx(reference["z"], rel=1e-10)
    assert result.p == pytest.approx(reference["p"], rel=1e-9)
    assert result.difference == pytest.approx(reference["difference"], rel=1e-12)
    assert (result.lower, result.upper) == pytest.approx((reference["lower"], reference["upper"]), rel=1e-9)


def test_identical_scores_do_not_differ():
    result = delong_test(DATA["outcome"], DATA["score1"], DATA["score1"])
    assert result.z == 0 and result.p == 1


def test_hosmer_lemeshow_matches_hoslem_test():
    """R: hoslem.test(outcome, probability, g = 10), its arithmetic reproduced in base R."""
    reference = pd.read_csv(R_FIXTURES / "hosmer_lemeshow.csv").iloc[0]
    result = hosmer_lemeshow(DATA["outcome"], DATA["probability"])
    assert result.statistic == pytest.approx(reference["statistic"], rel=1e-10)
    assert result.df == reference["df"]
    assert result.p == pytest.approx(reference["p"], rel=1e-8)


def test_calibration_slope_and_expected_calibration_error_match_r():
    """R: glm(outcome ~ qlogis(probability), binomial) for the slope; the ECE over ten equal-width bins
    in base R (Testing/fixtures/r/make_fixtures.R)."""
    from HEROVisionLib.stats.classification import calibration_slope, expected_calibration_error

    reference = pd.read_csv(R_FIXTURES / "calibration_probability.csv").iloc[0]
    assert calibration_slope(DATA["outcome"], DATA["probability"]) == pytest.approx(reference["slope"], rel=1e-6)
    assert expected_calibration_error(DATA["outcome"], DATA["probability"]) == pytest.approx(reference["ece"],
                                                                                           rel=1e-12)
    with pytest.raises(InputError, match="both outcomes"):
        calibration_slope(np.ones(5), np.full(5, 0.5))


def test_calibration_of_calibrated_predictions_lies_on_the_diagonal():
    """Outcomes drawn with the predicted probabilities: each decile's event rate is its mean prediction
    within binomial error (2000 subjects per decile, SD < 0.012)."""
    rng = np.random.default_rng(5)
    probability = rng.uniform(size=20000)
    observed, predicted = calibration(rng.uniform(size=20000) < probability, probability)
    assert len(observed) == 10
    np.testing.assert_allclose(observed, predicted, atol=0.04)


def test_binary_net_benefit_matches_r():
    """R: TP/n − FP/n·pt/(1 − pt) treating probability ≥ pt, and treat-all, at pt = 0.05 … 0.60."""
    reference = pd.read_csv(R_FIXTURES / "net_benefit_binary.csv")
    result = net_benefit(DATA["outcome"], DATA["probability"], reference["threshold"])
    columns = ["model", "treat_all"]
    np.testing.assert_allclose(result[columns], reference[columns], rtol=1e-12, atol=1e-14)


def test_survival_net_benefit_matches_stdca():
    """R: stdca's arithmetic with survfit Kaplan–Meier at horizon 2 (probability > pt treated)."""
    reference = pd.read_csv(R_FIXTURES / "net_benefit_survival.csv")
    result = survival_net_benefit(SURVIVAL["probability"], SURVIVAL["time"], SURVIVAL["event"], 2.0,
                                  reference["threshold"])
    columns = ["model", "treat_all"]
    np.testing.assert_allclose(result[columns], reference[columns], rtol=1e-12, atol=1e-14)


def test_bootstrap_percentile_interval_agrees_with_scipy():
    """Same percentile method as scipy.stats.bootstrap; different random draws, so equal within Monte Carlo error."""
    values = np.random.default_rng(11).exponential(size=200)
    ours = bootstrap_ci(np.mean, values, n_boot=4000, seed=1)
    scipy_interval = bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                               random_state=np.random.default_rng(2)).confidence_interval
    assert ours.estimate == values.mean()
    assert (ours.lower, ours.upper) == pytest.approx((scipy_interval.low, scipy_interval.high), abs=0.02)


def test_stratified_bootstrap_keeps_the_number_of_cases_and_pairs_rows():
    outcome = DATA["outcome"].to_numpy()
    cases = bootstrap_ci(lambda y: y.sum(), outcome, n_boot=200, seed=3, strata=outcome)
    assert cases.lower == cases.upper == outcome.sum()
    paired = bootstrap_ci(lambda a, b: np.abs(a - b).max(), outcome, outcome.copy(), n_boot=50, seed=3)
    assert paired.upper == 0
    first, second = (bootstrap_ci(np.mean, outcome, n_boot=100, seed=9) for _ in range(2))
    assert first == second


def test_bad_inputs_raise_input_errors():
    outcome, score = DATA["outcome"].to_numpy(), DATA["score1"].to_numpy()
    with pytest.raises(InputError, match="score: has 159 values"):
        auc_with_delong_ci(outcome, score[:-1])
    with pytest.raises(InputError, match="score2: has 1 missing"):
        delong_test(outcome, score, np.r_[np.nan, score[1:]])
    with pytest.raises(InputError, match="both outcomes"):
        auc_with_delong_ci(np.ones(len(score)), score)
    with pytest.raises(InputError, match="two cases"):
        auc_with_delong_ci(np.r_[1, np.zeros(len(score) - 1)], score)
    with pytest.raises(InputError, match="probability: must lie in"):
        hosmer_lemeshow(outcome, score)
    with pytest.raises(InputError, match="thresholds"):
        net_benefit(outcome, DATA["probability"], [0.0, 0.5])
    with pytest.raises(InputError, match="no event"):
        survival_net_benefit(SURVIVAL["probability"], SURVIVAL["time"], np.zeros(len(SURVIVAL)), 2.0, [0.2])
    with pytest.raises(InputError, match="array 2"):
        bootstrap_ci(np.mean, outcome, score[:-1])
