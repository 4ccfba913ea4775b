"""The joint Cox model of both arms: without shrinkage it is exactly the two per-arm Cox models (its
PFS and the standard error of the treatment difference equal the per-arm nomograms', themselves
checked against R's survfit), shrinkage pulls the arms together, and its probability of benefit is
calibrated where the truth is known."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.stats import build_nomogram
from HEROVisionLib.stats.nomogram_fit import CoxModel
from HEROVisionLib.stats.joint_model import fit_joint_model

ROSSI = pd.read_csv(Path(__file__).parent / "fixtures" / "r" / "rossi.csv")
ROSSI["arm"] = np.where(ROSSI["fin"] == 1, "SR", "TA")  # financial aid as the "treatment"
COVARIATES = ("age", "prio", "wexp")


def _per_arm_nomogram(arm: str):
    """An unselected Cox model of one arm (lifelines) as a nomogram: Breslow baseline, Tsiatis SE."""
    from lifelines import CoxPHFitter

    from HEROVisionLib.stats.survival import COX_FIT_OPTIONS

    patients = ROSSI[ROSSI["arm"] == arm]
    fitted = CoxPHFitter().fit(patients[["week", "arrest", *COVARIATES]], "week", "arrest", fit_options=COX_FIT_OPTIONS)
    model = CoxModel(COVARIATES, pd.DataFrame({"coef": fitted.params_}), fitted.variance_matrix_, 0.0, 0.0,
                     pd.Series(dtype=float))
    return build_nomogram(model, patients, "week", "arrest", horizons=(24,))


def test_without_shrinkage_the_joint_model_is_the_two_per_arm_models():
    joint = fit_joint_model(ROSSI, "week", "arrest", "arm", COVARIATES, horizons=(24,), penalizers=(1e-12,), folds=3,
                            shared_penalizer=1e-12)
    rows = ROSSI.iloc[:8]
    per_arm = {arm: _per_arm_nomogram(arm) for arm in ("TA", "SR")}
    log_hazard = {arm: np.log(n.baseline_cumulative_hazard[0]) + rows[list(COVARIATES)].to_numpy() @ n.coefficients.to_numpy()
                  for arm, n in per_arm.items()}
    difference, se = joint.log_hazard_difference(rows, 24.0)
    np.testing.assert_allclose(difference, log_hazard["TA"] - log_hazard["SR"], rtol=1e-6, atol=1e-8)
    expected_se = np.hypot(per_arm["TA"].log_hazard_se(rows)[:, 0], per_arm["SR"].log_hazard_se(rows)[:, 0])
    np.testing.assert_allclose(se, expected_se, rtol=1e-5)


def test_a_strong_penalty_pulls_the_interactions_towards_zero():
    loose = fit_joint_model(ROSSI, "week", "arrest", "arm", COVARIATES, horizons=(24,), penalizers=(1e-9,), folds=3)
    tight = fit_joint_model(ROSSI, "week", "arrest", "arm", COVARIATES, horizons=(24,), penalizers=(100.0,), folds=3)
    k = len(COVARIATES)
    assert np.abs(tight.coefficients[k:]).max() < 0.2 * np.abs(loose.coefficients[k:]).max()
    assert tight.penalizer == 100.0


def test_the_probability_of_benefit_is_calibrated_on_a_known_truth():
    """Exponential hazards with a shared effect of x1 and a treatment interaction on x2: over 4000
    patients the model's P(SR better) for new patients matches how often it truly is (by bins),
    and cross-validation picks a penalty from the grid."""
    rng = np.random.default_rng(3)

    def cohort(n):
        x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
        arm = np.where(rng.random(n) < 0.5, "SR", "TA")
        rate = 0.03 * np.exp(0.5 * x1 + np.where(arm == "SR", 0.15 + 0.6 * x2, 0.0))
        time = rng.exponential(1 / rate)
        censor = rng.uniform(12, 60, n)
        return pd.DataFrame({"x1": x1, "x2": x2, "arm": arm, "time": np.minimum(time, censor),
                             "event": (time <= censor).astype(int)})

    joint = fit_joint_model(cohort(4000), "time", "event", "arm", ("x1", "x2"), horizons=(24.0,), folds=3)
    assert joint.penalizer in (0.03, 0.1, 0.3, 1.0, 3.0)
    new = cohort(2000)
    truth = (0.15 + 0.6 * new["x2"] < 0).to_numpy()  # resection's hazard is the lower one
    p = joint.p_sr_better(new)
    assert np.mean((p > 0.5) == truth) > 0.9
    for low, high in ((0.0, 0.2), (0.8, 1.0)):
        inside = (p >= low) & (p < high)
        assert inside.sum() > 100 and low - 0.05 <= truth[inside].mean() <= high + 0.05


def test_a_joint_model_needs_both_arms():
    with pytest.raises(InputError, match="needs patients of both arms"):
        fit_joint_model(ROSSI[ROSSI["arm"] == "TA"], "week", "arrest", "arm", COVARIATES)
