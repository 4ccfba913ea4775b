"""Checks shared by the statistics: one clear :class:`InputError` instead of a NaN or a library traceback.

Every public statistic passes its arrays through these helpers first, so a NaN score, an event flag
of 2 or columns of different lengths are reported by name before any library sees them.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def finite_vector(values, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array with at least one element and no NaN or infinity."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InputError(name, f"must be one value per subject (1-D), got shape {array.shape}")
    if array.size == 0:
        raise InputError(name, "is empty")
    if not np.isfinite(array).all():
        raise InputError(name, f"has {int((~np.isfinite(array)).sum())} missing or infinite value(s)")
    return array


def binary_vector(values, name: str) -> np.ndarray:
    """``values`` as a 1-D bool array; only 0/1 (or False/True) are accepted."""
    array = finite_vector(values, name)
    if not np.isin(array, (0.0, 1.0)).all():
        raise InputError(name, "must hold only 0 and 1")
    return array.astype(bool)


def same_length(**arrays: np.ndarray) -> None:
    """Raise if the named arrays do not all have the length of the first one."""
    (first_name, first), *others = arrays.items()
    for name, array in others:
        if len(array) != len(first):
            raise InputError(name, f"has {len(array)} values, {first_name} has {len(first)}")


def survival_data(time, event) -> tuple[np.ndarray, np.ndarray]:
    """Follow-up times (finite, not negative) and event flags (0/1) of equal length."""
    time = finite_vector(time, "time")
    event = binary_vector(event, "event")
    same_length(time=time, event=event)
    if (time < 0).any():
        raise InputError("time", "has negative follow-up times")
    return time, event


def scored_survival_data(score, time, event, score_name: str = "risk score") -> tuple[np.ndarray, ...]:
    """A score per subject with its survival data, all checked and of one length."""
    score = finite_vector(score, score_name)
    time, event = survival_data(time, event)
    same_length(**{score_name: score, "time": time})
    return score, time, event


def require_events(event: np.ndarray, what: str) -> None:
    """Raise if there is no event: no survival statistic can be estimated then."""
    if not event.any():
        raise InputError("event", f"no event in the data; {what} needs at least one")


def both_classes(outcome: np.ndarray) -> None:
    """Raise unless the binary outcome has cases and controls: an AUC or a calibration needs both."""
    if outcome.all() or not outcome.any():
        raise InputError("outcome", "needs both outcomes (0 and 1) among the subjects")
