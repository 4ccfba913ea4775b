"""The paper's four cross-stratification categories on constructed patients, read on one 2-year PFS
scale common to both treatments; the advice's firmness under test-time augmentation."""

import math

import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.predict.result import NomogramResult, PredictionResult, SurvivalResult
from HEROVisionLib.clinical.treatment import recommend, risk_groups, summary_line


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


def _pfs(two_years):
    return {12: min(1.0, two_years + 0.15), 24: two_years, 36: two_years - 0.1}


def test_groups_are_read_on_one_scale_so_switching_never_points_to_the_lower_pfs():
    assert risk_groups({"TA": 0.40, "SR": 0.70}, 0.55) == {"TA": "high", "SR": "low"}
    assert risk_groups({"TA": 0.55, "SR": 0.549}, 0.55) == {"TA": "low", "SR": "high"}  # at the threshold: low
    # Models with their own cutoffs could call TA (PFS 0.55) high and SR (PFS 0.50) low; on one scale
    # a "switch" always goes to the treatment with the higher predicted PFS.
    for ta, sr in ((0.55, 0.50), (0.30, 0.45), (0.62, 0.61)):
        for threshold in (0.35, 0.5, 0.56, 0.615):
            groups = risk_groups({"TA": ta, "SR": sr}, threshold)
            for planned in ("TA", "SR"):
                advice = recommend(groups["TA"], groups["SR"], planned)
                if advice.category == "switch":
                    assert {"TA": ta, "SR": sr}[advice.treatment] > {"TA": ta, "SR": sr}[planned]
    with pytest.raises(ValueError, match="threshold must lie in"):
        risk_groups({"TA": 0.4, "SR": 0.6}, math.nan)


def test_the_summary_line_gives_both_pfs_the_threshold_the_advice_and_early_recurrence():
    result = PredictionResult("A0001", models_trained=True, er_probability_combined=0.372, pfs_2y_threshold=0.55,
                              survival={"ta": SurvivalResult("HEROVision-TA", 1.2, "high", _pfs(0.41), ()),
                                        "sr": SurvivalResult("HEROVision-SR", -0.4, "high", _pfs(0.68), ())})
    line = summary_line(result, "TA")  # SR's own group says high; on the common scale 68 % is low risk
    assert line.startswith("2-year PFS TA 41 % (high risk), SR 68 % (low risk; high below 55 %) — ")
    assert "switching to SR" in line and line.endswith("early recurrence after resection 37 %")
    untrained = PredictionResult("A0002", er_probability_combined=math.nan)
    assert summary_line(untrained) == "UNTRAINED placeholder models"


def test_the_summary_line_reads_the_nomograms_when_both_models_have_them():
    result = PredictionResult(
        "A0003", models_trained=True, pfs_2y_threshold=0.55, nomogram_pfs_2y_threshold=0.5,
        survival={"ta": SurvivalResult("HEROVision-TA", 1.2, "high", _pfs(0.3), (), NomogramResult({}, 40.0, "low", _pfs(0.62))),
                  "sr": SurvivalResult("HEROVision-SR", -0.4, "low", _pfs(0.7), (), NomogramResult({}, 90.0, "high", _pfs(0.45)))})
    line = summary_line(result, "SR")
    assert line.startswith("2-year PFS TA 62 % (low risk), SR 45 % (high risk; high below 50 %, nomograms) — ")
    assert "consider switching to TA" in line


@pytest.fixture(scope="module")
def predicted(phantom_cohort, tmp_path_factory):
    from HEROVisionLib.io.case import Case
    from HEROVisionLib.predict import load_models, predict_case, write_untrained_models

    models = load_models(write_untrained_models(tmp_path_factory.mktemp("models")), "cpu")
    case = Case(phantom_cohort / "A0003")
    return case, predict_case(case, models, "cpu", overlays=False), models


def _with_baselines(result, models, ta_hazard, sr_hazard, threshold):
    """The prediction as packages with these 2-year baseline hazards would give it, and a common threshold."""
    from dataclasses import replace

    from HEROVisionLib.predict.case_prediction import survival_from_score

    for package, hazard in ((models.ta, ta_hazard), (models.sr, sr_hazard)):
        package.metadata["herovision"]["baseline_cumulative_hazard"]["24"] = hazard
    survival = {key: replace(s, pfs=survival_from_score(getattr(models, key), s.risk_score)[1])
                for key, s in result.survival.items()}
    return replace(result, survival=survival, pfs_2y_threshold=threshold)


def test_advice_far_from_the_threshold_is_firm_and_reproducible(predicted):
    from HEROVisionLib.clinical.treatment import advise

    case, result, models = predicted
    result = _with_baselines(result, models, 50.0, 1e-3, 0.5)  # TA PFS ≈ 0, SR ≈ 1 whatever the perturbation
    advice = advise(case, result, models, planned="TA", draws=12, seed=4)
    assert advice.recommendation.category == "switch" and advice.stability == 1.0 and not advice.borderline
    assert advice.p_sr_better == advice.p_other_better == 1.0 and not advice.draws_disagree
    assert advice.words.startswith("100 % probability that SR gives a longer 2-year PFS than the planned TA; "
                                   f"2-year PFS SR − TA {100 * advice.difference_median:+.0f} points (median of 12 "
                                   "re-scorings")
    assert advice.words.endswith(f"Paper's category: {advice.recommendation.words} — firm: the same category in "
                                 "100 % of the re-scorings")
    low, high = advice.difference_interval
    assert low <= advice.difference_median <= high
    assert advice.basis == "image risk score"  # placeholder packages carry no nomogram
    assert advice.to_dict()["risk_groups"] == {"TA": "high", "SR": "low"} and advice.threshold_2y == 0.5
    low, high = advice.difference_interval
    assert low < high  # the perturbations do move the scores
    assert advise(case, result, models, planned="TA", draws=12, seed=4, device="auto") == advice  # as the CLI passes it


def test_advice_on_the_threshold_is_called_borderline(predicted):
    """A 2-year PFS at the threshold is not below it (low risk); and a threshold in the middle of the
    re-scorings' PFS splits them, so the advice is borderline."""
    import numpy as np

    from HEROVisionLib.clinical.treatment import _perturbed, _pfs_2y, advise
    from HEROVisionLib.predict.case_prediction import survival_scores

    case, result, models = predicted
    result = _with_baselines(result, models, 0.6, 50.0, 0.5)
    on_it = _with_baselines(result, models, 0.6, 50.0, result.survival["ta"].pfs[24])  # TA exactly on it, SR high
    assert advise(case, on_it, models, planned="TA", draws=4, seed=4).recommendation.category == "keep"
    batch = _perturbed(result.survival_inputs["ta"], 24, 4)  # the re-scorings advise makes with this seed
    drawn = {key: survival_scores(getattr(models, key), result.survival_inputs[key], "cpu", batch).numpy()
             for key in ("ta", "sr")}
    middle = float(np.median(_pfs_2y(models, drawn, False, {})["TA"]))
    advice = advise(case, _with_baselines(result, models, 0.6, 50.0, middle), models, planned="TA", draws=24, seed=4)
    assert 0 < advice.stability < 0.8 and advice.borderline
    assert "borderline: the same category in" in advice.words and "median of 24 re-scorings: 24 perturbed images" in advice.words


def test_a_balanced_case_has_a_probability_of_benefit_near_one_half(predicted):
    """SR's baseline set so that half the re-scorings give SR the lower 2-year hazard: P(benefit)
    is one half, the median difference sits inside its interval, and the unperturbed estimate is
    placed among the draws."""
    import numpy as np

    from HEROVisionLib.clinical.treatment import _perturbed, _pfs_2y, advise
    from HEROVisionLib.predict.case_prediction import survival_scores

    case, result, models = predicted
    result = _with_baselines(result, models, 0.6, 0.6, 0.5)
    batch = _perturbed(result.survival_inputs["ta"], 24, 4)
    drawn = {key: survival_scores(getattr(models, key), result.survival_inputs[key], "cpu", batch).numpy()
             for key in ("ta", "sr")}
    pfs = _pfs_2y(models, drawn, False, {})
    log_ratio = np.log(-np.log(pfs["TA"])) - np.log(-np.log(pfs["SR"]))  # log hazard TA − SR per re-scoring
    advice = advise(case, _with_baselines(result, models, 0.6, 0.6 * float(np.exp(np.median(log_ratio))), 0.5),
                    models, planned="SR", draws=24, seed=4)
    assert advice.p_sr_better == pytest.approx(0.5, abs=1 / 24) and advice.p_other_better == 1 - advice.p_sr_better
    low, high = advice.difference_interval
    assert low < advice.difference_median < high and abs(advice.difference_median) < 0.02
    again = _pfs_2y(models, drawn, False, {})  # the same re-scorings, read with the baselines now set
    differences = again["SR"] - again["TA"]
    assert advice.p_sr_better == pytest.approx(np.mean(differences > 0) + 0.5 * np.mean(differences == 0))
    assert advice.point_percentile == pytest.approx(np.mean(differences < advice.difference_2y))
    assert f"{100 * (1 - advice.p_sr_better):.0f} % probability that TA gives a longer 2-year PFS than the planned SR" \
        in advice.words


def test_the_words_say_when_the_rescorings_disagree_with_the_papers_category():
    from HEROVisionLib.clinical.treatment import TreatmentAdvice, recommend

    switch = recommend("high", "low", "TA")  # the paper: switch to SR
    advice = TreatmentAdvice(switch, "nomogram", {"TA": 0.40, "SR": 0.52}, 0.45, 0.12, (-0.21, 0.30), 0.26, 32,
                             16, "TA", p_sr_better=0.38, difference_median=-0.03, point_percentile=0.97)
    assert advice.draws_disagree and advice.p_other_better == 0.38
    assert advice.words.startswith("38 % probability that SR gives a longer 2-year PFS than the planned TA; "
                                   "2-year PFS SR − TA -3 points (median of 512 re-scorings")
    assert "unperturbed estimate +12, above 97 % of them" in advice.words
    assert advice.words.endswith("consider switching to SR — the re-scorings disagree with it (the same category "
                                 "in 26 % of the re-scorings)")
    agreeing = TreatmentAdvice(switch, "nomogram", {"TA": 0.40, "SR": 0.52}, 0.45, 0.12, (0.02, 0.30), 0.9, 32, 16,
                               "TA", p_sr_better=0.93, difference_median=0.11, point_percentile=0.55)
    assert not agreeing.draws_disagree and agreeing.words.endswith("firm: the same category in 90 % of the re-scorings")
    row = agreeing.to_dict()
    assert row["p_other_better"] == 0.93 and row["planned"] == "TA" and row["draws_disagree"] is False


def test_case_advice_is_against_the_recorded_plan_and_refuses_a_negative_draw_count(predicted):
    from dataclasses import replace

    from HEROVisionLib.io.case import Case
    from HEROVisionLib.clinical.treatment import advise, case_advice

    case, result, models = predicted
    result = _with_baselines(result, models, 50.0, 1e-3, 0.5)
    planned_sr = Case(case.folder, {"treatment": "SR"})
    stored = case_advice(planned_sr, result, models, draws=6)
    assert stored == advise(planned_sr, result, models, planned="SR", draws=6).to_dict() and stored["category"] == "keep"
    assert case_advice(case, result, models, draws=6)["category"] == "favours"  # no record: no planned treatment
    assert case_advice(case, result, models, draws=0) is None
    assert case_advice(case, replace(result, survival={"ta": result.survival["ta"]}), models) is None
    with pytest.raises(InputError, match="advice draws: must be 0"):
        case_advice(case, result, models, draws=-2)
