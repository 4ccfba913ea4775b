"""Bootstrap percentile confidence intervals for any statistic of paired arrays (C-index, AUC, net benefit).

The rows of all arrays are resampled together, so a statistic of (score, time, event) stays paired.
With ``strata`` the resampling is stratified: each stratum is resampled within itself and keeps its
size, so that, e.g., every resample of a small cohort keeps its number of events (or of cases) and
an AUC or C-index is defined in every resample. The interval is the percentile interval: the
(1 − confidence)/2 and (1 + confidence)/2 quantiles of the resampled statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class BootstrapInterval:
    """The statistic on the original data and its bootstrap percentile interval."""

    estimate: float
    lower: float
    upper: float


def bootstrap_replicates(statistic: Callable[..., float | np.ndarray], *arrays, n_boot: int = 1000, seed: int = 0,
                         strata=None) -> np.ndarray:
    """``statistic(*arrays)`` on each of ``n_boot`` resamples of the rows (seeded, reproducible):
    shape (n_boot,) or (n_boot, k) for a statistic of k values. A statistic that cannot be computed
    on a resample (say, one without an event) returns NaN there."""
    arrays = [np.asarray(array) for array in arrays]
    if not arrays:
        raise InputError("arrays", "give at least one array to resample")
    n = len(arrays[0])
    for position, array in enumerate(arrays[1:], start=2):
        if len(array) != n:
            raise InputError(f"array {position}", f"has {len(array)} rows, the first array has {n}")
    if n_boot < 1:
        raise InputError("n_boot", f"must be at least 1, not {n_boot}")
    groups = [np.arange(n)] if strata is None else _strata_members(strata, n)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = np.concatenate([rng.choice(members, size=len(members), replace=True) for members in groups])
        values.append(statistic(*(array[rows] for array in arrays)))
    return np.asarray(values, dtype=np.float64)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The (1 − confidence)/2 and (1 + confidence)/2 quantiles of the replicates that could be computed."""
    if not 0 < confidence < 1:
        raise InputError("confidence", f"must lie in (0, 1), not {confidence}")
    lower, upper = np.nanquantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lower), float(upper)


def paired_bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided P that a paired difference is 0, from its bootstrap replicates: twice the smaller
    share of replicates on either side of 0, at most 1 (the percentile test that inverts the
    percentile interval; Efron & Tibshirani 1993, §16.4); never below 1 / replicates, the test's
    resolution (read it as "P < that"). NaN when no replicate could be computed."""
    finite = differences[np.isfinite(differences)]
    if not finite.size:
        return float("nan")
    share = min(np.mean(finite <= 0), np.mean(finite >= 0))
    return float(min(1.0, max(2 * share, 1 / finite.size)))


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_boot: int = 1000, seed: int = 0, strata=None,
                 confidence: float = 0.95) -> BootstrapInterval:
    """Percentile interval of ``statistic(*arrays)`` over ``n_boot`` resamples of the rows (seeded, reproducible)."""
    replicates = bootstrap_replicates(statistic, *arrays, n_boot=n_boot, seed=seed, strata=strata)
    lower, upper = percentile_interval(replicates, confidence)
    return BootstrapInterval(estimate=float(statistic(*arrays)), lower=lower, upper=upper)


def _strata_members(strata, n: int) -> list[np.ndarray]:
    strata = np.asarray(strata)
    if len(strata) != n:
        raise InputError("strata", f"has {len(strata)} values, the arrays have {n} rows")
    return [np.flatnonzero(strata == label) for label in np.unique(strata)]
