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


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_boot: int = 1000, seed: int = 0, strata=None,
                 confidence: float = 0.95) -> BootstrapInterval:
    """Percentile interval of ``statistic(*arrays)`` over ``n_boot`` resamples of the rows (seeded, reproducible)."""
    arrays = [np.asarray(array) for array in arrays]
    if not arrays:
        raise InputError("arrays", "give at least one array to resample")
    n = len(arrays[0])
    for position, array in enumerate(arrays[1:], start=2):
        if len(array) != n:
            raise InputError(f"array {position}", f"has {len(array)} rows, the first array has {n}")
    if n_boot < 1:
        raise InputError("n_boot", f"must be at least 1, not {n_boot}")
    if not 0 < confidence < 1:
        raise InputError("confidence", f"must lie in (0, 1), not {confidence}")
    groups = [np.arange(n)] if strata is None else _strata_members(strata, n)

    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for index in range(n_boot):
        rows = np.concatenate([rng.choice(members, size=len(members), replace=True) for members in groups])
        values[index] = statistic(*(array[rows] for array in arrays))
    lower, upper = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return BootstrapInterval(estimate=float(statistic(*arrays)), lower=float(lower), upper=float(upper))


def _strata_members(strata, n: int) -> list[np.ndarray]:
    strata = np.asarray(strata)
    if len(strata) != n:
        raise InputError("strata", f"has {len(strata)} values, the arrays have {n} rows")
    return [np.flatnonzero(strata == label) for label in np.unique(strata)]
