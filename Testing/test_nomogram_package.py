"""The survival packages' nomogram: fitted on the training cohort with the risk score and the clinical
factors that matter, carried as plain numbers, and applied at prediction with the case's clinical
record (or a warning naming what is missing)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

from HEROVisionLib.io.case import Case, Cohort
from HEROVisionLib.models.nomogram import Nomogram
from HEROVisionLib.predict import load_models, predict_case, write_untrained_models
from HEROVisionLib.train.data import CohortTensors
from HEROVisionLib.train.survival_training import fit_nomogram

TRUE_EFFECTS = {"risk_score": 0.8, "afp_high": 0.7, "portal_hypertension": 0.6}


def _cohort(n=400, seed=3, events_only=None):
    """Subjects from a Cox model with known effects; ``age`` and ``alt_high`` carry none."""
    rng = np.random.default_rng(seed)
    clinical = pd.DataFrame({"case_id": [f"S{k:04d}" for k in range(n)], "afp_high": rng.random(n) < 0.3,
                             "portal_hypertension": rng.random(n) < 0.3, "age": rng.normal(60, 10, n).round(),
                             "alt_high": rng.random(n) < 0.15, "treatment": "TA"}).astype({"afp_high": int,
                                                                                               "portal_hypertension": int,
                                                                                               "alt_high": int})
    score = rng.normal(0, 1, n)
    hazard = np.exp(TRUE_EFFECTS["risk_score"] * score + TRUE_EFFECTS["afp_high"] * clinical["afp_high"]
                    + TRUE_EFFECTS["portal_hypertension"] * clinical["portal_hypertension"]) / 30
    time_, censor = rng.exponential(1 / hazard), rng.uniform(12, 72, n)
    event = time_ <= censor
    if events_only is not None:
        event[events_only:] = False
    data = CohortTensors(list(clinical["case_id"]), {}, {"time": torch.tensor(np.minimum(time_, censor)),
                                                         "event": torch.tensor(event)}, clinical)
    return score, data


def test_the_nomogram_keeps_the_factors_that_matter_with_their_cox_coefficients():
    score, data = _cohort()
    block = fit_nomogram(score, data)
    nomogram = Nomogram.from_dict(block)
    assert set(TRUE_EFFECTS) <= set(nomogram.covariates) <= set(TRUE_EFFECTS) | {"age", "alt_high"}
    # the selected model is lifelines' Cox fit of those covariates on the training cohort
    frame = data.clinical[[c for c in nomogram.covariates if c != "risk_score"]].assign(
        risk_score=score, time=data.labels["time"].numpy(), event=data.labels["event"].numpy().astype(int))
    reference = CoxPHFitter().fit(frame, "time", "event").params_
    np.testing.assert_allclose(nomogram.coefficients[reference.index], reference, rtol=1e-5)
    for name, effect in TRUE_EFFECTS.items():
        row = next(r for r in block["model"] if r["covariate"] == name)
        assert row["lower"] < math.exp(effect) < row["upper"]
    assert np.isfinite(block["risk_cutoff"])


def test_a_cohort_too_small_for_a_nomogram_says_why():
    score, data = _cohort(n=30, events_only=2)
    block = fit_nomogram(score, data)
    assert list(block) == ["unavailable"] and "events per variable" in block["unavailable"]


@pytest.fixture(scope="module")
def models_with_a_nomogram(tmp_path_factory):
    models = load_models(write_untrained_models(tmp_path_factory.mktemp("models")), "cpu")
    score, data = _cohort()
    models.ta.metadata["herovision"]["nomogram"] = fit_nomogram(score, data)
    return models


def test_prediction_applies_the_nomogram_to_the_case_clinical_record(phantom_cohort, models_with_a_nomogram):
    case = Cohort(phantom_cohort).case("A0003")
    row = predict_case(case, models_with_a_nomogram, "cpu").row()
    block = models_with_a_nomogram.ta.herovision["nomogram"]
    nomogram = Nomogram.from_dict(block)
    values = pd.DataFrame([{name: row["ta_risk_score"] if name == "risk_score" else float(case.clinical[name])
                            for name in nomogram.covariates}])
    expected = nomogram.points(values)["total"].iloc[0]
    assert row["ta_nomogram_points"] == pytest.approx(expected, rel=1e-12)
    assert row["ta_nomogram_pfs_2y"] == pytest.approx(nomogram.survival([expected])[24.0].iloc[0], rel=1e-12)
    high = nomogram.linear_predictor(expected) > block["risk_cutoff"]
    assert row["ta_nomogram_risk_group"] == ("high" if high else "low")
    assert math.isnan(row["sr_nomogram_points"]) and row["sr_nomogram_risk_group"] == ""  # SR has none


def test_without_a_clinical_record_the_nomogram_is_skipped_with_a_warning(phantom_cohort, models_with_a_nomogram):
    result = predict_case(Case(phantom_cohort / "A0003"), models_with_a_nomogram, "cpu")
    assert math.isnan(result.row()["ta_nomogram_points"])
    warning = next(w for w in result.warnings if "nomogram not computed" in w)
    assert "afp_high" in warning and "portal_hypertension" in warning and "risk_score" not in warning


def test_the_panel_is_told_which_clinical_values_the_nomograms_need(models_with_a_nomogram):
    covariates = Nomogram.from_dict(models_with_a_nomogram.ta.herovision["nomogram"]).covariates
    assert models_with_a_nomogram.nomogram_covariates() == sorted(set(covariates) - {"risk_score"})
