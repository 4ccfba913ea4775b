"""Treatment recommendation by cross-stratification (HEROVision, Nature Communications 2025).

Each patient is scored by both survival models. Read against the planned treatment, the two risk
groups fall into the paper's four categories:

============== ====================== ===============================================================
planned → other category               advice
============== ====================== ===============================================================
high → low     ``switch``             the other treatment is likely to serve the patient better
low → low      ``either``             low risk under both: either treatment, a shared decision
high → high    ``both high``          consider a more aggressive sequential treatment, monitor closely
low → high     ``keep``               keep the planned treatment
============== ====================== ===============================================================

Without a planned treatment, discordant groups favour the low-risk treatment (``favours``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NAMES = {"TA": "thermal ablation", "SR": "repeat resection"}


@dataclass(frozen=True)
class Recommendation:
    category: str  # switch, either, both high, keep, favours
    treatment: str | None  # the recommended treatment ("TA" / "SR"), None when both are alike
    words: str


def recommend(ta_group: str, sr_group: str, planned: str | None = None) -> Recommendation:
    """The category and advice for the TA and SR risk groups (``high`` / ``low``) of one patient."""
    groups = {"TA": ta_group, "SR": sr_group}
    for treatment, group in groups.items():
        if group not in ("high", "low"):
            raise ValueError(f"{treatment} risk group must be 'high' or 'low', got {group!r}")
    if planned not in (None, "TA", "SR"):
        raise ValueError(f"planned treatment must be TA, SR or None, got {planned!r}")
    if groups["TA"] == groups["SR"] == "low":
        return Recommendation("either", None, "low risk under both treatments: either is reasonable "
                                              "(shared decision)")
    if groups["TA"] == groups["SR"] == "high":
        return Recommendation("both high", None, "high risk under both treatments: consider a more aggressive "
                                                 "sequential treatment and closer monitoring")
    better = "TA" if groups["TA"] == "low" else "SR"
    worse = "SR" if better == "TA" else "TA"
    if planned is None:
        return Recommendation("favours", better, f"{NAMES[better]} favoured: low risk under {better}, "
                                                 f"high risk under {worse}")
    if planned == worse:
        return Recommendation("switch", better, f"high risk under the planned {NAMES[planned]}, low under "
                                                f"{NAMES[better]}: consider switching to {better}")
    return Recommendation("keep", planned, f"low risk under the planned {NAMES[planned]}, high under "
                                           f"{NAMES[worse]}: keep {planned}")


def summary_line(result, planned: str | None = None) -> str:
    """One line for a clinician: both risk groups, the advice, and early recurrence when known."""
    parts = []
    survival = result.survival
    if "ta" in survival and "sr" in survival:
        advice = recommend(survival["ta"].risk_group, survival["sr"].risk_group, planned)
        parts.append(f"TA {survival['ta'].risk_group} risk, SR {survival['sr'].risk_group} risk — {advice.words}")
    else:
        parts.extend(f"{key.upper()} {s.risk_group} risk" for key, s in survival.items())
    if not math.isnan(result.er_probability_combined):
        parts.append(f"early recurrence after resection {100 * result.er_probability_combined:.0f} %")
    if not result.models_trained:
        parts.append("UNTRAINED placeholder models")
    return "; ".join(parts) or "no prediction"
