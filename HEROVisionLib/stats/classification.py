"""Discrimination and calibration of a binary prediction (early recurrence): AUC with DeLong's confidence
interval, DeLong's test of two correlated AUCs, the calibration curve and the Hosmer–Lemeshow test.

The AUC and the calibration curve come from scikit-learn. DeLong's variance (fast algorithm of Sun &
Xu 2014, with midranks) and Hosmer–Lemeshow are written here to give exactly what R's
``pROC::ci.auc``/``pROC::roc.test`` and ``ResourceSelection::hoslem.test`` report, which is what
papers quote. Direction: a higher score means a case (outcome 1), pROC's ``direction = "<"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2, norm, rankdata
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from ..errors import InputError
from .checks import binary_vector, both_classes, finite_vector, same_length


@dataclass(frozen=True)
class AUCInterval:
    """An AUC, its DeLong variance and confidence interval (clipped to [0, 1] as pROC does)."""

    auc: float
    variance: float
    lower: float
    upper: float


@dataclass(frozen=True)
class DeLongTest:
    """DeLong's test of AUC₁ = AUC₂ on the same subjects: z, two-sided p and the interval of AUC₁ − AUC₂."""

    auc1: float
    auc2: float
    difference: float
    z: float
    p: float
    lower: float
    upper: float


@dataclass(frozen=True)
class HosmerLemeshow:
    """Hosmer–Lemeshow goodness of fit: chi-square statistic, degrees of freedom (groups − 2) and p."""

    statistic: float
    df: int
    p: float


def auc_with_delong_ci(outcome, score, confidence: float = 0.95) -> AUCInterval:
    """ROC AUC of ``score`` for ``outcome`` with DeLong's variance and normal interval (pROC ``ci.auc``)."""
    outcome, (score,) = _classification_data(outcome, score)
    auc = float(roc_auc_score(outcome, score))
    case_placements, control_placements = _placements(outcome, score[None, :])
    variance = float(np.var(case_placements, ddof=1) / case_placements.shape[1]
                     + np.var(control_placements, ddof=1) / control_placements.shape[1])
    half_width = norm.ppf(0.5 + confidence / 2) * np.sqrt(variance)
    return AUCInterval(auc=auc, variance=variance, lower=float(max(auc - half_width, 0.0)),
                       upper=float(min(auc + half_width, 1.0)))


def delong_test(outcome, score1, score2, confidence: float = 0.95) -> DeLongTest:
    """DeLong's test for two correlated ROC curves (pROC ``roc.test(method = "delong", paired = TRUE)``)."""
    outcome, scores = _classification_data(outcome, score1, score2, names=("score1", "score2"))
    auc1, auc2 = (float(roc_auc_score(outcome, score)) for score in scores)
    case_placements, control_placements = _placements(outcome, scores)
    covariance = (np.cov(case_placements) / case_placements.shape[1]
                  + np.cov(control_placements) / control_placements.shape[1])
    sd = float(np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]))
    difference = auc1 - auc2
    z = difference / sd if sd > 0 else 0.0  # identical curves: no difference, pROC reports z = 0
    half_width = norm.ppf(0.5 + confidence / 2) * sd
    return DeLongTest(auc1=auc1, auc2=auc2, difference=difference, z=z, p=float(2 * norm.sf(abs(z))),
                      lower=float(difference - half_width), upper=float(difference + half_width))


def calibration(outcome, probability, n_bins: int = 10, strategy: str = "quantile") -> tuple[np.ndarray, np.ndarray]:
    """Observed event rate and mean predicted probability per bin (scikit-learn's ``calibration_curve``);
    ``strategy="quantile"`` gives bins of equal size, ``"uniform"`` bins of equal width."""
    outcome, (probability,) = _classification_data(outcome, probability, names=("probability",))
    _check_probability(probability)
    observed, predicted = calibration_curve(outcome, probability, n_bins=n_bins, strategy=strategy)
    return observed, predicted


def expected_calibration_error(outcome, probability, n_bins: int = 10) -> float:
    """ECE: over ``n_bins`` equal-width bins of the predicted probability, the mean absolute gap between
    the bin's mean probability and its observed rate, weighted by the bin's share of patients."""
    outcome, (probability,) = _classification_data(outcome, probability, names=("probability",))
    _check_probability(probability)
    bins = np.minimum((probability * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    used = counts > 0
    gap = (np.bincount(bins, weights=probability, minlength=n_bins)
           - np.bincount(bins, weights=outcome.astype(float), minlength=n_bins))[used] / counts[used]
    return float(np.sum(np.abs(gap) * counts[used]) / len(outcome))


def calibration_slope(outcome, probability, floor: float = 1e-3) -> float:
    """The slope of a logistic regression of the outcome on logit(probability) (1: calibrated; < 1:
    predictions too extreme). Probabilities are kept within [floor, 1 − floor] so that 0 and 1 (every
    re-scoring agreeing) stay finite."""
    from sklearn.linear_model import LogisticRegression

    outcome, (probability,) = _classification_data(outcome, probability, names=("probability",))
    _check_probability(probability)
    if outcome.min() == outcome.max():
        raise InputError("outcome", "a calibration slope needs both outcomes")
    clipped = np.clip(probability, floor, 1 - floor)
    logit = np.log(clipped / (1 - clipped))
    fitted = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit[:, None], outcome.astype(int))
    return float(fitted.coef_[0, 0])


def hosmer_lemeshow(outcome, probability, groups: int = 10) -> HosmerLemeshow:
    """The Hosmer–Lemeshow test as ``ResourceSelection::hoslem.test(outcome, probability, g = groups)``.

    Groups are cut at the distinct quantiles (R's type 7) of the predicted probabilities, intervals
    closed on the right and the first also on the left; chi-square with ``groups − 2`` degrees of
    freedom even when tied quantiles merged groups (as hoslem.test does). A group left empty by ties,
    where hoslem.test returns NaN, adds nothing here.
    """
    outcome, (probability,) = _classification_data(outcome, probability, names=("probability",))
    _check_probability(probability)
    if groups < 3:
        raise InputError("groups", f"must be at least 3, not {groups}")
    # R's seq(0, 1, 1/g) is (0:g) * (1/g): the same probabilities to the last bit.
    breaks = np.unique(np.quantile(probability, np.arange(groups + 1) * (1 / groups)))
    group = np.maximum(np.searchsorted(breaks, probability, side="left") - 1, 0)
    counts = np.bincount(group, minlength=len(breaks) - 1)
    observed_events = np.bincount(group, weights=outcome.astype(float), minlength=len(counts))
    expected_events = np.bincount(group, weights=probability, minlength=len(counts))
    used = counts > 0
    observed = np.stack([counts - observed_events, observed_events])[:, used]
    expected = np.stack([counts - expected_events, expected_events])[:, used]
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return HosmerLemeshow(statistic=statistic, df=groups - 2, p=float(chi2.sf(statistic, groups - 2)))


def _placements(outcome: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (Sun & Xu's fast algorithm), one row per score.

    Case placement: the share of controls a case outranks (ties ½); control placement: the share of
    cases that outrank a control. Their means are the AUC; their covariances give its variance.
    """
    cases, controls = scores[:, outcome], scores[:, ~outcome]
    n_cases, n_controls = cases.shape[1], controls.shape[1]
    if min(n_cases, n_controls) < 2:
        raise InputError("outcome", "DeLong's variance needs at least two cases and two controls")
    rank_all = rankdata(np.concatenate([cases, controls], axis=1), axis=1)
    rank_cases = rankdata(cases, axis=1)
    rank_controls = rankdata(controls, axis=1)
    case_placements = (rank_all[:, :n_cases] - rank_cases) / n_controls
    control_placements = 1 - (rank_all[:, n_cases:] - rank_controls) / n_cases
    return case_placements, control_placements


def _classification_data(outcome, *scores, names=("score",)) -> tuple[np.ndarray, list[np.ndarray]]:
    outcome = binary_vector(outcome, "outcome")
    checked = [finite_vector(values, name) for values, name in zip(scores, names, strict=True)]
    same_length(outcome=outcome, **dict(zip(names, checked, strict=True)))
    both_classes(outcome)
    return outcome, np.stack(checked)


def _check_probability(probability: np.ndarray) -> None:
    if ((probability < 0) | (probability > 1)).any():
        raise InputError("probability", "must lie in [0, 1]")
