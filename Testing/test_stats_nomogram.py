"""The nomogram's Cox model selection against R's univariate coxph screen and step(direction = "backward")
on Rossi, and its points and survival probabilities against R's survfit; bad inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.stats import build_nomogram, select_cox_model

R_FIXTURES = Path(__file__).parent / "fixtures" / "r"
ROSSI = pd.read_csv(R_FIXTURES / "rossi.csv")
CANDIDATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def model():
    return select_cox_model(ROSSI, "week", "arrest", CANDIDATES)


def test_univariate_screen_matches_r_wald_p(model):
    reference = pd.read_csv(R_FIXTURES / "univariate_screen.csv").set_index("term")["p"]
    np.testing.assert_allclose(model.screening_p[CANDIDATES], reference[CANDIDATES], rtol=1e-5)


def test_backward_stepwise_aic_selects_and_fits_as_r_step(model):
    """R: screen keeps fin, age, wexp, mar, prio (P < 0.20); step() then drops wexp."""
    reference = pd.read_csv(R_FIXTURES / "stepwise_rossi.csv").set_index("term")
    assert model.covariates == tuple(reference.index)
    columns = ["coef", "hazard_ratio", "lower", "upper"]
    np.testing.assert_allclose(model.summary[columns], reference[columns], rtol=1e-6)
    np.testing.assert_allclose(model.summary["p"], reference["p"], rtol=1e-5)
    assert model.log_likelihood == pytest.approx(reference["loglik"].iloc[0], rel=1e-10)
    assert model.aic == pytest.approx(reference["aic"].iloc[0], rel=1e-10)


def test_nomogram_points_span_0_to_100_for_the_widest_variable(model):
    nomogram = build_nomogram(model, ROSSI, "week", "arrest")
    points = nomogram.points(ROSSI).drop(columns="total")
    assert points.min().min() == pytest.approx(0, abs=1e-12)
    assert points.max().max() == pytest.approx(100, rel=1e-12)
    assert (points.min() >= -1e-12).all() and (points.max() <= 100 + 1e-9).all()


def test_total_points_give_r_survfit_survival_at_12_24_36(model):
    """R: summary(survfit(step_fit, newdata = rossi[1:5, ], ctype = 1), times = c(12, 24, 36)) —
    Breslow's baseline hazard with the selected model's coefficients."""
    reference = pd.read_csv(R_FIXTURES / "nomogram_survival_rossi.csv")
    nomogram = build_nomogram(model, ROSSI, "week", "arrest", horizons=(12, 24, 36))
    survival = nomogram.survival(nomogram.points(ROSSI.iloc[:5])["total"])
    assert list(survival.columns) == [12.0, 24.0, 36.0]
    np.testing.assert_allclose(survival.to_numpy().ravel(), reference["survival"], rtol=1e-7)


def test_the_standard_error_of_a_prediction_is_r_survfit_std_err(model):
    """R: std.err of survfit.coxph (coefficients' and baseline's error, Tsiatis), as the standard error
    of log H(t | x) — what the treatment advice's uncertainty is drawn from."""
    reference = pd.read_csv(R_FIXTURES / "nomogram_survival_rossi.csv")
    nomogram = build_nomogram(model, ROSSI, "week", "arrest", horizons=(12, 24, 36))
    np.testing.assert_allclose(nomogram.log_hazard_se(ROSSI.iloc[:5]).ravel(), reference["log_hazard_se"], rtol=1e-6)


def test_total_points_map_back_to_the_linear_predictor(model):
    nomogram = build_nomogram(model, ROSSI, "week", "arrest")
    total = nomogram.points(ROSSI)["total"]
    linear_predictor = ROSSI[list(model.covariates)].to_numpy() @ model.summary["coef"].to_numpy()
    np.testing.assert_allclose(nomogram.linear_predictor(total), linear_predictor, rtol=1e-10, atol=1e-12)


def test_bad_inputs_raise_input_errors(model):
    with pytest.raises(InputError, match="lacks column"):
        select_cox_model(ROSSI, "week", "arrest", ["fin", "grade"])
    with pytest.raises(InputError, match="no candidate"):
        select_cox_model(ROSSI, "week", "arrest", ["race", "paro"])
    with pytest.raises(InputError, match="age: has 1 missing"):
        select_cox_model(ROSSI.assign(age=ROSSI["age"].where(ROSSI.index != 3)), "week", "arrest", ["age"])
    with pytest.raises(InputError, match="no event"):
        select_cox_model(ROSSI.assign(arrest=0), "week", "arrest", ["age"])
    with pytest.raises(InputError, match=r"missing or infinite value\(s\) in prio"):
        build_nomogram(model, ROSSI, "week", "arrest").points(ROSSI.assign(prio=np.nan).iloc[:1])


def test_a_nomogram_stored_as_plain_numbers_gives_the_same_points_and_survival(model):
    """What a model package carries (JSON numbers) must predict exactly what the fitted nomogram does."""
    import json

    from HEROVisionLib.models.nomogram import Nomogram

    nomogram = build_nomogram(model, ROSSI, "week", "arrest")
    stored = Nomogram.from_dict(json.loads(json.dumps(nomogram.to_dict())))
    pd.testing.assert_frame_equal(stored.points(ROSSI), nomogram.points(ROSSI))
    total = nomogram.points(ROSSI)["total"]
    pd.testing.assert_frame_equal(stored.survival(total), nomogram.survival(total))
    np.testing.assert_array_equal(stored.log_hazard_se(ROSSI), nomogram.log_hazard_se(ROSSI))
    older = {k: v for k, v in nomogram.to_dict().items() if k in ("coefficients", "lowest_contribution", "points_scale",
                                                                  "horizons", "baseline_cumulative_hazard")}
    assert Nomogram.from_dict(older).log_hazard_se(ROSSI) is None  # a package from before they were recorded
