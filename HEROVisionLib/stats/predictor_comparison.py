"""Prognostic predictors compared on one cohort, as HCC papers compare a model with the staging
systems (the HEROVision paper's Table 2 and Fig. 4).

Each predictor is read on the patients it can score (a staging system may lack an input for some);
its difference to the reference predictor is measured on exactly those patients. Per predictor:

* the Harrell C truncated at ``tau`` (2 years: pairs whose first event is later are not compared;
  R's ``concordance(ymax = tau)``) with a bootstrap 95 % percentile interval;
* the paired difference in that C to the reference, with the paired bootstrap P (both predictors
  on the same resampled patients; two-sided percentile test, :func:`.bootstrap.paired_bootstrap_p`);
* the cumulative/dynamic time-dependent AUC at each horizon with bootstrap intervals;
* the AUC of progression by ``tau`` (patients censored before it left out) with DeLong's interval
  and DeLong's paired test against the reference (pROC's ``roc.test``).

A predictor that takes one value on the cohort (a staging system in a cohort within the Milan
criteria can) has no ranking to measure: it is reported as constant, with no metric — never as
C = 0.5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import HEROVisionError
from .bootstrap import bootstrap_replicates, paired_bootstrap_p, percentile_interval
from .classification import auc_with_delong_ci, delong_test
from .survival import harrell_c, time_dependent_auc

TRUNCATION_MONTHS = 24.0
HORIZONS_MONTHS = (12.0, 24.0, 36.0)


def _or_nan(function, *arguments):
    try:
        return function(*arguments)
    except (HEROVisionError, ValueError, ZeroDivisionError):
        return np.nan


def _auc_at(values, time, event, horizons) -> np.ndarray:
    """The time-dependent AUC at each horizon; NaN where a horizon lies outside the follow-up."""
    aucs = np.full(len(horizons), np.nan)
    usable = [k for k, horizon in enumerate(horizons) if time.min() < horizon < time.max()]
    if usable:
        aucs[usable] = _or_nan(lambda: time_dependent_auc(values, time, event, [horizons[k] for k in usable])[0])
    return aucs


def compare_predictors(predictors: dict[str, np.ndarray], reference: str, time, event, *,
                       tau: float = TRUNCATION_MONTHS, horizons=HORIZONS_MONTHS, n_boot: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """One row per predictor (higher value = higher risk; NaN where it cannot score a patient), the
    reference included; columns described in the module docstring."""
    time, event = np.asarray(time, dtype=np.float64), np.asarray(event).astype(bool)
    base = np.asarray(predictors[reference], dtype=np.float64)
    rows = []
    for name, values in predictors.items():
        values = np.asarray(values, dtype=np.float64)
        scored = np.isfinite(values) & np.isfinite(base)
        rows.append({"predictor": name, **_measures(values[scored], base[scored], time[scored], event[scored],
                                                   name == reference, tau, horizons, n_boot, seed)})
    return pd.DataFrame(rows)


def _measures(values, base, time, event, is_reference, tau, horizons, n_boot, seed) -> dict:
    row = {"patients": len(values), "events_by_tau": int((event & (time <= tau)).sum()),
           "constant": bool(len(values) and np.ptp(values) == 0), "note": ""}
    if not len(values) or row["constant"] or not row["events_by_tau"]:
        row["note"] = ("scores no patient" if not len(values) else
                       "constant on this cohort: no ranking to measure" if row["constant"] else
                       f"no progression by {tau:g} months")
        return row
    def statistic(v, b, t, e):
        return np.concatenate([[_or_nan(harrell_c, v, t, e, tau), _or_nan(harrell_c, b, t, e, tau)],
                               _auc_at(v, t, e, horizons)])

    replicates = bootstrap_replicates(statistic, values, base, time, event, n_boot=n_boot, seed=seed)
    estimate = statistic(values, base, time, event)
    row["c_index"] = estimate[0]
    if not np.isfinite(estimate[0]):
        row["note"] = f"no comparable pair before {tau:g} months"
    row["c_index_lower"], row["c_index_upper"] = percentile_interval(replicates[:, 0])
    if not is_reference:
        row["c_difference"] = estimate[0] - estimate[1]
        row["c_difference_p"] = paired_bootstrap_p(replicates[:, 0] - replicates[:, 1])
    for k, horizon in enumerate(horizons):
        row[f"auc_{horizon:g}m"] = estimate[2 + k]
        row[f"auc_{horizon:g}m_lower"], row[f"auc_{horizon:g}m_upper"] = (
            percentile_interval(replicates[:, 2 + k]) if np.isfinite(replicates[:, 2 + k]).any() else (np.nan, np.nan))
    known = (event & (time <= tau)) | (time > tau)  # progression status at tau is known
    progressed = (event & (time <= tau))[known].astype(int)
    if min(progressed.sum(), len(progressed) - progressed.sum()) >= 2:  # what DeLong's variance needs
        interval = auc_with_delong_ci(progressed, values[known])
        row.update({f"auc_{tau:g}m_binary": interval.auc, f"auc_{tau:g}m_binary_lower": interval.lower,
                    f"auc_{tau:g}m_binary_upper": interval.upper})
        if not is_reference:
            row["auc_delong_p"] = delong_test(progressed, values[known], base[known]).p
    return row
