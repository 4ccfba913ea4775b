"""A fitted nomogram as plain numbers a model package carries, and its arithmetic.

Fitting (Cox model selection, points scale, Breslow baseline) is :mod:`HEROVisionLib.stats.nomogram_fit`'s
job on a training cohort; what it produces is this object, which prediction evaluates for one
patient: points per covariate, total points, the Cox linear predictor, and survival at the horizons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.clinical import clinical_number
from .model_set import survival_probability


@dataclass(frozen=True)
class Nomogram:
    """Points per unit of each covariate, and what total points mean in survival."""

    coefficients: pd.Series
    lowest_contribution: pd.Series  # min over the cohort of β·x, per covariate (0 points)
    points_scale: float  # linear-predictor units per point: widest range of β·x / 100
    horizons: tuple[float, ...]
    baseline_cumulative_hazard: np.ndarray  # Breslow H0 at the horizons, for the uncentred linear predictor
    # For standard errors (absent from packages made before they were recorded):
    coefficient_covariance: np.ndarray | None = None  # covariates × covariates
    hazard_variance: np.ndarray | None = None  # Tsiatis' A(t) at the horizons
    hazard_gradient: np.ndarray | None = None  # Tsiatis' C(t): horizons × covariates

    @property
    def covariates(self) -> tuple[str, ...]:
        return tuple(self.coefficients.index)

    def points(self, data: pd.DataFrame) -> pd.DataFrame:
        """Points of each covariate for each row of ``data``, and their sum in column ``total``."""
        missing = [name for name in self.covariates if name not in data.columns]
        if missing:
            raise InputError("data", f"lacks column(s) {', '.join(missing)}")
        values = data[list(self.covariates)].astype(np.float64)
        unusable = [name for name in self.covariates if not np.isfinite(values[name]).all()]
        if unusable:
            raise InputError("data", f"missing or infinite value(s) in {', '.join(unusable)}")
        points = (values * self.coefficients - self.lowest_contribution) / self.points_scale
        return points.assign(total=points.sum(axis=1))

    def patient_row(self, risk_score: float, clinical: dict) -> pd.DataFrame | list[str]:
        """One patient's covariates (the risk score and the clinical record) as a one-row table for
        :meth:`points`, or the names of those unknown (blank). A value that is not a finite number is
        an error naming its column."""
        values = {**clinical, "risk_score": risk_score}
        numbers = {}
        for name in self.covariates:
            try:
                numbers[name] = clinical_number(values.get(name))
            except ValueError as error:
                raise InputError("clinical values", f"column {name}: {error}") from None
        missing = [name for name, number in numbers.items() if number is None]
        return missing or pd.DataFrame([numbers])

    def linear_predictor(self, total_points) -> np.ndarray:
        """The Cox linear predictor β·x of a total score."""
        return self.lowest_contribution.sum() + np.asarray(total_points, dtype=np.float64) * self.points_scale

    def survival(self, total_points) -> pd.DataFrame:
        """Survival probability at each horizon (columns) for each total score (rows)."""
        return pd.DataFrame(survival_probability(self.linear_predictor(total_points), self.baseline_cumulative_hazard),
                            columns=list(self.horizons))

    def log_hazard_se(self, data: pd.DataFrame) -> np.ndarray | None:
        """Standard error of log Ĥ(t | x) = log(−log S(t | x)) for each row of ``data`` (rows × horizons),
        from the coefficients' and the baseline's estimation error (Tsiatis; R's ``survfit.coxph``);
        None for a nomogram that did not record them."""
        if self.coefficient_covariance is None:
            return None
        self.points(data)  # the same checks of the covariates
        values = data[list(self.covariates)].to_numpy(np.float64)
        q = self.baseline_cumulative_hazard[None, :, None] * values[:, None, :] - self.hazard_gradient[None]
        spread = np.einsum("rti,ij,rtj->rt", q, self.coefficient_covariance, q)
        return np.sqrt(self.hazard_variance[None] + spread) / self.baseline_cumulative_hazard[None]

    def to_dict(self) -> dict:
        block = {"coefficients": {k: float(v) for k, v in self.coefficients.items()},
                 "lowest_contribution": {k: float(v) for k, v in self.lowest_contribution.items()},
                 "points_scale": float(self.points_scale), "horizons": [float(h) for h in self.horizons],
                 "baseline_cumulative_hazard": [float(h) for h in self.baseline_cumulative_hazard]}
        if self.coefficient_covariance is not None:
            block.update(coefficient_covariance=np.asarray(self.coefficient_covariance, dtype=float).tolist(),
                         hazard_variance=[float(v) for v in self.hazard_variance],
                         hazard_gradient=np.asarray(self.hazard_gradient, dtype=float).tolist())
        return block

    @classmethod
    def from_dict(cls, block: dict) -> Nomogram:
        optional = {name: np.asarray(block[name], dtype=np.float64)
                    for name in ("coefficient_covariance", "hazard_variance", "hazard_gradient") if name in block}
        return cls(pd.Series(block["coefficients"], dtype=np.float64),
                   pd.Series(block["lowest_contribution"], dtype=np.float64), float(block["points_scale"]),
                   tuple(float(h) for h in block["horizons"]),
                   np.asarray(block["baseline_cumulative_hazard"], dtype=np.float64), **optional)
