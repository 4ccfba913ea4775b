"""``herovision cohort-analysis``: the paper's treatment analyses on a predicted cohort.

From the batch results (``results.csv``) and the cohort's record (``cohort.csv``: treatment
received, PFS, clinical factors), with the treatment received taken as the planned one:

- **re-stratification**: each arm's patients by their risk group under the received treatment and
  their cross-stratification category (:mod:`HEROVisionLib.clinical.treatment`), as a table and a Sankey
  (alluvial) diagram;
- **high-risk group before and after switching**: Kaplan–Meier PFS of each arm's high-risk patients,
  all of them and without those flagged for switching (high under their treatment, low under the
  other) — what the arm's high-risk group would look like had they been switched;
- **propensity-score matching** of TA against SR (logistic propensity, greedy 1:1 nearest neighbour
  within 0.2 SD, :mod:`HEROVisionLib.stats.propensity`) with standardised mean differences before and
  after, and both models' C-index in the matched arms;
- **subgroups**: each model's Harrell's C on its arm by sex, age ≤ 60 / > 60, size ≤ 3 / > 3 cm,
  solitary / multiple tumours and centre;
- with the phantom's ``truth.csv``: how often the advice agrees with the oracle's better treatment,
  overall (the treatment with the higher predicted 2-year PFS) and among the patients flagged for
  switching; when the batch stored each case's advice (``advice_borderline``), also among the flagged
  whose advice is firm and among those it calls borderline — whether the firmness means anything;
  and when it stored the probability of benefit (``advice_p_sr_better``), how calibrated it is: the
  more probable treatment's agreement, the switches it makes with P(other better) ≥ 0.8 and their
  agreement, a reliability diagram of P(SR better) against the oracle, the calibration slope and the
  expected calibration error with bootstrap intervals. Nothing is recalibrated with the oracle: real
  cohorts have none.

Risk groups are cross-stratification's: predicted 2-year PFS against the common threshold
(``pfs_2y_threshold``), from the nomograms when every patient has both, else from the image scores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.clinical import ARMS, TREATMENTS
from ..io.case import read_case_table
from ..io.images import staged_outputs, write_text_atomic
from ..io.output_folder import output_folder
from ..plots import figure, pyplot
from ..stats import harrell_c
from ..stats.propensity import BALANCED_SMD, match_nearest, propensity_scores, standardized_mean_differences
from .treatment import recommend

PROPENSITY_COVARIATES = ("age", "sex_male", "tumor_size_cm", "tumor_number", "cirrhosis", "ctp_b",
                         "portal_hypertension", "afp_high", "perivascular")
TARGETS = {"overall_agreement": 0.70, "confident_switch_agreement": 0.80}  # at least
ECE_TARGET = 0.10  # at most
#: Advice columns of results.csv read as numbers when present (blank when the advice was skipped).
ADVICE_NUMBERS = ("advice_p_sr_better", "advice_p_other_better", "advice_difference_median")
#: P(the other treatment is better) from which the probability of benefit advises switching.
CONFIDENT_SWITCH = 0.8


def analysis_table(results: pd.DataFrame, cohort: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One row per patient predicted without error and recorded in the cohort: received treatment,
    outcome, clinical factors, both groups, 2-year PFS under each treatment, category and advice."""
    needed = [f"{k}_{c}" for k in ARMS for c in ("risk_score", "pfs_2y", "nomogram_pfs_2y")] + \
        ["pfs_2y_threshold", "nomogram_pfs_2y_threshold", "status"]
    absent = [c for c in needed if c not in results.columns]
    if absent:
        raise InputError("results", f"lacks column(s) {', '.join(absent)}: give the results.csv of `herovision batch`")
    ok = results[results["status"] == "ok"]
    table = cohort.merge(ok, on="case_id", how="inner", validate="one_to_one", suffixes=("", "_predicted"))
    if table.empty:
        raise InputError("results", "no predicted case of the cohort (case_id) without error")
    for column in ("treatment", "pfs_months", "pfs_event"):
        if column not in table.columns:
            raise InputError("cohort.csv", f"needs column {column!r}")
    unknown = sorted(set(table["treatment"]) - set(TREATMENTS))
    if unknown:
        raise InputError("cohort.csv", f"treatment must be TA or SR, found {unknown}")
    for column in [c for c in (*needed, *ADVICE_NUMBERS) if c in table.columns and c != "status"]:
        table[column] = _finite_numbers(table, column)
    nomogram = all(table[f"{k}_nomogram_pfs_2y"].notna().all() for k in ARMS) and \
        table["nomogram_pfs_2y_threshold"].notna().all()
    prefix = "nomogram_" if nomogram else ""
    threshold = table[f"{prefix}pfs_2y_threshold"]
    pfs = {arm: table[f"{key}_{prefix}pfs_2y"] for key, arm in ARMS.items()}
    scores = [table[f"{key}_risk_score"] for key in ARMS]
    if not (threshold.notna() & pfs["TA"].notna() & pfs["SR"].notna() & scores[0].notna() & scores[1].notna()).all():
        raise InputError("results", "every case needs both TA and SR predictions")
    for arm in TREATMENTS:
        table[f"pfs2y_{arm}"] = pfs[arm]
        table[f"group_{arm}"] = np.where(pfs[arm] < threshold, "high", "low")
    advice = [recommend(row.group_TA, row.group_SR, row.treatment) for row in table.itertuples()]
    table["category"] = [a.category for a in advice]
    table["group_received"] = [row.group_TA if row.treatment == "TA" else row.group_SR for row in table.itertuples()]
    table["better_predicted"] = np.where(table["pfs2y_SR"] > table["pfs2y_TA"], "SR", "TA")
    table["risk_received"] = np.where(table["treatment"] == "TA", table["ta_risk_score"], table["sr_risk_score"])
    return table, ("nomogram" if nomogram else "image risk score")


def _finite_numbers(table: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as numbers, blanks kept blank; text or an infinite value is refused naming case and
    column (a hand-edited or foreign table must not reach the statistics)."""
    numbers = pd.to_numeric(table[column], errors="coerce")
    bad = table[column].notna() & ~np.isfinite(numbers.fillna(np.inf))
    if bad.any():
        row = table[bad].iloc[0]
        raise InputError("results.csv", f"case {row['case_id']}, column {column}: {row[column]!r} is not a finite number")
    return numbers


def restratification(table: pd.DataFrame) -> pd.DataFrame:
    """Counts per arm × original group (under the received treatment) × category."""
    counts = table.groupby(["treatment", "group_received", "category"]).size().rename("patients").reset_index()
    counts["share_of_arm"] = counts["patients"] / counts.groupby("treatment")["patients"].transform("sum")
    return counts


def plot_sankey(counts: pd.DataFrame, path: Path) -> None:
    """Alluvial diagram per arm: original risk group (left) → cross-stratification category (right)."""
    plt = pyplot()
    drawing, axes = plt.subplots(1, 2, figsize=(11, 5))
    colours = {"switch": "tab:red", "keep": "tab:green", "either": "tab:blue", "both high": "tab:orange"}
    for axis, arm in zip(axes, TREATMENTS):
        part = counts[counts["treatment"] == arm]
        total = part["patients"].sum()
        left = part.groupby("group_received")["patients"].sum().reindex(["high", "low"], fill_value=0)
        right = part.groupby("category")["patients"].sum().reindex(list(colours), fill_value=0)
        gap = 0.02
        left_top = {g: 1 - sum(left[:k]) / max(total, 1) - k * gap for k, g in enumerate(left.index)}
        right_top = {c: 1 - sum(right[:k]) / max(total, 1) - k * gap for k, c in enumerate(right.index)}
        left_used, right_used = dict.fromkeys(left.index, 0.0), dict.fromkeys(right.index, 0.0)
        order = part.assign(rank=part["category"].map(list(colours).index)).sort_values(["group_received", "rank"])
        for row in order.itertuples():
            height = row.patients / max(total, 1)
            y0 = left_top[row.group_received] - left_used[row.group_received]
            y1 = right_top[row.category] - right_used[row.category]
            x = np.linspace(0.1, 0.9, 50)
            s = (1 - np.cos(np.pi * (x - 0.1) / 0.8)) / 2
            axis.fill_between(x, y0 + (y1 - y0) * s, y0 - height + (y1 - y0) * s, color=colours[row.category],
                              alpha=0.45, linewidth=0)
            left_used[row.group_received] += height
            right_used[row.category] += height
        for name, top in left_top.items():
            height = left[name] / max(total, 1)
            axis.add_patch(plt.Rectangle((0.05, top - height), 0.05, height, color="dimgrey"))
            axis.text(0.03, top - height / 2, f"{name} risk\n({left[name]})", ha="right", va="center")
        for name, top in right_top.items():
            height = right[name] / max(total, 1)
            if height:
                axis.add_patch(plt.Rectangle((0.9, top - height), 0.05, height, color=colours[name]))
                axis.text(0.97, top - height / 2, f"{name} ({right[name]})", ha="left", va="center")
        axis.set(xlim=(-0.25, 1.3), ylim=(-0.1, 1.02), title=f"{arm} arm: risk under {arm} → re-stratified")
        axis.axis("off")
    drawing.tight_layout()
    drawing.savefig(path, dpi=120)
    plt.close(drawing)


def high_risk_before_after(table: pd.DataFrame, folder: Path) -> dict:
    """Per arm: KM of the high-risk group with and without the patients flagged for switching."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    summary = {}
    for arm in TREATMENTS:
        high = table[(table["treatment"] == arm) & (table["group_received"] == "high")]
        kept = high[high["category"] != "switch"]
        if high.empty:
            summary[arm] = {"high_risk": 0}
            continue
        fitters = []
        with figure(folder / f"high_risk_{arm}.png", f"{arm} arm, high risk under {arm}", "months",
                    "progression-free survival") as axis:
            for name, part in ((f"all high-risk (n = {len(high)})", high),
                               (f"without flagged for switching (n = {len(kept)})", kept)):
                if part.empty:
                    continue
                fitter = KaplanMeierFitter().fit(part["pfs_months"], part["pfs_event"].astype(bool), label=name)
                fitter.plot_survival_function(ax=axis, ci_show=False)
                fitters.append(fitter)
            add_at_risk_counts(*fitters, ax=axis)
        summary[arm] = {"high_risk": int(len(high)), "flagged_for_switching": int((high["category"] == "switch").sum()),
                        "pfs_2y_all_high_risk": _km_at(high, 24), "pfs_2y_without_flagged": _km_at(kept, 24),
                        "pfs_2y_flagged": _km_at(high[high["category"] == "switch"], 24)}
    return summary


def _km_at(part: pd.DataFrame, months: float) -> float:
    from lifelines import KaplanMeierFitter

    if part.empty:
        return math.nan
    fitter = KaplanMeierFitter().fit(part["pfs_months"], part["pfs_event"].astype(bool))
    return float(fitter.survival_function_at_times(months).iloc[0])


def propensity_matching(table: pd.DataFrame, folder: Path) -> dict:
    """1:1 PSM of SR (treated) against TA; SMD before/after, the models' C-index in the matched arms."""
    covariates = [c for c in PROPENSITY_COVARIATES if c in table.columns and table[c].nunique() > 1]
    treated = (table["treatment"] == "SR").to_numpy()
    matching = match_nearest(propensity_scores(table, treated, covariates), treated)
    balance = standardized_mean_differences(table, treated, covariates, matching)
    balance.to_csv(folder / "propensity_balance.csv", index_label="covariate")
    matched = table.iloc[matching.matched]
    result = {"covariates": covariates, "pairs": int(len(matching.pairs)),
              "max_abs_smd_before": float(balance["before"].abs().max()),
              "max_abs_smd_after": float(balance["after"].abs().max()),
              "balanced": bool((balance["after"].abs() < BALANCED_SMD).all())}
    for arm in TREATMENTS:
        part = matched[matched["treatment"] == arm]
        result[f"c_index_{arm}_matched"] = _c_index(part)
    with figure(folder / "propensity_balance.png", "Standardised mean differences", "|SMD|", "") as axis:
        order = balance["before"].abs().sort_values().index
        axis.scatter(balance.loc[order, "before"].abs(), range(len(order)), label="before matching", marker="o")
        axis.scatter(balance.loc[order, "after"].abs(), range(len(order)), label="after matching", marker="s")
        axis.axvline(BALANCED_SMD, color="grey", linestyle=":")
        axis.set_yticks(range(len(order)), order)
    return result


def _c_index(part: pd.DataFrame) -> float:
    if len(part) < 10 or not part["pfs_event"].astype(bool).any():
        return math.nan
    return float(harrell_c(part["risk_received"], part["pfs_months"], part["pfs_event"].astype(bool)))


def subgroups(table: pd.DataFrame) -> pd.DataFrame:
    """Each model's Harrell's C on its own arm within the usual clinical subgroups."""
    definitions = {
        "sex": ("sex_male", lambda v: np.where(v == 1, "male", "female")),
        "age": ("age", lambda v: np.where(v <= 60, "≤ 60", "> 60")),
        "tumour size": ("tumor_size_cm", lambda v: np.where(v <= 3, "≤ 3 cm", "> 3 cm")),
        "tumour number": ("tumor_number", lambda v: np.where(v == 1, "solitary", "multiple")),
        "centre": ("center", lambda v: np.asarray(v).astype(str)),
    }
    rows = []
    for arm in TREATMENTS:
        part = table[table["treatment"] == arm]
        for name, (column, label) in definitions.items():
            if column not in part.columns:
                continue
            for level, members in part.groupby(label(part[column].to_numpy())):
                rows.append({"model": f"HEROVision-{arm}", "subgroup": name, "level": level, "patients": len(members),
                             "events": int(members["pfs_event"].sum()), "c_index": _c_index(members)})
    return pd.DataFrame(rows)


def oracle_agreement(table: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Agreement of the advice with the oracle's better treatment (phantom cohorts only), each share
    with its exact (Clopper–Pearson) 95 % interval: a few dozen flagged patients say little on their own."""
    merged = table.merge(truth[["case_id", "best_treatment"]], on="case_id", how="inner", validate="one_to_one")
    flagged = merged[merged["category"] == "switch"]
    flagged_agrees = np.where(flagged["treatment"] == "TA", "SR", "TA") == flagged["best_treatment"].to_numpy()
    result = {"patients": int(len(merged)), "flagged_for_switching": int(len(flagged)),
              "targets": {"overall_agreement": TARGETS["overall_agreement"]}}
    result.update(_share("overall_agreement", merged["better_predicted"].to_numpy() == merged["best_treatment"].to_numpy()))
    result.update(_share("flagged_agreement", flagged_agrees))
    result["targets_met"] = {name: bool(result[name] >= target) for name, target in result["targets"].items()}
    borderline = flagged.get("advice_borderline")
    stored = flagged.get("advice_category")
    if borderline is not None and borderline.notna().all() and len(flagged) and (stored == "switch").all():
        borderline = (borderline.astype(str).str.lower() == "true").to_numpy()
        for name, part in (("firm", ~borderline), ("borderline", borderline)):
            result[f"flagged_{name}"] = int(part.sum())
            result.update(_share(f"flagged_{name}_agreement", flagged_agrees[part]))
    return result


def benefit_calibration(table: pd.DataFrame, truth: pd.DataFrame, folder: Path) -> dict | None:
    """How the stored probability of benefit (``advice_p_sr_better``) meets the oracle's better
    treatment; None when the batch stored none (run it with advice)."""
    from ..stats.bootstrap import bootstrap_replicates, percentile_interval
    from ..stats.classification import calibration_slope, expected_calibration_error

    if "advice_p_sr_better" not in table.columns:
        return None
    merged = table.merge(truth[["case_id", "best_treatment"]], on="case_id", how="inner", validate="one_to_one")
    p = pd.to_numeric(merged["advice_p_sr_better"], errors="coerce").to_numpy()
    if not len(p) or np.isnan(p).any():
        return None
    sr_better = merged["best_treatment"].to_numpy() == "SR"
    planned_ta = merged["treatment"].to_numpy() == "TA"
    switch = np.where(planned_ta, p, 1 - p) >= CONFIDENT_SWITCH
    result = {"patients": int(len(p)), "confident_switches": int(switch.sum())}
    result.update(_share("probability_agreement", (p > 0.5) == sr_better))
    result.update(_share("confident_switch_agreement", np.where(planned_ta, sr_better, ~sr_better)[switch]))
    for name, statistic in (("calibration_slope", calibration_slope), ("ece", expected_calibration_error)):
        result[name] = statistic(sr_better, p)
        replicates = bootstrap_replicates(lambda y, q: statistic(y, q) if 0 < y.mean() < 1 else np.nan, sr_better, p)
        result[f"{name}_ci95"] = list(percentile_interval(replicates[np.isfinite(replicates)]))
    result["targets_met"] = {"confident_switch_agreement": bool(result["confident_switch_agreement"]
                                                                >= TARGETS["confident_switch_agreement"]),
                             "ece": bool(result["ece"] <= ECE_TARGET)}
    _plot_reliability(sr_better, p, folder / "benefit_reliability.png")
    return result


def _plot_reliability(sr_better: np.ndarray, p: np.ndarray, path: Path) -> None:
    """Observed share with SR better per tenth of P(SR better), dot size by count, against the diagonal."""
    bins = np.minimum((p * 10).astype(int), 9)
    counts = np.bincount(bins, minlength=10)
    used = counts > 0
    mean_p = np.bincount(bins, weights=p, minlength=10)[used] / counts[used]
    observed = np.bincount(bins, weights=sr_better.astype(float), minlength=10)[used] / counts[used]
    with figure(path, "Probability of benefit against the oracle", "P(resection gives the longer 2-year PFS)",
                "share for whom it does (oracle)", diagonal=True) as axis:
        axis.scatter(mean_p, observed, s=20 + 200 * counts[used] / counts.max(), color="tab:blue",
                     label="patients per tenth of P (dot size: count)")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)


def _share(name: str, agrees: np.ndarray) -> dict:
    """``name``: the share of True in ``agrees``, and ``name_ci95``: its exact binomial interval (NaN when empty)."""
    from scipy.stats import binomtest

    if not len(agrees):
        return {name: math.nan, f"{name}_ci95": [math.nan, math.nan]}
    interval = binomtest(int(agrees.sum()), len(agrees)).proportion_ci(confidence_level=0.95, method="exact")
    return {name: float(agrees.mean()), f"{name}_ci95": [float(interval.low), float(interval.high)]}


def analyse_cohort(results_csv, cohort_csv, out, truth_csv=None) -> dict:
    """Run every analysis (module docstring) and write tables, figures and ``summary.json`` to ``out``
    (staged: a failure leaves nothing half-written); returns the summary."""
    with output_folder(out, "cohort-analysis", inputs=(results_csv, cohort_csv, truth_csv)) as claimed:
        results, cohort = _read_csv(results_csv, "results.csv"), _read_csv(cohort_csv, "cohort.csv")
        return _analyse(*analysis_table(results, cohort), claimed.path, truth_csv)


def _analyse(table, basis, out: Path, truth_csv) -> dict:
    summary = {"patients": int(len(table)), "basis": basis,
               "arms": {arm: int((table["treatment"] == arm).sum()) for arm in TREATMENTS}}
    with staged_outputs(out) as stage:
        counts = restratification(table)
        counts.to_csv(stage / "restratification.csv", index=False)
        plot_sankey(counts, stage / "restratification_sankey.png")
        summary["categories"] = table.groupby("treatment")["category"].value_counts().unstack(fill_value=0).to_dict("index")
        summary["high_risk_before_after_switching"] = high_risk_before_after(table, stage)
        summary["propensity_matching"] = propensity_matching(table, stage)
        subgroup_table = subgroups(table)
        subgroup_table.to_csv(stage / "subgroups.csv", index=False)
        if truth_csv is not None:
            truth = _read_csv(truth_csv, "truth.csv")
            summary["oracle"] = oracle_agreement(table, truth)
            summary["benefit"] = benefit_calibration(table, truth, stage)
        table.to_csv(stage / "patients.csv", index=False)
        write_text_atomic(json.dumps(summary, indent=2, default=_plain, allow_nan=True), stage / "summary.json")
    return summary


def summary_lines(summary: dict) -> list[str]:
    """What ``analyse_cohort`` found, in a few lines to read at the terminal (``summary.json`` has it all)."""
    arms = summary["arms"]
    lines = [f"{summary['patients']} patients (TA {arms.get('TA', 0)}, SR {arms.get('SR', 0)}); risk groups from "
             f"the {'nomograms' if summary['basis'] == 'nomogram' else 'image risk scores'} on one 2-year PFS scale"]
    for arm, counts in summary["categories"].items():
        lines.append(f"  {arm} arm: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    for arm, high in summary["high_risk_before_after_switching"].items():
        if not high["high_risk"]:
            lines.append(f"  {arm} high risk: none")
            continue
        lines.append(f"  {arm} high risk: {high['high_risk']}, of them flagged for switching {high['flagged_for_switching']}; "
                     f"2-year PFS (KM) {_percent(high['pfs_2y_all_high_risk'])} all, "
                     f"{_percent(high['pfs_2y_without_flagged'])} without the flagged")
    matching = summary["propensity_matching"]
    lines.append(f"  propensity matching: {matching['pairs']} pairs, max |SMD| {matching['max_abs_smd_before']:.3f} → "
                 f"{matching['max_abs_smd_after']:.3f} ({'balanced' if matching['balanced'] else 'NOT balanced'})")
    oracle = summary.get("oracle")
    if oracle:
        for name, patients in (("overall_agreement", oracle["patients"]), ("flagged_agreement", oracle["flagged_for_switching"]),
                               ("flagged_firm_agreement", oracle.get("flagged_firm")),
                               ("flagged_borderline_agreement", oracle.get("flagged_borderline"))):
            if name not in oracle:
                continue
            low, high = oracle[f"{name}_ci95"]
            target = TARGETS.get(name)
            verdict = "" if target is None else \
                f"; target ≥ {_percent(target)} {'met' if oracle['targets_met'][name] else 'NOT met'}"
            lines.append(f"  oracle, {name.replace('_', ' ')}: {_percent(oracle[name])} of {patients} "
                         f"(95 % {_percent(low)}–{_percent(high)}{verdict})")
    benefit = summary.get("benefit")
    if benefit:
        low, high = benefit["probability_agreement_ci95"]
        lines.append(f"  probability of benefit: the more probable treatment is the oracle's for "
                     f"{_percent(benefit['probability_agreement'])} of {benefit['patients']} (95 % {_percent(low)}–"
                     f"{_percent(high)}; target ≥ {_percent(TARGETS['overall_agreement'])})")
        low, high = benefit["confident_switch_agreement_ci95"]
        met = "met" if benefit["targets_met"]["confident_switch_agreement"] else "NOT met"
        lines.append(f"  switches with P(other better) ≥ {CONFIDENT_SWITCH}: {benefit['confident_switches']}, the oracle "
                     f"agrees for {_percent(benefit['confident_switch_agreement'])} (95 % {_percent(low)}–{_percent(high)}; "
                     f"target ≥ {_percent(TARGETS['confident_switch_agreement'])} {met})")
        (slope_low, slope_high), (ece_low, ece_high) = benefit["calibration_slope_ci95"], benefit["ece_ci95"]
        met = "met" if benefit["targets_met"]["ece"] else "NOT met"
        lines.append(f"  calibration of P(SR better): slope {benefit['calibration_slope']:.2f} (95 % {slope_low:.2f}–"
                     f"{slope_high:.2f}), ECE {benefit['ece']:.3f} (95 % {ece_low:.3f}–{ece_high:.3f}; target ≤ "
                     f"{ECE_TARGET} {met})")
    return lines


def _percent(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.0f} %"


def _plain(value):
    return float(value) if isinstance(value, (np.floating, np.integer)) else str(value)


def _read_csv(path, name_in_folder: str) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / name_in_folder
    if not path.is_file():
        raise InputError(path, "file not found")
    return read_case_table(path)
