"""How often cross-stratification's "switch" agrees with the phantom's oracle, by how risk groups are cut.

Phantom patients are drawn without images (PHANTOM.md §1–2, fast); per repetition a 600-patient
training cohort fits one Cox model per treatment arm and an evaluation cohort of 4000 is scored under
both. Two rules for "high risk":

- ``own cutoffs``: each arm's model cut at its own maximally selected log-rank cutoff (as the paper);
- ``common threshold``: both models' predicted 2-year PFS against one threshold, their own cutoffs read
  as 2-year PFS and averaged by arm size (what :mod:`HEROVisionLib.treatment` does).

Three models per arm: the oracle's own linear predictor (refitted: the best any model can do), the
clinical record (univariate screen + backward AIC, as the nomograms), and the clinical record with a
simulated image score (the arm's linear predictor plus independent noise, correlation ``--rho``).
Prints the share flagged for switching and the share of those the oracle agrees with (mean ± SD over
repetitions), and the ratio of the common threshold's agreement to the own cutoffs'.

    python bench/cross_stratification_bench.py [--repetitions 6] [--rho 0.65]
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter

from HEROVisionLib.phantom.generate import draw_case_variables
from HEROVisionLib.stats.cutpoint import optimal_cutpoint
from HEROVisionLib.stats.nomogram import select_cox_model
from HEROVisionLib.train.survival import NOMOGRAM_CANDIDATES

ARMS = ("TA", "SR")


def draw_cohort(seed: int, n: int) -> pd.DataFrame:
    rows = []
    for index in range(1, n + 1):
        _, patient, outcome = draw_case_variables(seed, index)
        rows.append({**patient.as_dict(), "tumor_size_cm": round(patient.diameter_cm, 1), "treatment": outcome.treatment,
                     "pfs_months": outcome.pfs_months, "pfs_event": outcome.pfs_event, "lp_TA": outcome.lp_TA,
                     "lp_SR": outcome.lp_SR, "best_treatment": outcome.best_treatment})
    return pd.DataFrame(rows)


def add_image_scores(cohort: pd.DataFrame, rho: float, rng) -> None:
    for arm in ARMS:
        lp = cohort[f"lp_{arm}"]
        cohort[f"score_{arm}"] = lp + rng.normal(0.0, lp.std() * math.sqrt(1 / rho**2 - 1), len(cohort))


def covariates(model: str, arm: str) -> list[str]:
    return {"oracle": [f"lp_{arm}"], "clinical": list(NOMOGRAM_CANDIDATES),
            "clinical + image score": [*NOMOGRAM_CANDIDATES, f"score_{arm}"]}[model]


def flagged_agreement(evaluation: pd.DataFrame, high: dict) -> tuple[float, float]:
    planned = evaluation["treatment"].to_numpy()
    high_planned = np.where(planned == "TA", high["TA"], high["SR"])
    high_other = np.where(planned == "TA", high["SR"], high["TA"])
    flagged = high_planned & ~high_other
    other = np.where(planned == "TA", "SR", "TA")
    agreement = (evaluation["best_treatment"].to_numpy() == other)[flagged].mean() if flagged.any() else math.nan
    return flagged.mean(), agreement


def one_repetition(training: pd.DataFrame, evaluation: pd.DataFrame, model: str) -> dict:
    high_own, pfs_2y, cutoff_pfs, sizes = {}, {}, {}, {}
    for arm in ARMS:
        patients = training[training["treatment"] == arm]
        names = covariates(model, arm)
        if model != "oracle":
            names = list(select_cox_model(patients, "pfs_months", "pfs_event", names).covariates)
        fit = CoxPHFitter().fit(patients[[*names, "pfs_months", "pfs_event"]], "pfs_months", "pfs_event")
        cutoff = optimal_cutpoint(fit.predict_log_partial_hazard(patients[names]).to_numpy(),
                                  patients["pfs_months"].to_numpy(), patients["pfs_event"].to_numpy().astype(bool)).value
        high_own[arm] = fit.predict_log_partial_hazard(evaluation[names]).to_numpy() > cutoff
        pfs_2y[arm] = fit.predict_survival_function(evaluation[names], times=[24]).T[24].to_numpy()
        at_cutoff = np.exp(-fit.baseline_cumulative_hazard_.loc[:24].iloc[-1, 0] * np.exp(cutoff))
        cutoff_pfs[arm], sizes[arm] = at_cutoff, len(patients)
    threshold = sum(cutoff_pfs[a] * sizes[a] for a in ARMS) / sum(sizes.values())
    return {"own cutoffs": flagged_agreement(evaluation, high_own),
            "common threshold": flagged_agreement(evaluation, {a: pfs_2y[a] < threshold for a in ARMS})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--rho", type=float, default=0.65, help="correlation of the simulated image score with the truth")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # lifelines' convergence chatter on small arms
    rng = np.random.default_rng(1)
    evaluation = draw_cohort(999, 4000)
    add_image_scores(evaluation, args.rho, rng)
    models = ("oracle", "clinical", "clinical + image score")
    results = {model: {"own cutoffs": [], "common threshold": []} for model in models}
    for repetition in range(args.repetitions):
        training = draw_cohort(1000 + repetition, 600)
        add_image_scores(training, args.rho, rng)
        for model in models:
            for rule, value in one_repetition(training, evaluation, model).items():
                results[model][rule].append(value)
    print(f"{args.repetitions} training cohorts of 600, evaluation cohort of 4000; flagged share, oracle agreement")
    for model in models:
        cells = []
        means = {}
        for rule, values in results[model].items():
            values = np.asarray(values, dtype=float)
            means[rule] = np.nanmean(values[:, 1])
            cells.append(f"{rule}: {values[:, 0].mean():5.1%} flagged, agreement {means[rule]:5.1%} "
                         f"± {np.nanstd(values[:, 1]):4.1%}")
        ratio = means["common threshold"] / means["own cutoffs"]
        print(f"{model:24s} " + " | ".join(cells) + f" | ×{ratio:.2f}")


if __name__ == "__main__":
    main()
