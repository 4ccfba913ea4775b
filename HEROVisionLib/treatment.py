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

Groups and 2-year PFS come from each package's nomogram (risk score + clinical factors) when the
case's clinical record allows, else from the image risk score alone. How firm the advice is comes
from test-time augmentation: the images are perturbed as in training (small rotations, scaling,
flips, contrast and gain; :mod:`HEROVisionLib.train.augment`), both models re-scored, and the share
of perturbations that keep the category, with the 95 % interval of the PFS difference, says whether
the case is borderline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
    """One line for a clinician: both risk groups (the nomograms' when both apply, as :func:`advise`
    uses), the advice, and early recurrence when known."""
    parts = []
    survival = result.survival
    if "ta" in survival and "sr" in survival:
        nomograms = all(survival[k].nomogram is not None for k in ("ta", "sr"))
        ta, sr = ((survival[k].nomogram or survival[k]).risk_group if nomograms else survival[k].risk_group
                  for k in ("ta", "sr"))
        advice = recommend(ta, sr, planned)
        basis = " (nomograms)" if nomograms else ""
        parts.append(f"TA {ta} risk, SR {sr} risk{basis} — {advice.words}")
    else:
        parts.extend(f"{key.upper()} {s.risk_group} risk" for key, s in survival.items())
    if not math.isnan(result.er_probability_combined):
        parts.append(f"early recurrence after resection {100 * result.er_probability_combined:.0f} %")
    if not result.models_trained:
        parts.append("UNTRAINED placeholder models")
    return "; ".join(parts) or "no prediction"


#: Below this share of test-time augmentations agreeing on the category, advice is borderline.
STABLE_SHARE = 0.8


@dataclass(frozen=True)
class TreatmentAdvice:
    recommendation: Recommendation
    basis: str  # "nomogram" or "image risk score"
    pfs_2y: dict[str, float]  # "TA" / "SR" → predicted 2-year PFS
    difference_2y: float  # PFS(SR) − PFS(TA) at 2 years: > 0 favours resection
    difference_interval: tuple[float, float]  # 95 % over test-time augmentations
    stability: float  # share of augmentations giving the same category
    draws: int

    @property
    def borderline(self) -> bool:
        """Small perturbations of the images change the advice too often to rely on it."""
        return self.stability < STABLE_SHARE

    def to_dict(self) -> dict:
        return {"category": self.recommendation.category, "treatment": self.recommendation.treatment,
                "words": self.words, "basis": self.basis, "pfs_2y": self.pfs_2y, "difference_2y": self.difference_2y,
                "difference_interval": list(self.difference_interval), "stability": self.stability,
                "borderline": self.borderline, "draws": self.draws}

    @property
    def words(self) -> str:
        text = self.recommendation.words
        if self.borderline:
            text += (f" — borderline: the same advice in {100 * self.stability:.0f} % of {self.draws} perturbed "
                     f"re-scorings; 2-year PFS difference SR − TA {100 * self.difference_2y:+.0f} points "
                     f"(95 % {100 * self.difference_interval[0]:+.0f} to {100 * self.difference_interval[1]:+.0f})")
        return text


def _groups_and_pfs(models, scores: dict[str, float], clinical: dict | None):
    """Per treatment (risk group, 2-year PFS), from both nomograms when both apply, else the scores."""
    from .predict.case import nomogram_result, survival_from_score
    from .predict.result import NomogramResult

    outcomes = {key: nomogram_result(getattr(models, key), scores[key], clinical) if clinical is not None else None
                for key in ("ta", "sr")}
    if all(isinstance(o, NomogramResult) for o in outcomes.values()):
        return "nomogram", {k.upper(): (o.risk_group, o.pfs[24]) for k, o in outcomes.items()}
    plain = {key: survival_from_score(getattr(models, key), scores[key]) for key in ("ta", "sr")}
    return "image risk score", {k.upper(): (group, pfs[24]) for k, (group, pfs) in plain.items()}


def advise(case, result, models, planned: str | None = None, draws: int = 32, seed: int = 0,
           device="cpu") -> TreatmentAdvice:
    """The recommendation for a predicted case (``result`` of ``predict_case``), with its firmness
    measured by ``draws`` test-time augmentations of the case's images (see module docstring)."""
    import torch

    from .predict.case import clinical_values, survival_scores
    from .predict.inputs import survival_inputs
    from .train.augment import augment_survival_batch, modality_augmentation

    if not {"ta", "sr"} <= set(result.survival):
        raise ValueError(f"{result.case_id}: a recommendation needs both the TA and the SR prediction")
    clinical = clinical_values(result, case)
    scores = {key: result.survival[key].risk_score for key in ("ta", "sr")}
    basis, outcome = _groups_and_pfs(models, scores, clinical)
    recommendation = recommend(outcome["TA"][0], outcome["SR"][0], planned)
    inputs = survival_inputs(case, models.ta.herovision["preprocessing"]["image_size"])
    transforms = {m: modality_augmentation(m) for m in inputs.images}
    variants = []
    for draw in range(draws):
        for k, transform in enumerate(transforms.values()):
            transform.set_random_state(seed * 7919 + draw * 31 + k)
        variants.append(augment_survival_batch({m: image[None] for m, image in inputs.images.items()}, transforms))
    batch = {m: torch.cat([variant[m] for variant in variants]) for m in inputs.images}
    drawn = {key: survival_scores(getattr(models, key), inputs, device, batch).numpy() for key in ("ta", "sr")}
    categories, differences = [], []
    for k in range(draws):
        _, perturbed = _groups_and_pfs(models, {key: float(drawn[key][k]) for key in drawn},
                                       clinical if basis == "nomogram" else None)
        categories.append(recommend(perturbed["TA"][0], perturbed["SR"][0], planned).category)
        differences.append(perturbed["SR"][1] - perturbed["TA"][1])
    low, high = np.percentile(differences, [2.5, 97.5])
    return TreatmentAdvice(recommendation, basis, {t: outcome[t][1] for t in ("TA", "SR")},
                           outcome["SR"][1] - outcome["TA"][1], (float(low), float(high)),
                           float(np.mean([c == recommendation.category for c in categories])), draws)
