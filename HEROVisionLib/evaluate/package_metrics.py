"""``herovision evaluate``: a model package's performance on a cohort, reported the way the papers
do, with confidence intervals and the plots a clinician recognises.

Survival packages (on the cohort's patients treated that way): Harrell's C with a bootstrap 95 %
CI, time-dependent AUC at 12/24/36 months, Kaplan–Meier curves of the package's high/low risk
groups with numbers at risk, log-rank test and hazard ratio, calibration and decision curve at
24 months. The early-recurrence package: ROC AUC with DeLong CI for the deep and combined models,
DeLong test between them, calibration with Hosmer–Lemeshow, decision curves, ROC curves.

With ``compare``, a survival package is also set against its nomogram, the clinical model and the
six staging systems (:mod:`.comparison`).

On a phantom cohort (``truth.csv`` present — only evaluation ever reads it) the oracle's metric on
the same cases is reported beside the model's: the C-index of the true linear predictor, and the
AUC of the true resection linear predictor for early recurrence (a monotone function of the true
recurrence probability). ``record`` writes the test metrics into the package's metadata and model
card (the package is re-signed; its weights are untouched).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..devices import resolve_device
from ..errors import InputError
from ..io.case import Cohort, read_case_table
from ..io.images import staged_outputs, write_text_atomic
from ..io.output_folder import output_folder
from ..models.ivim_net import ensemble_probabilities, heads_of, networks_of
from ..models.package import ModelPackage, load_package, save_package
from ..plots import figure as _figure
from ..models.model_set import HORIZONS_MONTHS, survival_probability
from ..stats import (auc_with_delong_ci, bootstrap_ci, calibration, compare_risk_groups, delong_test, harrell_c,
                     hosmer_lemeshow, net_benefit, survival_net_benefit, time_dependent_auc)
from ..train.data import prepare
from ..train.early_recurrence import fused_features
from ..train.survival_training import risk_scores
from .comparison import compare_package

THRESHOLDS = np.round(np.arange(0.05, 0.81, 0.05), 2)
DECISION_HORIZON_MONTHS = 24


def _truth(cohort: Cohort, case_ids: list[str]) -> pd.DataFrame | None:
    path = cohort.folder / "truth.csv"
    if not path.is_file():
        return None
    truth = read_case_table(path).set_index("case_id")
    return truth.loc[case_ids]


def evaluate_package(package_path, cohort_folder, out, *, device="auto", n_boot: int = 1000, seed: int = 0,
                     workers: int | None = None, progress: bool = True, record: bool = False, compare: bool = False,
                     command: str = "") -> dict:
    """Metrics (also written to ``out``: metrics.json, metrics.csv, PNG plots); ``record`` stores them,
    with ``command``, in the package; ``compare`` adds the comparison with the staging systems and
    the clinical models (:mod:`.comparison`)."""
    device = resolve_device(device)
    with output_folder(out, "evaluate", inputs=(package_path, cohort_folder)) as claimed:
        package = load_package(package_path, device)
        if compare and package.herovision["kind"] != "survival":
            raise InputError("--compare", f"compares survival packages; {package.name} predicts early recurrence")
        metrics = _evaluate(package, Cohort(cohort_folder), claimed.path, device, n_boot, seed, workers, progress,
                            compare)
    if record:
        _record(package, metrics, command)
    return metrics


def _evaluate(package: ModelPackage, cohort, out: Path, device, n_boot, seed, workers, progress, compare) -> dict:
    kind = package.herovision["kind"]
    with staged_outputs(out) as stage:
        if kind == "survival":
            metrics = _evaluate_survival(package, cohort, stage, device, n_boot, seed, workers, progress, compare)
        elif kind == "early_recurrence":
            metrics = _evaluate_early_recurrence(package, cohort, stage, device, workers, progress)
        else:
            raise InputError(package.path, f"cannot evaluate a package of kind {kind!r}")
        metrics = {"package": f"{package.name} {package.version}", "cohort": cohort.folder.name, **metrics}
        write_text_atomic(json.dumps(metrics, indent=2, default=float) + "\n", stage / "metrics.json")
        tabled = {k: v for k, v in metrics.items() if k != "comparison"}  # comparison.csv holds that table
        flat = pd.json_normalize(tabled, sep=".").T.reset_index()
        flat.columns = ["metric", "value"]
        write_text_atomic(flat.to_csv(index=False), stage / "metrics.csv")
    return metrics


def _evaluate_survival(package: ModelPackage, cohort, stage, device, n_boot, seed, workers, progress,
                       compare) -> dict:
    block = package.herovision
    task = f"pfs-{block['treatment'].lower()}"
    data = prepare(cohort, task, block["preprocessing"], workers=workers, progress=progress)
    scores = risk_scores(package.network, data, device)
    time_, event = data.labels["time"].numpy(), data.labels["event"].numpy().astype(bool)
    c_index = bootstrap_ci(harrell_c, scores, time_, event, n_boot=n_boot, seed=seed)
    horizons = [h for h in HORIZONS_MONTHS if time_.min() < h < time_.max()]
    auc, _ = time_dependent_auc(scores, time_, event, horizons) if horizons else ([], None)
    high = scores > block["risk_cutoff"]
    metrics = {"task": task, "cases": len(data), "events": int(event.sum()),
               "c_index": {"estimate": c_index.estimate, "ci95": [c_index.lower, c_index.upper]},
               "time_dependent_auc": {str(h): float(a) for h, a in zip(horizons, auc)},
               "high_risk_cases": int(high.sum())}
    if 0 < high.sum() < len(high):
        groups = compare_risk_groups(time_, event, high)
        metrics["risk_groups"] = {"logrank_p": groups.logrank_p, "hazard_ratio": groups.hazard_ratio,
                                  "hazard_ratio_ci95": list(groups.hazard_ratio_ci)}
        _plot_kaplan_meier(groups, stage / "kaplan_meier.png", package.name)
    hazard = float(block["baseline_cumulative_hazard"][str(DECISION_HORIZON_MONTHS)])
    progression = 1 - survival_probability(scores, [hazard])[:, 0]
    curve = survival_net_benefit(progression, time_, event, DECISION_HORIZON_MONTHS, THRESHOLDS)
    _plot_decision_curve(curve, stage / "decision_curve.png", f"{package.name}, progression by {DECISION_HORIZON_MONTHS} months")
    if horizons:
        _plot_series(horizons, auc, "months", "time-dependent AUC", stage / "time_dependent_auc.png", package.name)
    truth = _truth(cohort, data.case_ids)
    if truth is not None:
        oracle = harrell_c(truth[f"lp_{block['treatment']}"].to_numpy(), time_, event)
        metrics["oracle_c_index"] = oracle
        metrics["c_index_over_oracle"] = c_index.estimate / oracle
    if compare:
        metrics["comparison"] = compare_package(package, data.clinical, scores, time_, event, stage, n_boot=n_boot,
                                                seed=seed)
    return metrics


def _evaluate_early_recurrence(package: ModelPackage, cohort, stage, device, workers, progress) -> dict:
    block = package.herovision
    data = prepare(cohort, "er", block["preprocessing"], workers=workers, progress=progress)
    features = [torch.as_tensor(fused_features(network, data, device)) for network in networks_of(package.network)]
    deep, combined = (p.numpy() for p in ensemble_probabilities(heads_of(block["early_recurrence"]), features,
                                                                data.labels["tumor_size_cm"], data.labels["tumor_D"]))
    outcome = data.labels["er"].numpy().astype(int)
    metrics = {"task": "er", "cases": len(data), "early_recurrences": int(outcome.sum())}
    for name, probability in (("deep", deep), ("combined", combined)):
        interval = auc_with_delong_ci(outcome, probability)
        fit = hosmer_lemeshow(outcome, probability)
        metrics[name] = {"auc": interval.auc, "auc_ci95": [interval.lower, interval.upper],
                         "hosmer_lemeshow": {"statistic": fit.statistic, "df": fit.df, "p": fit.p}}
    test = delong_test(outcome, combined, deep)
    metrics["combined_vs_deep"] = {"difference": test.difference, "p": test.p}
    _plot_roc(outcome, {"deep": deep, "combined": combined}, stage / "roc.png")
    _plot_calibration(outcome, {"deep": deep, "combined": combined}, stage / "calibration.png")
    _plot_decision_curve(net_benefit(outcome, combined, THRESHOLDS), stage / "decision_curve.png",
                         "IVIM-ER combined model, early recurrence")
    truth = _truth(cohort, data.case_ids)
    if truth is not None:
        oracle = auc_with_delong_ci(outcome, truth["lp_SR"].to_numpy()).auc
        metrics["oracle_auc"] = oracle
        metrics["auc_over_oracle"] = metrics["deep"]["auc"] / oracle
        metrics["combined_auc_over_oracle"] = metrics["combined"]["auc"] / oracle
    return metrics


def _record(package: ModelPackage, metrics: dict, command: str) -> None:
    metadata = json.loads(json.dumps(package.metadata))
    metadata["herovision"].setdefault("metrics", {})["test"] = {**metrics, "command": command}
    save_package(ModelPackage(package.network.cpu(), metadata), package.path)


def _plot_kaplan_meier(groups, path: Path, title: str) -> None:
    from lifelines.plotting import add_at_risk_counts

    title = f"{title}: log-rank p = {groups.logrank_p:.3g}, HR {groups.hazard_ratio:.2f}"
    with _figure(path, title, "months", "progression-free survival") as axis:
        for name in ("low", "high"):
            groups.kaplan_meier[name].plot_survival_function(ax=axis, ci_show=True)
        add_at_risk_counts(*(groups.kaplan_meier[name] for name in ("low", "high")), ax=axis)


def _plot_series(x, y, x_label, y_label, path: Path, title: str) -> None:
    with _figure(path, title, x_label, y_label) as axis:
        axis.plot(x, y, marker="o")
        axis.set_ylim(0.4, 1.0)


def _plot_decision_curve(curve: pd.DataFrame, path: Path, title: str) -> None:
    with _figure(path, title, "threshold probability", "net benefit") as axis:
        axis.plot(curve["threshold"], curve["model"], label="model")
        axis.plot(curve["threshold"], curve["treat_all"], label="treat all", linestyle="--")
        axis.axhline(0, color="grey", linewidth=0.8, label="treat none")
        axis.set_ylim(bottom=min(-0.05, float(curve["model"].min())))


def _plot_roc(outcome, probabilities: dict, path: Path) -> None:
    from sklearn.metrics import roc_curve

    with _figure(path, "Early recurrence: ROC", "1 − specificity", "sensitivity", diagonal=True) as axis:
        for name, probability in probabilities.items():
            false_positive, true_positive, _ = roc_curve(outcome, probability)
            auc = auc_with_delong_ci(outcome, probability).auc
            axis.plot(false_positive, true_positive, label=f"{name} (AUC {auc:.3f})")


def _plot_calibration(outcome, probabilities: dict, path: Path) -> None:
    title = "Early recurrence: calibration"
    with _figure(path, title, "predicted probability", "observed frequency", diagonal=True) as axis:
        for name, probability in probabilities.items():
            observed, predicted = calibration(outcome, probability)
            axis.plot(predicted, observed, marker="o", label=name)
