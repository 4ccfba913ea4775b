"""Treatment recommendation by cross-stratification (HEROVision, Nature Communications 2025).

Each patient is scored by both survival models, and each score read as predicted 2-year PFS. A
patient is high risk under a treatment when that PFS lies below one threshold common to both
treatments (:meth:`~HEROVisionLib.models.model_set.ModelSet.common_pfs_threshold`: the two models' own
cutoffs on the PFS scale, averaged by training-arm size). Only one absolute scale makes the two
treatments comparable: with each model's own cutoff, "high under the planned, low under the other"
can happen while the other predicts the lower PFS, and switching would be advised towards the worse
treatment. (Each model's own risk group, ``ta_risk_group`` and the report's Kaplan–Meier curves, stays
the paper's prognostic grouping.) Read against the planned treatment, the two groups fall into the
paper's four categories:

============== ====================== ===============================================================
planned → other category               advice
============== ====================== ===============================================================
high → low     ``switch``             the other treatment is likely to serve the patient better
low → low      ``either``             low risk under both: either treatment, a shared decision
high → high    ``both high``          consider a more aggressive sequential treatment, monitor closely
low → high     ``keep``               keep the planned treatment
============== ====================== ===============================================================

Without a planned treatment, discordant groups favour the low-risk treatment (``favours``).

The 2-year PFS come from each package's nomogram (risk score + clinical factors) when the
case's clinical record allows, else from the image risk score alone. How firm the advice is comes
from re-scoring: the images are perturbed as in training (small rotations, scaling, flips, contrast
and gain; :mod:`HEROVisionLib.transforms.augment`) and both models re-scored; with nomograms, each
re-scoring is also drawn within each nomogram's estimation error (the standard error of its
predicted log cumulative hazard: coefficients and baseline, as R's ``survfit.coxph``), which with a
few hundred training patients per arm is the larger of the two.

The re-scorings give what a clinician reads first: the probability of benefit — the share of
re-scorings in which resection gives the longer 2-year PFS, and so the probability that the
treatment not planned serves the patient better — with the PFS difference as the median and 95 %
interval of the same draws, and where the unperturbed estimate lies among them (perturbation pulls
an extreme score towards the cohort, so the point estimate can sit at the edge of its own draws).
The paper's category follows, with the share of re-scorings that keep it (below
:data:`STABLE_SHARE`: borderline), and it is said when the re-scorings disagree with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io.clinical import ARMS, TREATMENTS

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


def risk_groups(pfs_2y: dict[str, float], threshold: float) -> dict[str, str]:
    """``high`` / ``low`` per treatment: predicted 2-year PFS below / at or above the common threshold."""
    if not 0 < threshold < 1:
        raise ValueError(f"the common 2-year PFS threshold must lie in (0, 1), got {threshold!r}")
    return {treatment: "high" if pfs < threshold else "low" for treatment, pfs in pfs_2y.items()}


@dataclass(frozen=True)
class CrossStratification:
    basis: str  # "nomogram" or "image risk score"
    pfs_2y: dict[str, float]  # "TA" / "SR" → predicted 2-year PFS
    threshold: float  # common 2-year PFS threshold

    @property
    def groups(self) -> dict[str, str]:
        return risk_groups(self.pfs_2y, self.threshold)


def cross_stratification(result) -> CrossStratification:
    """Both treatments' 2-year PFS and the common threshold of a prediction: the nomograms' when both
    were computed, else the image scores'."""
    if not {"ta", "sr"} <= set(result.survival):
        raise ValueError(f"{result.case_id}: cross-stratification needs both the TA and the SR prediction")
    if all(result.survival[k].nomogram is not None for k in ARMS):
        return CrossStratification("nomogram", {ARMS[k]: result.survival[k].nomogram.pfs[24] for k in ARMS},
                                   result.nomogram_pfs_2y_threshold)
    return CrossStratification("image risk score", {ARMS[k]: result.survival[k].pfs[24] for k in ARMS},
                               result.pfs_2y_threshold)


def summary_line(result, planned: str | None = None, advice: dict | None = None) -> str:
    """One line for a clinician: both treatments' 2-year PFS against the common threshold, the
    probability of benefit when the advice (``TreatmentAdvice.to_dict``) was computed, the paper's
    category, early recurrence when known, and the guideline stages the clinical record allows."""
    parts = []
    survival = result.survival
    if "ta" in survival and "sr" in survival:
        cross = cross_stratification(result)
        groups = cross.groups
        category = recommend(groups["TA"], groups["SR"], planned)
        basis = ", nomograms" if cross.basis == "nomogram" else ""
        lead = f"{benefit_words(advice['p_sr_better'], planned)}; paper's category: " if advice else ""
        parts.append(f"2-year PFS TA {100 * cross.pfs_2y['TA']:.0f} % ({groups['TA']} risk), SR "
                     f"{100 * cross.pfs_2y['SR']:.0f} % ({groups['SR']} risk; high below "
                     f"{100 * cross.threshold:.0f} %{basis}) — {lead}{category.words}")
    else:
        parts.extend(f"{key.upper()} {s.risk_group} risk" for key, s in survival.items())
    if not math.isnan(result.er_probability_combined):
        parts.append(f"early recurrence after resection {100 * result.er_probability_combined:.0f} %")
    staged = [f"{system} {text}" for system, text in result.staging.items() if not text.startswith("not computable")]
    if staged:
        parts.append("stages " + ", ".join(staged))
    if not result.models_trained:
        parts.append("UNTRAINED placeholder models")
    return "; ".join(parts) or "no prediction"


#: Below this share of re-scorings agreeing on the category, advice is borderline.
STABLE_SHARE = 0.8

#: Draws of the nomograms' estimation error per image perturbation.
MODEL_DRAWS = 16


@dataclass(frozen=True)
class TreatmentAdvice:
    recommendation: Recommendation
    basis: str  # "nomogram" or "image risk score"
    pfs_2y: dict[str, float]  # "TA" / "SR" → predicted 2-year PFS
    threshold_2y: float  # common 2-year PFS threshold: below it, high risk
    difference_2y: float  # PFS(SR) − PFS(TA) at 2 years, unperturbed: > 0 favours resection
    difference_interval: tuple[float, float]  # 95 % over the re-scorings
    stability: float  # share of re-scorings giving the same category
    draws: int  # image perturbations
    model_draws: int = 1  # draws of the nomograms' estimation error per perturbation (1: not drawn)
    planned: str | None = None  # the treatment the advice is read against
    p_sr_better: float = math.nan  # share of re-scorings with the longer 2-year PFS under SR (ties: half)
    difference_median: float = math.nan  # median PFS(SR) − PFS(TA) over the re-scorings
    point_percentile: float = math.nan  # share of the re-scorings' differences below the unperturbed one

    @property
    def borderline(self) -> bool:
        """Perturbed images, or the models' own estimation error, change the advice too often to rely on it."""
        return self.stability < STABLE_SHARE

    @property
    def p_other_better(self) -> float | None:
        """P(the treatment not planned gives the longer 2-year PFS); None without a planned treatment."""
        if self.planned is None:
            return None
        return self.p_sr_better if self.planned == "TA" else 1.0 - self.p_sr_better

    @property
    def draws_disagree(self) -> bool:
        """The re-scorings contradict the paper's category: most of them give another category, or
        the treatment it recommends is the less likely to give the longer PFS."""
        recommended = self.recommendation.treatment
        p_recommended = {"SR": self.p_sr_better, "TA": 1.0 - self.p_sr_better}.get(recommended, math.nan)
        return self.stability < 0.5 or p_recommended < 0.5

    def to_dict(self) -> dict:
        return {"category": self.recommendation.category, "treatment": self.recommendation.treatment,
                "words": self.words, "basis": self.basis, "planned": self.planned, "pfs_2y": self.pfs_2y,
                "threshold_2y": self.threshold_2y, "risk_groups": risk_groups(self.pfs_2y, self.threshold_2y),
                "p_sr_better": self.p_sr_better, "p_other_better": self.p_other_better,
                "difference_2y": self.difference_2y, "difference_median": self.difference_median,
                "difference_interval": list(self.difference_interval), "point_percentile": self.point_percentile,
                "stability": self.stability, "borderline": self.borderline, "draws_disagree": self.draws_disagree,
                "draws": self.draws, "model_draws": self.model_draws}

    @property
    def words(self) -> str:
        """What a clinician weighs, the probability first: how likely the other (or, without a plan,
        resection) is to give the longer 2-year PFS, the PFS difference over the re-scorings with the
        unperturbed estimate placed among them, then the paper's category and whether the
        re-scorings bear it out."""
        sources = f"{self.draws} perturbed images"
        if self.model_draws > 1:
            sources += f" × {self.model_draws} draws of the nomograms' estimation error"
        rescorings = self.draws * self.model_draws
        chance = benefit_words(self.p_sr_better, self.planned)
        low, high = self.difference_interval
        spread = (f"2-year PFS SR − TA {100 * self.difference_median:+.0f} points (median of {rescorings} re-scorings: "
                  f"{sources}; 95 % {100 * low:+.0f} to {100 * high:+.0f}; unperturbed estimate "
                  f"{100 * self.difference_2y:+.0f}, above {100 * self.point_percentile:.0f} % of them)")
        kept = f"the same category in {100 * self.stability:.0f} % of the re-scorings"
        verdict = (f"the re-scorings disagree with it ({kept})" if self.draws_disagree else
                   f"{'borderline' if self.borderline else 'firm'}: {kept}")
        return f"{chance}; {spread}. Paper's category: {self.recommendation.words} — {verdict}"


def benefit_words(p_sr_better: float, planned: str | None) -> str:
    """The probability of benefit in words: of the treatment not planned, or without a plan of SR."""
    if planned is None:
        return f"{100 * p_sr_better:.0f} % probability that SR gives a longer 2-year PFS than TA"
    other = "SR" if planned == "TA" else "TA"
    p_other = p_sr_better if planned == "TA" else 1.0 - p_sr_better
    return f"{100 * p_other:.0f} % probability that {other} gives a longer 2-year PFS than the planned {planned}"


def _with_model_error(pfs_2y: dict[str, float], log_hazard_se: dict[str, float], rng) -> list[dict[str, float]]:
    """``MODEL_DRAWS`` versions of both treatments' 2-year PFS, each model's log cumulative hazard moved by
    its own standard error (the two models are fitted on different patients: independent draws)."""
    shifts = {t: rng.standard_normal(MODEL_DRAWS) * se for t, se in log_hazard_se.items()}
    log_hazard = {t: math.log(-math.log(min(max(p, 1e-12), 1 - 1e-12))) for t, p in pfs_2y.items()}
    return [{t: math.exp(-math.exp(log_hazard[t] + shifts[t][m])) for t in pfs_2y} for m in range(MODEL_DRAWS)]


def _pfs_2y(models, scores: dict[str, np.ndarray], nomograms: bool, clinical: dict) -> dict[str, np.ndarray]:
    """Per treatment the 2-year PFS of each of its re-scored risk scores, through the nomograms or from
    the scores alone."""
    from ..predict.case_prediction import nomogram_survival, survival_from_score

    if nomograms:
        return {key.upper(): nomogram_survival(getattr(models, key), scores[key], clinical) for key in scores}
    return {key.upper(): np.array([survival_from_score(getattr(models, key), float(s))[1][24] for s in scores[key]])
            for key in scores}


def _perturbed(inputs, draws: int, seed: int) -> dict:
    """``draws`` augmented variants of a case's survival inputs, stacked per modality: each
    modality's transforms seeded once, then drawn ``draws`` times (re-seeding every draw cost more
    than the augmentation itself)."""
    import torch

    from ..transforms.augment import augment_survival_batch, modality_augmentation

    transforms = {m: modality_augmentation(m, image.shape[-1]) for m, image in inputs.images.items()}
    for k, transform in enumerate(transforms.values()):
        transform.set_random_state(seed * 7919 + k)
    variants = [augment_survival_batch({m: image[None] for m, image in inputs.images.items()}, transforms)
                for _ in range(draws)]
    return {m: torch.cat([variant[m] for variant in variants]) for m in inputs.images}


def advise(case, result, models, planned: str | None = None, draws: int = 32, seed: int = 0,
           device=None) -> TreatmentAdvice:
    """The recommendation for a predicted case (``result`` of ``predict_case``), with its firmness
    measured by ``draws`` test-time augmentations of the case's images (see module docstring), on
    ``device`` (a name such as ``auto``, or by default the device the prediction ran on)."""
    from ..devices import resolve_device
    from ..predict.case_prediction import clinical_values, nomogram_log_hazard_se, survival_inputs_by_model, survival_scores

    device = resolve_device(result.device if device is None else device)
    cross = cross_stratification(result)
    recommendation = recommend(cross.groups["TA"], cross.groups["SR"], planned)
    nomograms, clinical = cross.basis == "nomogram", clinical_values(result, case)
    inputs = result.survival_inputs or survival_inputs_by_model(case, models)  # a result read back has none
    distinct = {id(built): built for built in inputs.values()}  # one set when the packages share preprocessing
    batches = {key: _perturbed(built, draws, seed) for key, built in distinct.items()}
    drawn = {key: survival_scores(getattr(models, key), inputs[key], device, batches[id(inputs[key])]).numpy()
             for key in ARMS}
    spread = None
    if nomograms:
        spread = {key.upper(): nomogram_log_hazard_se(getattr(models, key), result.survival[key].risk_score, clinical)
                  for key in ARMS}
        spread = None if None in spread.values() else spread  # a package from before they were recorded
    rng = np.random.default_rng(seed)
    categories, differences = [], []
    rescored = _pfs_2y(models, drawn, nomograms, clinical)
    for k in range(draws):
        perturbed = {treatment: float(pfs[k]) for treatment, pfs in rescored.items()}
        for pfs in [perturbed] if spread is None else _with_model_error(perturbed, spread, rng):
            groups = risk_groups(pfs, cross.threshold)
            categories.append(recommend(groups["TA"], groups["SR"], planned).category)
            differences.append(pfs["SR"] - pfs["TA"])
    differences = np.asarray(differences)
    point = cross.pfs_2y["SR"] - cross.pfs_2y["TA"]
    low, median, high = np.percentile(differences, [2.5, 50, 97.5])
    return TreatmentAdvice(recommendation, cross.basis, dict(cross.pfs_2y), cross.threshold, point,
                           (float(low), float(high)), float(np.mean([c == recommendation.category for c in categories])),
                           draws, 1 if spread is None else MODEL_DRAWS, planned,
                           p_sr_better=float(np.mean(differences > 0) + 0.5 * np.mean(differences == 0)),
                           difference_median=float(median), point_percentile=float(np.mean(differences < point)))


def planned_treatment(case) -> str | None:
    """The treatment the case's record says was planned (cohort.csv's ``treatment``), if any."""
    planned = (case.clinical or {}).get("treatment")
    return planned if planned in TREATMENTS else None


def case_advice(case, result, models, draws: int = 32, device=None) -> dict | None:
    """What prediction commands store as ``advice.json``: :func:`advise` against the case's planned
    treatment, as a plain dict; None when a survival model did not run or ``draws`` is 0."""
    check_advice_draws(draws)
    if draws == 0 or not {"ta", "sr"} <= set(result.survival):
        return None
    return advise(case, result, models, planned_treatment(case), draws=draws, device=device).to_dict()


def cohort_advice(models, draws: int = 32, device=None):
    """The ``advice`` of ``predict_cohort``: :func:`case_advice` per case. A negative ``draws`` is
    refused here, before any case runs (the batch would otherwise keep every prediction without advice)."""
    check_advice_draws(draws)
    return lambda case, result: case_advice(case, result, models, draws, device)


def check_advice_draws(draws: int) -> None:
    """Refuse a negative number of advice re-scorings (0 means no advice)."""
    if draws < 0:
        raise InputError("advice draws", f"must be 0 (no advice) or more, got {draws}")
