"""A joint Cox model of both treatment arms, the alternative to one nomogram per arm for advice.

One fit over every patient: the baseline hazard is stratified by arm (ablation and resection fail at
their own rates), the prognostic factors are shared, and each factor's treatment interaction (its
effect under resection minus under ablation) is shrunk towards zero by a ridge penalty chosen by
cross-validated partial likelihood. The difference between the treatments — what advice needs — is
then estimated from all patients rather than from two models that each see only their own arm.

For a patient x, Δ = log Ĥ_TA(t | x) − log Ĥ_SR(t | x) (> 0: resection has the lower cumulative
hazard, the longer PFS), with its delta-method standard error from the coefficients' covariance and
each arm's Breslow baseline (Tsiatis' terms, as :func:`~.survival.breslow_variance_terms`);
P(resection gives the longer PFS) = Φ(Δ / se).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from .checks import require_events, survival_data
from .survival import COX_FIT_OPTIONS, breslow_baseline_cumulative_hazard, breslow_variance_terms

ARMS = ("TA", "SR")
#: Ridge penalties on the interactions tried by cross-validation (lifelines' scale: standardised covariates).
PENALIZERS = (0.03, 0.1, 0.3, 1.0, 3.0)
#: A touch of ridge on the shared terms keeps a separable binary factor's coefficient finite.
SHARED_PENALIZER = 1e-4


@dataclass(frozen=True)
class JointModel:
    covariates: tuple[str, ...]
    coefficients: np.ndarray  # the shared terms, their interactions with resection, then the arm scores
    arm_scores: dict[str, dict[str, str]]  # term → arm → the column that holds it under that arm
    covariance: np.ndarray
    horizons: tuple[float, ...]
    baseline: dict[str, np.ndarray]  # arm → H0 at the horizons
    hazard_variance: dict[str, np.ndarray]  # arm → A(t)
    hazard_gradient: dict[str, np.ndarray]  # arm → C(t) (horizons × coefficients)
    penalizer: float

    def design(self, data: pd.DataFrame, arm: str) -> np.ndarray:
        """The rows of ``data`` as the model sees them under ``arm``: the factors, and the factors again
        as interactions under resection (zeros under ablation)."""
        values = data[list(self.covariates)].to_numpy(np.float64)
        scores = np.stack([data[columns[arm]].to_numpy(np.float64) for columns in self.arm_scores.values()], axis=1) \
            if self.arm_scores else np.empty((len(data), 0))
        return np.hstack([values, values * (arm == "SR"), scores])

    def log_hazard_difference(self, data: pd.DataFrame, horizon: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
        """Δ = log Ĥ_TA − log Ĥ_SR at ``horizon`` per row, and its standard error."""
        if horizon not in self.horizons:
            raise InputError("horizon", f"{horizon:g} months is not one of the model's horizons {self.horizons}")
        h = self.horizons.index(horizon)
        gradient, variance, log_hazard = {}, 0.0, {}
        for arm in ARMS:
            x = self.design(data, arm)
            h0 = self.baseline[arm][h]
            log_hazard[arm] = math.log(h0) + x @ self.coefficients
            gradient[arm] = x - self.hazard_gradient[arm][h] / h0  # ∂ log Ĥ / ∂β
            variance = variance + self.hazard_variance[arm][h] / h0**2
        q = gradient["TA"] - gradient["SR"]
        spread = np.einsum("ri,ij,rj->r", q, self.covariance, q)
        return log_hazard["TA"] - log_hazard["SR"], np.sqrt(variance + spread)

    def p_sr_better(self, data: pd.DataFrame, horizon: float = 24.0) -> np.ndarray:
        """P(resection gives the longer PFS at ``horizon``) per row: Φ(Δ / se)."""
        from scipy.stats import norm

        difference, se = self.log_hazard_difference(data, horizon)
        return norm.cdf(difference / se)


def fit_joint_model(data: pd.DataFrame, duration_col: str, event_col: str, arm_col: str, covariates,
                    arm_scores: dict[str, dict[str, str]] | None = None, horizons=(12.0, 24.0, 36.0),
                    penalizers=PENALIZERS, folds: int = 5, seed: int = 0,
                    shared_penalizer: float = SHARED_PENALIZER) -> JointModel:
    """Fit the joint model on ``data`` (both arms, ``arm_col`` TA/SR), the interaction penalty chosen
    among ``penalizers`` by ``folds``-fold cross-validated partial log-likelihood. ``arm_scores``
    names terms whose value depends on the arm, e.g. ``{"image": {"TA": "score_TA", "SR": "score_SR"}}``:
    each survival network scores the risk under its own treatment, and a patient is modelled under
    an arm with that arm's score (one shared coefficient per term)."""
    from lifelines import CoxPHFitter
    from lifelines.utils import k_fold_cross_validation

    covariates = tuple(covariates)
    arms = data[arm_col].astype(str)
    if set(arms) != set(ARMS):
        raise InputError(arm_col, f"a joint model needs patients of both arms {ARMS}, found {sorted(set(arms))}")
    time, event = survival_data(data[duration_col], data[event_col])
    frame = pd.DataFrame({"time": time, "event": event.astype(float), "arm": arms.to_numpy()})
    shared = data[list(covariates)].to_numpy(np.float64)
    if not np.isfinite(shared).all():
        raise InputError("covariates", "have missing or infinite values")
    arm_scores = dict(arm_scores or {})
    received = frame["arm"].to_numpy()
    scores = [np.where(received == "SR", data[columns["SR"]].to_numpy(np.float64), data[columns["TA"]].to_numpy(np.float64))
              for columns in arm_scores.values()]
    names = [*covariates, *(f"{name} x SR" for name in covariates), *arm_scores]
    design = np.hstack([shared, shared * (received == "SR")[:, None], np.stack(scores, axis=1) if scores
                        else np.empty((len(frame), 0))])
    if not np.isfinite(design).all():
        raise InputError("arm scores", "have missing or infinite values")
    frame = pd.concat([frame, pd.DataFrame(design, columns=names)], axis=1)
    for arm in ARMS:
        require_events(event[frame["arm"].to_numpy() == arm], f"the {arm} arm of a joint model")

    def fitter(penalty: float) -> CoxPHFitter:
        return CoxPHFitter(penalizer=np.r_[np.full(len(covariates), shared_penalizer), np.full(len(covariates), penalty),
                                           np.full(len(arm_scores), shared_penalizer)], l1_ratio=0.0)

    scores = {}
    for penalty in penalizers:
        np.random.seed(seed)  # lifelines shuffles the folds with numpy's global generator
        scores[penalty] = float(np.mean(k_fold_cross_validation(
            fitter(penalty), frame, "time", "event", k=folds, scoring_method="log_likelihood",
            fitter_kwargs={"strata": ["arm"], "fit_options": COX_FIT_OPTIONS})))
    penalty = max(scores, key=scores.get)
    fitted = fitter(penalty).fit(frame, "time", "event", strata=["arm"], fit_options=COX_FIT_OPTIONS)
    coefficients = fitted.params_[names].to_numpy()
    horizons = tuple(float(h) for h in horizons)
    baseline, variance, gradient = {}, {}, {}
    for arm in ARMS:
        rows = frame["arm"].to_numpy() == arm
        lp = design[rows] @ coefficients
        baseline[arm] = breslow_baseline_cumulative_hazard(lp, time[rows], event[rows], horizons)
        variance[arm], gradient[arm] = breslow_variance_terms(lp, design[rows], time[rows], event[rows], horizons)
    return JointModel(covariates, coefficients, arm_scores, fitted.variance_matrix_.loc[names, names].to_numpy(),
                      horizons, baseline, variance, gradient, penalty)
