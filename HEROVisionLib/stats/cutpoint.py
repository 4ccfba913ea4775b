"""The high/low risk cutoff of a score, chosen exactly as R's ``survminer::surv_cutpoint`` chooses it.

Published HCC nomograms split patients at the cutpoint of ``surv_cutpoint(minprop = 0.1)``, which is
``maxstat::maxstat.test(Surv(time, event) ~ score, smethod = "LogRank", pmethod = "none",
minprop = 0.1, maxprop = 0.9)``. No Python library reproduces it, so it is written here, step by step
as maxstat does it, and checked against R:

1. The survival times become log-rank scores (``exactRankTests::cscores.Surv``):
   aᵢ = δᵢ − Σ_{groups g of tied times, t_g ≤ tᵢ} d_g / (N − r_g + 1), where r_g is the largest rank
   of group g (maxstat's own tie convention, kept as is).
2. For each distinct score value c with at least ``floor(N·minprop)`` (and at least one) subjects
   below it and at most ``floor(N·maxprop)``, the sum S of log-rank scores of the subjects with
   score < c is standardised: |S − E| / √V with E = m/N·Σa and V = m(N − m)/(N²(N − 1))·(N·Σa² − (Σa)²),
   m the number of such subjects.
3. The cutpoint is the largest score value below the c with the largest statistic (the first such c):
   "high" means score > cutpoint.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from .checks import require_events, scored_survival_data, survival_data


class Cutpoint(NamedTuple):
    """The estimated cutpoint (a value of the score; high risk = score > value) and its maximally selected
    standardised log-rank statistic."""

    value: float
    statistic: float

    def __float__(self) -> float:
        """``float(optimal_cutpoint(...))`` is the cutoff itself."""
        return self.value


def logrank_scores(time, event) -> np.ndarray:
    """Log-rank scores of right-censored survival times, as ``exactRankTests::cscores.Surv`` computes them."""
    time, event = survival_data(time, event)
    n = len(time)
    sorted_time = np.sort(time, kind="stable")
    largest_rank = np.searchsorted(sorted_time, time, side="right")  # 1-based rank of the last tie
    increments = event / (n - largest_rank + 1)
    cumulative = np.cumsum(increments[np.argsort(time, kind="stable")])
    return event - cumulative[largest_rank - 1]


def optimal_cutpoint(score, time, event, min_proportion: float = 0.1) -> Cutpoint:
    """The cutpoint of ``score`` that maximises the standardised log-rank statistic, each group keeping at
    least ``min_proportion`` of the subjects (survminer's ``minprop``; maxprop = 1 − minprop)."""
    score, time, event = scored_survival_data(score, time, event)
    require_events(event, "a cutpoint")
    if not 0 < min_proportion < 0.5:
        raise InputError("min_proportion", f"must lie in (0, 0.5), not {min_proportion}")
    n = len(score)
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    ranked = logrank_scores(time, event)[order]

    # Candidate splits: before each new distinct value, m subjects lie strictly below it.
    below = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    below = below[(below >= max(1, math.floor(n * min_proportion))) & (below <= math.floor(n * (1 - min_proportion)))]
    if below.size == 0:
        raise InputError("risk score", f"no cutpoint leaves {min_proportion:.0%} of the subjects in each group")

    total = ranked.sum()
    expected = below / n * total
    variance = below * (n - below) / (n**2 * (n - 1)) * (n * np.sum(ranked**2) - total**2)
    if not (variance > 0).all():
        raise InputError("time", "the log-rank scores do not vary, so no cutpoint can be tested")
    statistics = np.abs((np.cumsum(ranked)[below - 1] - expected) / np.sqrt(variance))
    best = int(np.argmax(statistics))
    return Cutpoint(value=float(sorted_score[below[best] - 1]), statistic=float(statistics[best]))
