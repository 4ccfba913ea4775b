"""Decision-curve analysis: is acting on the model better than treating everyone or no one?

Net benefit at a threshold probability pt weighs true positives against false positives by the odds
pt/(1 − pt) a clinician accepts: NB = TP/n − FP/n · pt/(1 − pt). Treating no one has NB = 0. No
maintained Python library computes it, and the arithmetic is short, so it is written here and
checked against the same arithmetic in R:

* binary outcome — Vickers' ``dca``/``dcurves``: treat when the probability is ≥ pt;
* outcome by a survival horizon — Vickers' ``stdca``: treat when the probability is > pt, and the
  event rate among the treated is 1 − S_KM(horizon) of the treated (Kaplan–Meier, so censored
  subjects count for the time they were followed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter

from ..errors import InputError
from .checks import binary_vector, finite_vector, require_events, same_length, survival_data


def net_benefit(outcome, probability, thresholds) -> pd.DataFrame:
    """Net benefit of the model and of treating all, per threshold (columns threshold, model, treat_all)."""
    outcome = binary_vector(outcome, "outcome")
    probability = _probability(probability)
    same_length(outcome=outcome, probability=probability)
    thresholds = _thresholds(thresholds)
    n = len(outcome)
    treated = probability[None, :] >= thresholds[:, None]
    true_positive = (treated & outcome).sum(axis=1) / n
    false_positive = (treated & ~outcome).sum(axis=1) / n
    odds = thresholds / (1 - thresholds)
    prevalence = outcome.mean()
    return pd.DataFrame({"threshold": thresholds, "model": true_positive - false_positive * odds,
                         "treat_all": prevalence - (1 - prevalence) * odds})


def survival_net_benefit(probability, time, event, horizon: float, thresholds) -> pd.DataFrame:
    """Net benefit for an event by ``horizon``, ``probability`` being each subject's predicted probability of
    the event by then (1 − S(horizon | x)); columns threshold, model, treat_all.

    A threshold above every probability treats no one: its net benefit is 0 (``stdca`` stops there).
    """
    probability = _probability(probability)
    time, event = survival_data(time, event)
    same_length(probability=probability, time=time)
    require_events(event, "a survival decision curve")
    thresholds = _thresholds(thresholds)
    odds = thresholds / (1 - thresholds)
    model = np.zeros(len(thresholds))
    for index, threshold in enumerate(thresholds):
        treated = probability > threshold
        if treated.any():
            risk = _kaplan_meier_risk(time[treated], event[treated], horizon)
            model[index] = risk * treated.mean() - (1 - risk) * treated.mean() * odds[index]
    overall_risk = _kaplan_meier_risk(time, event, horizon)
    return pd.DataFrame({"threshold": thresholds, "model": model,
                         "treat_all": overall_risk - (1 - overall_risk) * odds})


def _kaplan_meier_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    """1 − S_KM(horizon); past the last follow-up the curve stays at its last value (R's ``extend = TRUE``)."""
    return 1.0 - float(KaplanMeierFitter().fit(time, event).predict(horizon))


def _probability(values) -> np.ndarray:
    probability = finite_vector(values, "probability")
    if ((probability < 0) | (probability > 1)).any():
        raise InputError("probability", "must lie in [0, 1]")
    return probability


def _thresholds(values) -> np.ndarray:
    thresholds = finite_vector(values, "thresholds")
    if ((thresholds <= 0) | (thresholds >= 1)).any():
        raise InputError("thresholds", "must lie strictly between 0 and 1")
    return thresholds
