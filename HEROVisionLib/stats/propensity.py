"""1:1 propensity-score matching, as R ``MatchIt::matchit(method = "nearest", distance = "glm",
caliper = 0.2)``, and the standardised mean differences that show whether it balanced the groups.

The propensity is an unpenalised logistic regression of the treatment on the covariates
(scikit-learn). Matching is greedy nearest-neighbour without replacement: treated subjects, taken
from the largest propensity down (MatchIt's default ``m.order = "largest"``), each receive the
not-yet-used control with the closest propensity, provided it lies within the caliper of 0.2
standard deviations of the propensity (over all subjects); otherwise they stay unmatched. No
well-kept Python library does this, hence this module: the propensity is checked against MatchIt's,
the pairs against MatchIt's documented rule written out in R (the MatchIt 4.5.1 Debian ships
matches wrongly: kosukeimai/MatchIt#163).

SMD of a covariate: (mean in treated − mean in controls) / √((s²_treated + s²_controls) / 2), with
the standard deviations of the whole cohort before matching, so before and after are on one scale
(Austin 2009); |SMD| < 0.1 is the usual mark of balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ..errors import InputError
from .checks import binary_vector, finite_vector

CALIPER_SD = 0.2
BALANCED_SMD = 0.1


@dataclass(frozen=True)
class Matching:
    propensity: np.ndarray  # per subject
    pairs: np.ndarray  # (k, 2) row indices: treated, control
    caliper: float  # in propensity units

    @property
    def matched(self) -> np.ndarray:
        """Row indices of every matched subject (treated then controls)."""
        return np.concatenate([self.pairs[:, 0], self.pairs[:, 1]])


def propensity_scores(data: pd.DataFrame, treated, covariates) -> np.ndarray:
    """P(treated | covariates) from an unpenalised logistic regression."""
    treated = binary_vector(treated, "treatment")
    x = _covariates(data, covariates)
    if treated.all() or not treated.any():
        raise InputError("treatment", "both groups are needed for a propensity model")
    model = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-10).fit(x, treated)  # unpenalised
    return model.predict_proba(x)[:, 1]


def match_nearest(propensity, treated, caliper_sd: float | None = CALIPER_SD) -> Matching:
    """Greedy 1:1 nearest-neighbour matching within a caliper (see module docstring; ``None``: no caliper)."""
    propensity = finite_vector(propensity, "propensity")
    treated = binary_vector(treated, "treatment")
    if len(propensity) != len(treated):
        raise InputError("treatment", "needs one value per subject, as the propensity")
    caliper = np.inf if caliper_sd is None else caliper_sd * float(np.std(propensity, ddof=1))
    controls = np.flatnonzero(~treated)
    available = np.ones(len(controls), dtype=bool)
    order = np.flatnonzero(treated)
    order = order[np.argsort(-propensity[order], kind="stable")]
    pairs = []
    for subject in order:
        if not available.any():
            break
        distance = np.where(available, np.abs(propensity[controls] - propensity[subject]), np.inf)
        nearest = int(np.argmin(distance))
        if distance[nearest] <= caliper:
            pairs.append((subject, controls[nearest]))
            available[nearest] = False
    return Matching(propensity, np.asarray(pairs, dtype=int).reshape(-1, 2), caliper)


def standardized_mean_differences(data: pd.DataFrame, treated, covariates, matching: Matching | None = None
                                  ) -> pd.DataFrame:
    """Per covariate: SMD before matching and, given ``matching``, after it (see module docstring)."""
    treated = binary_vector(treated, "treatment")
    x = pd.DataFrame(_covariates(data, covariates), columns=list(covariates))
    scale = np.sqrt((x[treated].var(ddof=1) + x[~treated].var(ddof=1)) / 2).replace(0, np.nan)
    table = pd.DataFrame({"before": (x[treated].mean() - x[~treated].mean()) / scale})
    if matching is not None:
        table["after"] = (x.iloc[matching.pairs[:, 0]].mean().to_numpy()
                          - x.iloc[matching.pairs[:, 1]].mean().to_numpy()) / scale
    return table.fillna(0.0)


def _covariates(data: pd.DataFrame, covariates) -> np.ndarray:
    missing = [name for name in covariates if name not in data.columns]
    if missing:
        raise InputError("data", f"lacks column(s) {', '.join(missing)}")
    return np.column_stack([finite_vector(data[name], name) for name in covariates])
