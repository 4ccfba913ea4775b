"""Cohort analysis on phantom patients (their clinical record and outcomes, drawn without images):
re-stratification counts, propensity-score balance, subgroups, oracle agreement, the command's files."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from HEROVisionLib.cli import main
from HEROVisionLib.clinical.cohort_analysis import analyse_cohort, analysis_table, oracle_agreement, restratification
from HEROVisionLib.errors import InputError
from HEROVisionLib.phantom.generate import draw_case_variables

N = 400


@pytest.fixture(scope="module")
def phantom_patients():
    """cohort.csv- and truth.csv-like tables of N phantom patients (PHANTOM.md §1–2)."""
    cohort, truth = [], []
    for index in range(1, N + 1):
        _, patient, outcome = draw_case_variables(11, index)
        case_id = f"A{index:04d}"
        cohort.append({**patient.as_dict(), "case_id": case_id, "center": "AB"[index % 2],
                       "tumor_size_cm": round(patient.diameter_cm, 1), "treatment": outcome.treatment,
                       "pfs_months": outcome.pfs_months, "pfs_event": outcome.pfs_event})
        truth.append({"case_id": case_id, "lp_TA": outcome.lp_TA, "lp_SR": outcome.lp_SR,
                      "best_treatment": outcome.best_treatment})
    return pd.DataFrame(cohort), pd.DataFrame(truth)


def _pfs_2y(score):
    """The phantom's 2-year PFS (Weibull, PHANTOM.md §2) of a log relative hazard."""
    return np.exp(-(24 / 30) ** 1.2 * np.exp(score))


def _results(truth, sign=1.0, cutoff=None):
    """A results.csv whose models score patients by the true linear predictors (times ``sign``), with
    2-year PFS from the phantom's Weibull model and one common threshold at ``cutoff``. Each model's own
    risk group is cut elsewhere (at its arm's median), as separately trained models would be."""
    rows = {"case_id": truth["case_id"], "status": "ok", "tumor_size_cm": 2.0}  # measured: must not hide cohort.csv's
    cutoff = np.median(sign * truth[["lp_TA", "lp_SR"]].to_numpy()) if cutoff is None else cutoff
    for arm in ("TA", "SR"):
        score = sign * truth[f"lp_{arm}"]
        rows[f"{arm.lower()}_risk_score"] = score
        rows[f"{arm.lower()}_risk_group"] = np.where(score > np.median(score) + 0.3, "high", "low")
        rows[f"{arm.lower()}_pfs_2y"] = _pfs_2y(score)
        for column in ("nomogram_risk_group", "nomogram_pfs_2y"):
            rows[f"{arm.lower()}_{column}"] = "" if "group" in column else math.nan
    rows["pfs_2y_threshold"], rows["nomogram_pfs_2y_threshold"] = _pfs_2y(cutoff), math.nan
    return pd.DataFrame(rows)


def test_restratification_counts_each_arm_by_group_and_category(phantom_patients):
    cohort, truth = phantom_patients
    table, basis = analysis_table(_results(truth), cohort)
    assert basis == "image risk score" and len(table) == N
    counts = restratification(table)
    for row in table.sample(20, random_state=0).itertuples():
        groups = ["high" if pfs < row.pfs_2y_threshold else "low" for pfs in (row.ta_pfs_2y, row.sr_pfs_2y)]
        received, other = groups[:: 1 if row.treatment == "TA" else -1]
        expected = {("high", "low"): "switch", ("low", "high"): "keep", ("low", "low"): "either",
                    ("high", "high"): "both high"}[(received, other)]
        assert row.category == expected
    crosstab = pd.crosstab([table["treatment"], table["group_received"]], table["category"]).stack()
    merged = counts.set_index(["treatment", "group_received", "category"])["patients"]
    assert merged.to_dict() == {k: v for k, v in crosstab.to_dict().items() if v}
    assert counts.groupby("treatment")["share_of_arm"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_perfect_scores_agree_with_the_oracle_and_reversed_ones_do_not(phantom_patients):
    cohort, truth = phantom_patients
    perfect, _ = analysis_table(_results(truth), cohort)
    agreement = oracle_agreement(perfect, truth)
    assert agreement["overall_agreement"] == 1.0 and agreement["flagged_agreement"] == 1.0
    assert agreement["flagged_for_switching"] > 0 and all(agreement["targets_met"].values())
    # exact binomial intervals: with every one of n agreeing, (0.025^(1/n), 1) in closed form
    flagged = agreement["flagged_for_switching"]
    assert agreement["flagged_agreement_ci95"] == pytest.approx([0.025 ** (1 / flagged), 1.0])
    reversed_, _ = analysis_table(_results(truth, sign=-1.0), cohort)
    reversed_agreement = oracle_agreement(reversed_, truth)
    assert reversed_agreement["overall_agreement"] == 0.0
    assert reversed_agreement["overall_agreement_ci95"] == pytest.approx([0.0, 1 - 0.025 ** (1 / N)])


def test_stored_advice_splits_the_flagged_into_firm_and_borderline(phantom_patients):
    """Noisy scores flag some patients wrongly; advice stored as borderline where the two predicted
    PFS are close separates the doubtful flags from the firm ones."""
    cohort, truth = phantom_patients
    noisy = truth.copy()
    rng = np.random.default_rng(3)
    for arm in ("TA", "SR"):
        noisy[f"lp_{arm}"] = truth[f"lp_{arm}"] + rng.normal(0, 0.5, len(truth))
    results = _results(noisy)
    close = (results["sr_pfs_2y"] - results["ta_pfs_2y"]).abs() < 0.15
    table, _ = analysis_table(results, cohort)
    table["advice_category"], table["advice_borderline"] = table["category"], close.to_numpy()
    agreement = oracle_agreement(table, truth)
    flagged = table[table["category"] == "switch"].merge(truth, on="case_id")
    agrees = np.where(flagged["treatment"] == "TA", "SR", "TA") == flagged["best_treatment"]
    firm = ~flagged["advice_borderline"].to_numpy()
    assert agreement["flagged_firm"] == firm.sum() > 0 and agreement["flagged_borderline"] == (~firm).sum() > 0
    assert agreement["flagged_firm_agreement"] == pytest.approx(agrees[firm].mean())
    assert agreement["flagged_borderline_agreement"] == pytest.approx(agrees[~firm].mean())
    assert agreement["flagged_firm_agreement"] > agreement["flagged_agreement"] > agreement["flagged_borderline_agreement"]
    # advice stored against another planned treatment than cohort.csv's says nothing about these flags
    table.loc[table["category"] == "switch", "advice_category"] = "keep"
    assert "flagged_firm" not in oracle_agreement(table, truth)


def test_a_calibrated_probability_of_benefit_is_measured_as_calibrated_and_an_overconfident_one_is_not(
        phantom_patients, tmp_path):
    """P(SR better) drawn uniformly and the oracle's better treatment drawn with that probability:
    slope near 1 and a small ECE; the same probabilities pushed to the extremes (logit × 3): slope
    near 1/3 and a large ECE. Switches at P ≥ 0.8 agree as often as their probabilities say."""
    from HEROVisionLib.clinical.cohort_analysis import benefit_calibration

    cohort, truth = phantom_patients
    table, _ = analysis_table(_results(truth), cohort)
    rng = np.random.default_rng(8)
    p = rng.uniform(0, 1, len(table))
    drawn = truth.copy()
    drawn["best_treatment"] = np.where(rng.uniform(0, 1, len(table)) < p, "SR", "TA")
    table["advice_p_sr_better"] = p
    calibrated = benefit_calibration(table, drawn, tmp_path)
    assert 0.75 < calibrated["calibration_slope"] < 1.3 and calibrated["ece"] < 0.06
    low, high = calibrated["calibration_slope_ci95"]
    assert low < 1 < high and calibrated["targets_met"]["ece"]
    switches = np.where(table["treatment"] == "TA", p, 1 - p) >= 0.8
    assert calibrated["confident_switches"] == switches.sum() > 0
    assert calibrated["confident_switch_agreement"] == pytest.approx(
        np.mean(np.where(table["treatment"] == "TA", drawn["best_treatment"] == "SR",
                         drawn["best_treatment"] == "TA")[switches]))
    logit = np.log(p / (1 - p))
    table["advice_p_sr_better"] = 1 / (1 + np.exp(-3 * logit))
    overconfident = benefit_calibration(table, drawn, tmp_path)
    assert 0.2 < overconfident["calibration_slope"] < 0.45 and overconfident["ece"] > 0.1
    assert not overconfident["targets_met"]["ece"] and (tmp_path / "benefit_reliability.png").stat().st_size > 10_000
    assert benefit_calibration(table.drop(columns="advice_p_sr_better"), drawn, tmp_path) is None


def test_the_command_writes_balanced_matching_subgroups_and_figures(phantom_patients, tmp_path, capsys):
    cohort, truth = phantom_patients
    _results(truth).to_csv(tmp_path / "results.csv", index=False)
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    truth.to_csv(tmp_path / "truth.csv", index=False)
    out = tmp_path / "analysis"
    assert main(["cohort-analysis", str(tmp_path / "results.csv"), "--cohort", str(tmp_path / "cohort.csv"), "--out", str(out),
                 "--truth", str(tmp_path / "truth.csv")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    matching = summary["propensity_matching"]
    # TA/SR assignment depends on size, portal hypertension, CTP-B and cirrhosis (PHANTOM.md §2): before
    # matching the arms differ; after, every covariate is balanced
    assert matching["max_abs_smd_before"] > 0.3 and matching["balanced"] and matching["max_abs_smd_after"] < 0.1
    assert {"tumor_size_cm", "portal_hypertension", "ctp_b", "cirrhosis"} <= set(matching["covariates"])
    balance = pd.read_csv(out / "propensity_balance.csv", index_col="covariate")
    assert (balance["after"].abs() < 0.1).all() and matching["pairs"] >= 100
    subgroups = pd.read_csv(out / "subgroups.csv")
    assert set(subgroups["subgroup"]) == {"sex", "age", "tumour size", "tumour number", "centre"}
    assert subgroups["c_index"].dropna().between(0.5, 1).all()  # true linear predictors rank well everywhere
    for name in ("restratification_sankey.png", "high_risk_TA.png", "high_risk_SR.png", "propensity_balance.png"):
        assert (out / name).stat().st_size > 10_000
    high = summary["high_risk_before_after_switching"]["TA"]
    counts = pd.read_csv(out / "restratification.csv").set_index(["treatment", "group_received", "category"])
    assert high["flagged_for_switching"] == counts.loc[("TA", "high", "switch"), "patients"]
    assert high["high_risk"] == counts.loc[("TA", "high")]["patients"].sum()
    assert all(0 < high[k] < 1 for k in ("pfs_2y_all_high_risk", "pfs_2y_without_flagged", "pfs_2y_flagged"))
    assert summary["oracle"]["overall_agreement"] == 1.0
    printed = capsys.readouterr().out  # the terminal's account of the same summary
    assert f"propensity matching: {matching['pairs']} pairs" in printed and "(balanced)" in printed
    assert f"oracle, overall agreement: 100 % of {N} (95 % 99 %–100 %; target ≥ 70 % met)" in printed
    assert f"TA high risk: {high['high_risk']}, of them flagged for switching {high['flagged_for_switching']}" in printed


def test_a_cohort_where_no_patient_is_high_risk_is_summarised(phantom_patients, tmp_path, capsys):
    """An arm without high-risk patients (a small or favourable cohort) crashed the terminal summary."""
    cohort, truth = phantom_patients
    _results(truth, cutoff=truth[["lp_TA", "lp_SR"]].to_numpy().max() + 1).to_csv(tmp_path / "results.csv", index=False)
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    assert main(["cohort-analysis", str(tmp_path / "results.csv"), "--cohort", str(tmp_path / "cohort.csv"),
                 "--out", str(tmp_path / "analysis")]) == 0
    printed = capsys.readouterr().out
    assert "TA high risk: none" in printed and "SR high risk: none" in printed


def test_unreadable_or_duplicated_tables_are_named(phantom_patients, tmp_path):
    cohort, truth = phantom_patients
    _results(truth).to_csv(tmp_path / "results.csv", index=False)
    pd.concat([cohort, cohort.iloc[:1]]).to_csv(tmp_path / "cohort.csv", index=False)
    with pytest.raises(InputError, match=r"cohort.csv: duplicate case_id\(s\) \['A0001'\]"):
        analyse_cohort(tmp_path / "results.csv", tmp_path / "cohort.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_results_without_both_models_are_refused(phantom_patients):
    cohort, truth = phantom_patients
    results = _results(truth)
    results.loc[3, ["sr_risk_score", "sr_pfs_2y", "pfs_2y_threshold"]] = math.nan  # what a TA-only row holds
    with pytest.raises(InputError, match="every case needs both TA and SR predictions"):
        analysis_table(results, cohort)
    with pytest.raises(InputError, match="lacks column.*sr_pfs_2y"):
        analysis_table(_results(truth).drop(columns="sr_pfs_2y"), cohort)
    with pytest.raises(InputError, match="treatment must be TA or SR"):
        analysis_table(_results(truth), cohort.assign(treatment="RFA"))


@pytest.mark.parametrize("column, value", [("ta_risk_score", "high"), ("sr_pfs_2y", "inf"), ("pfs_2y_threshold", "0,5")])
def test_a_results_value_that_is_not_a_finite_number_is_refused_naming_case_and_column(phantom_patients, column, value):
    """A hand-edited table crashed the summary with a KeyError."""
    cohort, truth = phantom_patients
    results = _results(truth).astype({column: object})
    results.loc[2, column] = value
    with pytest.raises(InputError, match=rf"results.csv: case {results.loc[2, 'case_id']}, column {column}: "
                                         rf"'{value}' is not a finite number"):
        analysis_table(results, cohort)
