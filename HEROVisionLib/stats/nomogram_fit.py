"""The clinical nomogram: a multivariable Cox model of the risk score and clinical factors, and its points.

Model selection follows the usual reporting of HCC nomograms: every candidate with a univariate
Cox Wald P < 0.20 enters, then backward stepwise selection by AIC (−2·log-likelihood + 2·k) drops,
one at a time, the variable whose removal lowers the AIC most, until no removal does — R's
``step(coxph(...), direction = "backward")``. Cox fits are lifelines' (Efron ties, as R's default).

Points: each variable's contribution β·x spans a range over the cohort; the variable with the widest
range gets 0–100 points and the others points in proportion, so total points map linearly back to
the linear predictor, and through Breslow's baseline to survival probabilities at the horizons. The
nomogram also keeps what the standard error of a patient's predicted survival needs (the coefficients'
covariance and Tsiatis' terms of the baseline), so the two treatments' predictions can be compared with
their estimation uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from lifelines import CoxPHFitter

from ..errors import InputError
from ..models.nomogram import Nomogram
from .checks import finite_vector, require_events, survival_data
from .survival import COX_FIT_OPTIONS, breslow_baseline_cumulative_hazard, breslow_variance_terms

SCREEN_P = 0.20
MAX_POINTS = 100.0


@dataclass(frozen=True)
class CoxModel:
    """The selected Cox model: per covariate coef, hazard_ratio, lower, upper (95 %) and Wald p; the
    coefficients' covariance; its fit statistics; and the univariate screening P of every candidate."""

    covariates: tuple[str, ...]
    summary: pd.DataFrame
    covariance: pd.DataFrame
    log_likelihood: float
    aic: float
    screening_p: pd.Series


def select_cox_model(data: pd.DataFrame, duration_col: str, event_col: str, candidates,
                     screen_p: float = SCREEN_P) -> CoxModel:
    """Univariate screen (Wald P < ``screen_p``), then backward stepwise AIC; see the module docstring.

    Raises :class:`InputError` when no candidate passes the screen, or when the model without any
    covariate has the lowest AIC (R's step would return that empty model).
    """
    candidates = list(candidates)
    frame = _model_frame(data, duration_col, event_col, candidates)
    screening_p = pd.Series({name: float(_fit(frame, duration_col, event_col, [name]).summary.loc[name, "p"])
                             for name in candidates}, name="p")
    selected = [name for name in candidates if screening_p[name] < screen_p]
    if not selected:
        raise InputError("candidates", f"no candidate has a univariate P < {screen_p}")

    fitter = _fit(frame, duration_col, event_col, selected)
    aic = fitter.AIC_partial_
    while selected:
        trials = {name: _aic_without(frame, duration_col, event_col, selected, name, fitter) for name in selected}
        dropped = min(trials, key=trials.get)
        if trials[dropped] >= aic:  # as R's step: stop when no removal lowers the AIC
            break
        selected.remove(dropped)
        aic = trials[dropped]
        if selected:
            fitter = _fit(frame, duration_col, event_col, selected)
    if not selected:
        raise InputError("candidates", "backward selection removed every covariate: none improves on the null model")
    return CoxModel(covariates=tuple(selected), summary=_summary(fitter),
                    covariance=fitter.variance_matrix_.loc[selected, selected], log_likelihood=float(fitter.log_likelihood_),
                    aic=float(fitter.AIC_partial_), screening_p=screening_p)


def build_nomogram(model: CoxModel, data: pd.DataFrame, duration_col: str, event_col: str,
                   horizons=(12, 24, 36)) -> Nomogram:
    """Points of ``model``'s covariates over the cohort ``data`` and Breslow survival at ``horizons``."""
    frame = _model_frame(data, duration_col, event_col, model.covariates)
    coefficients = model.summary["coef"]
    contributions = frame[list(model.covariates)] * coefficients
    lowest, highest = contributions.min(), contributions.max()
    widest = float((highest - lowest).max())
    if widest <= 0:
        raise InputError("data", "the model's covariates do not vary in this cohort")
    linear_predictor = contributions.sum(axis=1).to_numpy()
    horizons = tuple(float(horizon) for horizon in finite_vector(horizons, "horizons"))
    hazard = breslow_baseline_cumulative_hazard(linear_predictor, frame[duration_col], frame[event_col], horizons)
    variance, gradient = breslow_variance_terms(linear_predictor, frame[list(model.covariates)], frame[duration_col],
                                                frame[event_col], horizons)
    return Nomogram(coefficients=coefficients, lowest_contribution=lowest, points_scale=widest / MAX_POINTS,
                    horizons=horizons, baseline_cumulative_hazard=hazard,
                    coefficient_covariance=model.covariance.to_numpy(), hazard_variance=variance, hazard_gradient=gradient)


def _aic_without(frame, duration_col, event_col, selected, name, fitter: CoxPHFitter) -> float:
    """AIC after dropping ``name``; without any covariate left it is −2·(null log-likelihood)."""
    remaining = [other for other in selected if other != name]
    if remaining:
        return _fit(frame, duration_col, event_col, remaining).AIC_partial_
    null_log_likelihood = fitter.log_likelihood_ - fitter.log_likelihood_ratio_test().test_statistic / 2
    return -2 * null_log_likelihood


def _fit(frame: pd.DataFrame, duration_col: str, event_col: str, covariates) -> CoxPHFitter:
    columns = [duration_col, event_col, *covariates]
    return CoxPHFitter().fit(frame[columns], duration_col, event_col, fit_options=COX_FIT_OPTIONS)


def _summary(fitter: CoxPHFitter) -> pd.DataFrame:
    table = fitter.summary
    return pd.DataFrame({"coef": table["coef"], "hazard_ratio": table["exp(coef)"],
                         "lower": table["exp(coef) lower 95%"], "upper": table["exp(coef) upper 95%"],
                         "p": table["p"]})


def _model_frame(data: pd.DataFrame, duration_col: str, event_col: str, covariates) -> pd.DataFrame:
    """The needed columns as floats, with survival data and covariates checked."""
    missing = [name for name in (duration_col, event_col, *covariates) if name not in data.columns]
    if missing:
        raise InputError("data", f"lacks column(s) {', '.join(missing)}")
    if len(set(covariates)) != len(covariates) or not covariates:
        raise InputError("candidates", "give at least one covariate, each once")
    time, event = survival_data(data[duration_col], data[event_col])
    require_events(event, "a Cox model")
    frame = pd.DataFrame({duration_col: time, event_col: event.astype(float)})
    for name in covariates:
        frame[name] = finite_vector(data[name], name)
    return frame
