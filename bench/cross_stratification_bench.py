"""How often cross-stratification's "switch" agrees with the phantom's oracle, by how risk groups are cut.

Phantom patients are drawn without images (PHANTOM.md §1–2, fast); per repetition a training cohort
(600 patients by default, as the bundled models had) fits one nomogram per treatment arm (the
packages' path: univariate screen, backward AIC, Breslow baseline, Tsiatis standard errors) and an
evaluation cohort of 4000 is scored under both.
Three rules for "switch":

- ``own cutoffs``: each arm's model cut at its own maximally selected log-rank cutoff (as the paper);
- ``common``: both models' predicted 2-year PFS against one threshold, their own cutoffs read as
  2-year PFS and averaged by arm size (what :mod:`HEROVisionLib.clinical.treatment` does);
- ``common, firm``: of those, the ones whose advice keeps its category in at least ``STABLE_SHARE`` of
  draws within both nomograms' estimation error (the advice's firmness without image perturbation).

Five models per arm: the oracle's own linear predictor (refitted: the best any model can do), the
phantom's own covariates in the hazard's true form (PHANTOM.md §2: every coefficient estimated, as a
model that knew each latent exactly would have to; how far the training size alone lets any per-arm
model go), the clinical record, the clinical record with a simulated image score (the arm's linear predictor plus
independent noise, correlation ``--rho``), and the clinical record with the tumour's IVIM D and f as the
pipeline measures them (the latents plus the measurement error seen on the phantom test cohort,
r = 0.986 for both). Prints the share flagged for switching and the share of those
the oracle agrees with (mean ± SD over repetitions), and the ratio of each rule's agreement to the own
cutoffs'.

With ``--benefit`` it compares instead the two ways of estimating the probability of benefit from the
clinical record and the image scores: the per-arm nomograms (the paper's; P(SR better) from both
models' estimation error, as the advice draws it) and the joint model of both arms
(:mod:`HEROVisionLib.stats.joint_model`: shared terms, ridge-shrunk treatment interactions, both arms'
image scores). Printed per method: overall agreement of the more probable treatment with the oracle's
better one, the share of patients whose planned (received) treatment P(other better) ≥ 0.8 flags for
switching and those switches' agreement, the calibration slope and the expected calibration error of
P(SR better) against the oracle — mean ± SD over repetitions.

    python bench/cross_stratification_bench.py [--repetitions 6] [--rho 0.65] [--training-size 600]
    python bench/cross_stratification_bench.py --benefit [--repetitions 6] [--training-size 2400]
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import pandas as pd

from HEROVisionLib.phantom.generate import draw_case_variables
from HEROVisionLib.phantom.latents import z
from HEROVisionLib.stats.cutpoint import optimal_cutpoint
from HEROVisionLib.stats.classification import calibration_slope, expected_calibration_error
from HEROVisionLib.stats.joint_model import fit_joint_model
from HEROVisionLib.stats.nomogram_fit import build_nomogram, select_cox_model
from HEROVisionLib.train.survival_training import NOMOGRAM_CANDIDATES
from HEROVisionLib.clinical.treatment import STABLE_SHARE

ARMS = ("TA", "SR")


def draw_cohort(seed: int, n: int) -> pd.DataFrame:
    rows = []
    for index in range(1, n + 1):
        _, patient, outcome = draw_case_variables(seed, index)
        rows.append({**patient.as_dict(), "tumor_size_cm": round(patient.diameter_cm, 1), "treatment": outcome.treatment,
                     "pfs_months": outcome.pfs_months, "pfs_event": outcome.pfs_event, "lp_TA": outcome.lp_TA,
                     "lp_SR": outcome.lp_SR, "best_treatment": outcome.best_treatment})
    return pd.DataFrame(rows)


#: SD of the pipeline's tumour IVIM median minus the phantom latent (test cohort of 300, seed 202).
IVIM_ERROR = {"D": 2.2e-5, "f": 0.0076}


#: PHANTOM.md §2: the covariates of the common hazard and of each arm's own terms.
TRUE_FORM_COMMON = ("zsize", "margin", "heterogeneity", "zD", "washout", "afp_high", "inr_high", "ca19_9_high",
                    "extra_tumours")
TRUE_FORM_OWN = {"TA": ("size_over_3cm", "perivascular"), "SR": ("portal_hypertension", "ctp_b", "cirrhosis")}


def add_true_form_terms(cohort: pd.DataFrame) -> None:
    cohort["zsize"] = z(cohort["diameter_cm"], 2.3, 0.9)
    cohort["zD"] = z(cohort["tumor_D"], 1.0e-3, 0.15e-3)
    cohort["size_over_3cm"] = np.maximum(0.0, cohort["diameter_cm"] - 3.0)
    cohort["extra_tumours"] = cohort["tumor_number"] - 1


def add_image_scores(cohort: pd.DataFrame, rho: float, rng) -> None:
    for name, error in IVIM_ERROR.items():
        cohort[f"ivim_{name}_median"] = cohort[f"tumor_{name}"] + rng.normal(0.0, error, len(cohort))
    for arm in ARMS:
        lp = cohort[f"lp_{arm}"]
        cohort[f"score_{arm}"] = lp + rng.normal(0.0, lp.std() * math.sqrt(1 / rho**2 - 1), len(cohort))


def covariates(model: str, arm: str) -> list[str]:
    return {"oracle": [f"lp_{arm}"], "true form": [*TRUE_FORM_COMMON, *TRUE_FORM_OWN[arm]],
            "clinical": list(NOMOGRAM_CANDIDATES),
            "clinical + image score": [*NOMOGRAM_CANDIDATES, f"score_{arm}"],
            "clinical + IVIM D, f": [*NOMOGRAM_CANDIDATES, "ivim_D_median", "ivim_f_median"]}[model]


def switch_flags(evaluation: pd.DataFrame, high: dict) -> np.ndarray:
    """High risk under the received (planned) treatment, low under the other: patients × draws."""
    planned_ta = (evaluation["treatment"].to_numpy() == "TA")[:, None]
    return np.where(planned_ta, high["TA"] & ~high["SR"], high["SR"] & ~high["TA"])


def flagged_agreement(evaluation: pd.DataFrame, flagged: np.ndarray) -> tuple[float, float]:
    other = np.where(evaluation["treatment"] == "TA", "SR", "TA")
    agreement = (evaluation["best_treatment"].to_numpy() == other)[flagged].mean() if flagged.any() else math.nan
    return flagged.mean(), agreement


def one_repetition(training: pd.DataFrame, evaluation: pd.DataFrame, model: str, rng, draws: int = 200) -> dict:
    high_own, log_hazard, spread, cutoff_pfs, sizes = {}, {}, {}, {}, {}
    for arm in ARMS:
        patients = training[training["treatment"] == arm]
        cox = select_cox_model(patients, "pfs_months", "pfs_event", covariates(model, arm))
        nomogram = build_nomogram(cox, patients, "pfs_months", "pfs_event", horizons=(24,))
        training_lp = nomogram.linear_predictor(nomogram.points(patients)["total"])
        cutoff = optimal_cutpoint(training_lp, patients["pfs_months"].to_numpy(),
                                  patients["pfs_event"].to_numpy().astype(bool)).value
        lp = nomogram.linear_predictor(nomogram.points(evaluation)["total"])
        high_own[arm] = (lp > cutoff)[:, None]
        log_hazard[arm] = np.log(nomogram.baseline_cumulative_hazard[0]) + lp
        spread[arm] = nomogram.log_hazard_se(evaluation)[:, 0]
        cutoff_pfs[arm] = math.exp(-nomogram.baseline_cumulative_hazard[0] * math.exp(cutoff))
        sizes[arm] = len(patients)
    threshold = sum(cutoff_pfs[a] * sizes[a] for a in ARMS) / sum(sizes.values())
    common = switch_flags(evaluation, {a: np.exp(-np.exp(log_hazard[a]))[:, None] < threshold for a in ARMS})
    drawn = {a: np.exp(-np.exp(log_hazard[a][:, None] + spread[a][:, None] * rng.standard_normal((len(evaluation), draws))))
             < threshold for a in ARMS}
    firm = common[:, 0] & (switch_flags(evaluation, drawn).mean(axis=1) >= STABLE_SHARE)
    return {"own cutoffs": flagged_agreement(evaluation, switch_flags(evaluation, high_own)[:, 0]),
            "common": flagged_agreement(evaluation, common[:, 0]),
            "common, firm": flagged_agreement(evaluation, firm)}


#: P(the treatment not received is better) from which a switch is advised in the benefit comparison.
CONFIDENT = 0.8


def p_sr_better_per_arm(training: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
    """Φ(Δ/se) of the two per-arm nomograms (clinical record + the arm's image score), as packaged."""
    from scipy.stats import norm

    log_hazard, spread = {}, {}
    for arm in ARMS:
        patients = training[training["treatment"] == arm]
        cox = select_cox_model(patients, "pfs_months", "pfs_event", covariates("clinical + image score", arm))
        nomogram = build_nomogram(cox, patients, "pfs_months", "pfs_event", horizons=(24,))
        log_hazard[arm] = np.log(nomogram.baseline_cumulative_hazard[0]) + nomogram.linear_predictor(
            nomogram.points(evaluation)["total"])
        spread[arm] = nomogram.log_hazard_se(evaluation)[:, 0]
    return norm.cdf((log_hazard["TA"] - log_hazard["SR"]) / np.hypot(spread["TA"], spread["SR"]))


def p_sr_better_joint(training: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
    joint = fit_joint_model(training, "pfs_months", "pfs_event", "treatment", NOMOGRAM_CANDIDATES,
                            {"image score": {arm: f"score_{arm}" for arm in ARMS}}, horizons=(24.0,))
    return joint.p_sr_better(evaluation)


def benefit_metrics(evaluation: pd.DataFrame, p_sr: np.ndarray) -> dict:
    truth = evaluation["best_treatment"].to_numpy() == "SR"
    planned_ta = evaluation["treatment"].to_numpy() == "TA"
    p_other = np.where(planned_ta, p_sr, 1 - p_sr)
    switch = p_other >= CONFIDENT
    other_better = np.where(planned_ta, truth, ~truth)
    return {"agreement": float(np.mean((p_sr > 0.5) == truth)), "switches": float(switch.mean()),
            "switch agreement": float(other_better[switch].mean()) if switch.any() else math.nan,
            "slope": calibration_slope(truth, p_sr), "ECE": expected_calibration_error(truth, p_sr)}


def benefit_main(args) -> None:
    rng = np.random.default_rng(1)
    evaluation = draw_cohort(999, 4000)
    add_image_scores(evaluation, args.rho, rng)
    methods = {"per-arm nomograms": p_sr_better_per_arm, "joint model": p_sr_better_joint}
    results = {name: [] for name in methods}
    for repetition in range(args.repetitions):
        training = draw_cohort(1000 + repetition, args.training_size)
        add_image_scores(training, args.rho, rng)
        for name, method in methods.items():
            results[name].append(benefit_metrics(evaluation, method(training, evaluation)))
    print(f"{args.repetitions} training cohorts of {args.training_size}, evaluation cohort of 4000 (image score "
          f"correlation {args.rho}); P(SR better) against the oracle; switch: P(other than received) ≥ {CONFIDENT}")
    for name, rows in results.items():
        table = pd.DataFrame(rows)
        cells = [f"{column} {table[column].mean():.3f} ± {table[column].std():.3f}" for column in table.columns]
        print(f"{name:18s} " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--rho", type=float, default=0.65, help="correlation of the simulated image score with the truth")
    parser.add_argument("--training-size", type=int, default=600, help="patients per training cohort (both arms)")
    parser.add_argument("--benefit", action="store_true", help="compare per-arm nomograms and the joint model instead")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # lifelines' convergence chatter on small arms
    if args.benefit:
        benefit_main(args)
        return
    rng = np.random.default_rng(1)
    evaluation = draw_cohort(999, 4000)
    add_image_scores(evaluation, args.rho, rng)
    add_true_form_terms(evaluation)
    models = ("oracle", "true form", "clinical", "clinical + image score", "clinical + IVIM D, f")
    results = {model: {"own cutoffs": [], "common": [], "common, firm": []} for model in models}
    for repetition in range(args.repetitions):
        training = draw_cohort(1000 + repetition, args.training_size)
        add_image_scores(training, args.rho, rng)
        add_true_form_terms(training)
        for model in models:
            for rule, value in one_repetition(training, evaluation, model, rng).items():
                results[model][rule].append(value)
    print(f"{args.repetitions} training cohorts of {args.training_size}, evaluation cohort of 4000; flagged share, oracle agreement")
    for model in models:
        cells = []
        means = {}
        for rule, values in results[model].items():
            values = np.asarray(values, dtype=float)
            means[rule] = np.nanmean(values[:, 1])
            cells.append(f"{rule}: {values[:, 0].mean():5.1%} flagged, agreement {means[rule]:5.1%} "
                         f"± {np.nanstd(values[:, 1]):4.1%}")
        ratios = ", ".join(f"×{means[rule] / means['own cutoffs']:.2f}" for rule in ("common", "common, firm"))
        print(f"{model:24s} " + " | ".join(cells) + f" | {ratios}")


if __name__ == "__main__":
    main()
