"""How well a risk score orders and separates survival: concordance, time-dependent AUC, risk groups,
and the Breslow baseline that turns a score into a progression-free-survival probability.

Convention everywhere: a higher risk score means a higher hazard, i.e. shorter survival. The
metrics come from lifelines and scikit-survival; only the Breslow baseline is written here, because
the libraries tie it to their own fitted models while the network's scores come from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc
from sksurv.util import Surv

from ..errors import InputError
from .checks import binary_vector, finite_vector, require_events, same_length, scored_survival_data, survival_data

# lifelines damps its Newton steps and by default stops once the log-likelihood changes by < 1e-9 (relative), which
# can leave a hazard ratio ~2e-6 from the maximum; iterating until the steps are < 1e-12 reaches it
# (R's coxph agrees to ~1e-9).
COX_FIT_OPTIONS = {"precision": 1e-12, "r_precision": 0.0}


def harrell_c(risk, time, event, tau: float | None = None) -> float:
    """Harrell's C: the share of usable pairs whose higher-risk subject fails first (ties in risk count ½).
    With ``tau`` (the truncated C of staging comparisons, R's ``concordance(ymax = tau)``) a pair is
    compared only when its first event is at or before ``tau``: follow-up is censored there."""
    risk, time, event = scored_survival_data(risk, time, event)
    if tau is not None:
        time, event = np.minimum(time, tau), event & (time <= tau)
    require_events(event, "Harrell's C")
    # lifelines expects scores that grow with survival time.
    return float(concordance_index(time, -risk, event))


def uno_c(risk, time, event, tau: float | None = None, training_time=None, training_event=None) -> float:
    """Uno's C: Harrell's C with pairs weighted by 1/G(t)², G the censoring survival, so that its value does not
    depend on the censoring pattern; ``tau`` restricts it to events before the horizon ``tau``.

    G is estimated on the training cohort (``training_time``/``training_event``) when given, else on
    the evaluated cohort itself, by scikit-survival, which needs G > 0 at every event time before
    ``tau``: when everyone still followed at the last event time is censored then, give a ``tau``
    before it. scikit-survival's G counts a censoring tied with an event as happening after it; R's
    ``concordance(timewt = "n/G2")`` counts it with it, which moves C by about 1e-4.
    """
    risk, time, event = scored_survival_data(risk, time, event)
    require_events(event, "Uno's C")
    training = _structured_survival(training_time, training_event, time, event)
    try:
        return float(concordance_index_ipcw(training, Surv.from_arrays(event, time), risk, tau=tau)[0])
    except ValueError as error:  # the censoring survival reaches 0 before an event time
        raise InputError("tau", f"{error}; choose a tau before the end of follow-up") from None


def time_dependent_auc(risk, time, event, times, training_time=None, training_event=None) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at each of ``times`` (cases: event by t; controls: still event-free at t),
    weighted by inverse censoring probabilities, and its mean over ``times`` weighted by the survival curve.

    Every time must lie within the follow-up of the data (scikit-survival's requirement).
    """
    risk, time, event = scored_survival_data(risk, time, event)
    require_events(event, "a time-dependent AUC")
    times = finite_vector(times, "times")
    training = _structured_survival(training_time, training_event, time, event)
    try:
        auc, mean_auc = cumulative_dynamic_auc(training, Surv.from_arrays(event, time), risk, times)
    except ValueError as error:
        raise InputError("times", str(error)) from None
    return np.asarray(auc, dtype=np.float64), float(mean_auc)


@dataclass(frozen=True)
class RiskGroupComparison:
    """High- versus low-risk group: Kaplan–Meier curves, log-rank test and the Cox hazard ratio (high vs low)."""

    kaplan_meier: dict[str, KaplanMeierFitter]
    logrank_statistic: float
    logrank_p: float
    hazard_ratio: float
    hazard_ratio_ci: tuple[float, float]
    hazard_ratio_p: float


def compare_risk_groups(time, event, high) -> RiskGroupComparison:
    """Kaplan–Meier per group (confidence bands log(−log), lifelines' default), log-rank test, and the hazard
    ratio of ``high`` with its 95 % Wald interval from a Cox model on the group indicator (Efron ties)."""
    time, event = survival_data(time, event)
    high = binary_vector(high, "high")
    same_length(time=time, high=high)
    require_events(event, "a risk-group comparison")
    if high.all() or not high.any():
        raise InputError("high", "both risk groups must have subjects")
    curves = {name: KaplanMeierFitter().fit(time[members], event[members], label=name)
              for name, members in (("low", ~high), ("high", high))}
    logrank = logrank_test(time[high], time[~high], event[high], event[~high])
    indicator = pd.DataFrame({"time": time, "event": event, "high": high.astype(float)})
    cox = CoxPHFitter().fit(indicator, "time", "event", fit_options=COX_FIT_OPTIONS)
    row = cox.summary.loc["high"]
    return RiskGroupComparison(kaplan_meier=curves, logrank_statistic=float(logrank.test_statistic),
                               logrank_p=float(logrank.p_value), hazard_ratio=float(row["exp(coef)"]),
                               hazard_ratio_ci=(float(row["exp(coef) lower 95%"]), float(row["exp(coef) upper 95%"])),
                               hazard_ratio_p=float(row["p"]))


def breslow_baseline_cumulative_hazard(risk, time, event, at_times) -> np.ndarray:
    """Breslow's H0(t) = Σ_{event times tᵢ ≤ t} dᵢ / Σ_{j: time_j ≥ tᵢ} exp(risk_j), at each of ``at_times``.

    ``risk`` is the uncentred linear predictor (or network score) of the cohort, so that
    S(t | x) = exp(−H0(t)·exp(risk(x))) with no further centring. Tied events all use the full
    risk set (R's ``basehaz`` of a ``ties = "breslow"`` fit).
    """
    risk, time, event = scored_survival_data(risk, time, event)
    require_events(event, "a baseline hazard")
    at_times = finite_vector(at_times, "at_times")
    shift = risk.max()  # exp(risk − shift) ≤ 1 cannot overflow; the shift is put back at the end
    order = np.argsort(time, kind="stable")
    sorted_time = time[order]
    # Σ exp(risk) over subjects with time ≥ t: a reversed cumulative sum, read at each time's first position.
    at_risk = np.cumsum(np.exp(risk[order] - shift)[::-1])[::-1]
    event_times, deaths = np.unique(time[event], return_counts=True)
    first_at_risk = np.searchsorted(sorted_time, event_times, side="left")
    cumulative = np.cumsum(deaths / at_risk[first_at_risk]) * np.exp(-shift)
    position = np.searchsorted(event_times, at_times, side="right")
    return np.where(position > 0, cumulative[np.maximum(position - 1, 0)], 0.0)


def breslow_variance_terms(risk, covariates, time, event, at_times) -> tuple[np.ndarray, np.ndarray]:
    """Tsiatis' terms for the variance of Breslow's cumulative hazard at ``at_times``: ``A(t) = Σ dᵢ / S0ᵢ²``
    and ``C(t) = Σ dᵢ x̄ᵢ / S0ᵢ`` (times × covariates), over event times tᵢ ≤ t, with S0ᵢ = Σ exp(risk)
    over the risk set and x̄ᵢ its exp(risk)-weighted covariate mean.

    With the coefficients' covariance V and H0 from :func:`breslow_baseline_cumulative_hazard`,
    Var log Ĥ(t | x) = [A(t) + qᵀVq] / H0(t)², q = H0(t)·x − C(t): the first term is the baseline's own
    noise, the second the coefficients' (R's ``survfit.coxph`` standard error, ``ctype = 1``).
    """
    risk, time, event = scored_survival_data(risk, time, event)
    covariates = np.asarray(covariates, dtype=np.float64).reshape(len(risk), -1)
    if not np.isfinite(covariates).all():
        raise InputError("covariates", "has missing or infinite values")
    require_events(event, "a baseline hazard")
    at_times = finite_vector(at_times, "at_times")
    shift = risk.max()
    order = np.argsort(time, kind="stable")
    sorted_time, weight = time[order], np.exp(risk[order] - shift)
    at_risk = np.cumsum(weight[::-1])[::-1]
    weighted_sum = np.cumsum((weight[:, None] * covariates[order])[::-1], axis=0)[::-1]
    event_times, deaths = np.unique(time[event], return_counts=True)
    first = np.searchsorted(sorted_time, event_times, side="left")
    s0, mean = at_risk[first], weighted_sum[first] / at_risk[first][:, None]
    a = np.cumsum(deaths / s0**2) * np.exp(-2 * shift)
    c = np.cumsum(deaths[:, None] * mean / s0[:, None], axis=0) * np.exp(-shift)
    position = np.searchsorted(event_times, at_times, side="right")
    index = np.maximum(position - 1, 0)
    reached = position > 0
    return np.where(reached, a[index], 0.0), np.where(reached[:, None], c[index], 0.0)


def _structured_survival(training_time, training_event, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """scikit-survival's record array of the cohort that estimates the censoring distribution."""
    if training_time is None and training_event is None:
        return Surv.from_arrays(event, time)
    if training_time is None or training_event is None:
        raise InputError("training_time/training_event", "give both or neither")
    training_time, training_event = survival_data(training_time, training_event)
    return Surv.from_arrays(training_event, training_time)
