"""The paper's four cross-stratification categories on constructed patients."""

import math

import pytest

from HEROVisionLib.predict.result import PredictionResult, SurvivalResult
from HEROVisionLib.treatment import recommend, summary_line


@pytest.mark.parametrize("ta, sr, planned, category, treatment", [
    ("high", "low", "TA", "switch", "SR"),      # high under the plan, low under the other: switch
    ("low", "high", "SR", "switch", "TA"),
    ("low", "high", "TA", "keep", "TA"),        # low under the plan, high under the other: keep
    ("high", "low", "SR", "keep", "SR"),
    ("low", "low", "TA", "either", None),       # low under both: shared decision
    ("high", "high", "SR", "both high", None),  # high under both: intensify, monitor
    ("high", "low", None, "favours", "SR"),     # no plan: the low-risk treatment is favoured
    ("low", "high", None, "favours", "TA"),
])
def test_each_combination_of_risk_groups_gets_the_papers_category(ta, sr, planned, category, treatment):
    advice = recommend(ta, sr, planned)
    assert (advice.category, advice.treatment) == (category, treatment)


def test_the_words_say_what_to_do():
    assert "consider switching to SR" in recommend("high", "low", "TA").words
    assert "shared decision" in recommend("low", "low").words
    assert "more aggressive sequential treatment and closer monitoring" in recommend("high", "high").words


@pytest.mark.parametrize("ta, sr, planned", [("medium", "low", None), ("high", "low", "RFA")])
def test_unknown_groups_or_treatments_are_refused(ta, sr, planned):
    with pytest.raises(ValueError):
        recommend(ta, sr, planned)


def test_the_summary_line_names_both_groups_the_advice_and_early_recurrence():
    result = PredictionResult("A0001", models_trained=True, er_probability_combined=0.372,
                              survival={"ta": SurvivalResult("HEROVision-TA", 1.2, "high", {}, ()),
                                        "sr": SurvivalResult("HEROVision-SR", -0.4, "low", {}, ())})
    line = summary_line(result, "TA")
    assert line.startswith("TA high risk, SR low risk — ") and "switching to SR" in line
    assert line.endswith("early recurrence after resection 37 %")
    untrained = PredictionResult("A0002", er_probability_combined=math.nan)
    assert summary_line(untrained) == "UNTRAINED placeholder models"


@pytest.fixture(scope="module")
def predicted(phantom_cohort, tmp_path_factory):
    from HEROVisionLib.io.case import Case
    from HEROVisionLib.predict import load_models, predict_case, write_untrained_models

    models = load_models(write_untrained_models(tmp_path_factory.mktemp("models")), "cpu")
    case = Case(phantom_cohort / "A0003")
    return case, predict_case(case, models, "cpu", overlays=False), models


def _with_cutoffs(models, ta_cutoff, sr_cutoff):
    models.ta.metadata["herovision"]["risk_cutoff"] = ta_cutoff
    models.sr.metadata["herovision"]["risk_cutoff"] = sr_cutoff


def test_advice_far_from_the_cutoffs_is_firm_and_reproducible(predicted):
    from HEROVisionLib.treatment import advise

    case, result, models = predicted
    _with_cutoffs(models, -1e3, 1e3)  # TA high and SR low whatever the perturbation
    advice = advise(case, result, models, planned="TA", draws=12, seed=4)
    assert advice.recommendation.category == "switch" and advice.stability == 1.0 and not advice.borderline
    assert advice.basis == "image risk score"  # placeholder packages carry no nomogram
    low, high = advice.difference_interval
    assert low < high  # the perturbations do move the scores
    assert advise(case, result, models, planned="TA", draws=12, seed=4) == advice


def test_advice_on_the_cutoff_is_called_borderline(predicted):
    from HEROVisionLib.treatment import advise

    case, result, models = predicted
    _with_cutoffs(models, result.survival["ta"].risk_score, -1e3)  # TA exactly on its cutoff, SR high
    advice = advise(case, result, models, planned="TA", draws=24, seed=4)
    assert advice.recommendation.category == "keep"  # the score is not above the cutoff: low
    assert 0 < advice.stability < 0.8 and advice.borderline
    assert "borderline" in advice.words and "of 24 perturbed re-scorings" in advice.words


def test_the_summary_line_reads_the_nomogram_groups_when_both_models_have_them():
    from HEROVisionLib.predict.result import NomogramResult

    result = PredictionResult(
        "A0003", models_trained=True,
        survival={"ta": SurvivalResult("HEROVision-TA", 1.2, "high", {}, (), NomogramResult({}, 40.0, "low", {})),
                  "sr": SurvivalResult("HEROVision-SR", -0.4, "low", {}, (), NomogramResult({}, 90.0, "high", {}))})
    assert summary_line(result, "SR").startswith("TA low risk, SR high risk (nomograms) — ")
    assert "consider switching to TA" in summary_line(result, "SR")
