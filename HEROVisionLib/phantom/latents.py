"""PHANTOM.md §1–2: a patient's latent and clinical variables, and their outcomes.

Draw order is part of the contract (same (seed, i) → same patient under any implementation):
the table of §1 from top to bottom, then the liver parenchyma (D, f, D*), then §2's U, the
treatment draw and the censoring time. Conditional Bernoulli variables (``ctp_b``,
``portal_hypertension``) always consume one uniform draw, whatever the condition, so the stream
does not shift between patients.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ECHO_LEVELS = ("hypo", "iso", "hyper")
WEIBULL_SHAPE = 1.2
WEIBULL_SCALE_MONTHS = 30.0
EARLY_RECURRENCE_MONTHS = 24.0


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def z(x: float, mu: float, sd: float) -> float:
    return (x - mu) / sd


@dataclass(frozen=True)
class Patient:
    """The latent and clinical variables of §1 (diffusion coefficients in mm²/s)."""

    age: int
    sex_male: int
    cirrhosis: int
    ctp_b: int
    portal_hypertension: int
    tumor_number: int
    diameter_cm: float
    margin: float
    heterogeneity: float
    tumor_D: float
    tumor_f: float
    tumor_Dstar: float
    washout: float
    echo: str
    perivascular: int
    subcapsular: int
    afp_high: int
    alt_high: int
    ast_high: int
    inr_high: int
    cea_high: int
    ca19_9_high: int
    pni_low: int
    liver_D: float
    liver_f: float
    liver_Dstar: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """§2: linear predictors, potential PFS times, observed treatment and follow-up."""

    lp_TA: float
    lp_SR: float
    T_TA: float
    T_SR: float
    treatment: str
    censor_months: float
    pfs_months: float
    pfs_event: int
    er_2y: int

    @property
    def best_treatment(self) -> str:
        return "TA" if self.lp_TA < self.lp_SR else "SR"


def _bernoulli(rng: np.random.Generator, p: float) -> int:
    return int(rng.random() < p)


@dataclass(frozen=True)
class StagingFields:
    """§6 (spec v1.1): what the guideline staging systems need beyond §1; no hazard reads them."""

    ecog: int
    child_pugh_score: int
    vascular_invasion: int = 0  # within Milan criteria: no macrovascular invasion
    extrahepatic_spread: int = 0


def draw_staging_fields(rng: np.random.Generator, patient: Patient) -> StagingFields:
    """§6 from the case's own generator (``[seed, i, 11]``), in table order; each field takes one
    draw whatever the branch, so the stream never shifts."""
    ecog = int(rng.choice(3, p=[0.85, 0.12, 0.03]))
    if patient.ctp_b:
        child_pugh_score = int(rng.choice([7, 8, 9], p=[0.5, 0.3, 0.2]))
    else:
        child_pugh_score = 5 if rng.random() < (0.55 if patient.cirrhosis else 0.70) else 6
    return StagingFields(ecog, child_pugh_score)


def draw_patient(rng: np.random.Generator) -> Patient:
    """§1, in table order."""
    age = int(round(float(np.clip(rng.normal(57.0, 10.0), 30.0, 85.0))))
    sex_male = _bernoulli(rng, 0.83)
    cirrhosis = _bernoulli(rng, 0.80)
    ctp_b = _bernoulli(rng, 0.10) * cirrhosis
    portal_hypertension = _bernoulli(rng, 0.40 if cirrhosis else 0.10)
    tumor_number = int(rng.choice([1, 2, 3], p=[0.80, 0.16, 0.04]))
    diameter_cm = float(np.clip(rng.lognormal(math.log(2.3), 0.35), 1.0, 5.0))
    margin = float(rng.beta(2.0, 3.0))
    heterogeneity = float(rng.beta(2.0, 3.0))
    tumor_D = float(np.clip(rng.normal(1.00e-3 - 0.25e-3 * heterogeneity, 0.12e-3), 0.5e-3, 1.5e-3))
    tumor_f = float(np.clip(rng.normal(0.14, 0.04), 0.03, 0.30))
    tumor_Dstar = float(np.clip(rng.normal(40e-3, 12e-3), 10e-3, 100e-3))
    washout = float(rng.beta(2.0, 2.0))
    echo = ECHO_LEVELS[int(rng.choice(3, p=[0.70, 0.12, 0.18]))]
    perivascular = _bernoulli(rng, 0.18)
    subcapsular = _bernoulli(rng, 0.35)
    afp_high = _bernoulli(rng, sigmoid(-2.0 + 1.5 * heterogeneity))
    alt_high = _bernoulli(rng, 0.15)
    ast_high = _bernoulli(rng, 0.13)
    inr_high = _bernoulli(rng, 0.25 + 0.15 * cirrhosis)
    cea_high = _bernoulli(rng, 0.13)
    ca19_9_high = _bernoulli(rng, 0.06)
    pni_low = _bernoulli(rng, 0.50)
    liver_D = (0.95e-3 if cirrhosis else 1.10e-3) * float(rng.normal(1.0, 0.05))
    liver_f = (0.20 if cirrhosis else 0.25) * float(rng.normal(1.0, 0.05))
    liver_Dstar = 60e-3 * float(rng.normal(1.0, 0.05))
    return Patient(age, sex_male, cirrhosis, ctp_b, portal_hypertension, tumor_number, diameter_cm, margin,
                   heterogeneity, tumor_D, tumor_f, tumor_Dstar, washout, echo, perivascular, subcapsular,
                   afp_high, alt_high, ast_high, inr_high, cea_high, ca19_9_high, pni_low,
                   liver_D, liver_f, liver_Dstar)


def linear_predictors(p: Patient) -> tuple[float, float]:
    """(lp_TA, lp_SR): the log relative hazards of §2."""
    zsize = z(p.diameter_cm, 2.3, 0.9)
    zD = z(p.tumor_D, 1.0e-3, 0.15e-3)
    common = (0.50 * zsize + 0.60 * p.margin + 0.50 * p.heterogeneity - 0.40 * zD + 0.30 * p.washout
              + 0.30 * p.afp_high + 0.25 * p.inr_high + 0.20 * p.ca19_9_high + 0.20 * (p.tumor_number - 1))
    lp_TA = common + 0.60 * max(0.0, p.diameter_cm - 3.0) + 0.40 * p.perivascular + 0.30 * p.margin - 2.0
    lp_SR = common + 0.50 * p.portal_hypertension + 0.40 * p.ctp_b + 0.20 * p.cirrhosis - 2.0
    return lp_TA, lp_SR


def draw_outcome(p: Patient, rng: np.random.Generator) -> Outcome:
    """§2: one U shared by both treatments, then the treatment, then censoring."""
    lp_TA, lp_SR = linear_predictors(p)
    u = float(rng.random())
    while u == 0.0:  # -ln(0) is infinite; numpy's random() can return exactly 0
        u = float(rng.random())
    times = {arm: WEIBULL_SCALE_MONTHS * (-math.log(u) / math.exp(lp)) ** (1.0 / WEIBULL_SHAPE)
             for arm, lp in (("TA", lp_TA), ("SR", lp_SR))}
    zsize = z(p.diameter_cm, 2.3, 0.9)
    p_sr = sigmoid(-0.3 + 0.8 * zsize - 0.8 * p.portal_hypertension - 0.8 * p.ctp_b - 0.3 * p.cirrhosis)
    treatment = "SR" if rng.random() < p_sr else "TA"
    censor = float(rng.uniform(12.0, 72.0))
    observed = times[treatment]
    return Outcome(lp_TA, lp_SR, times["TA"], times["SR"], treatment, censor,
                   pfs_months=min(observed, censor), pfs_event=int(observed <= censor),
                   er_2y=int(times["SR"] <= EARLY_RECURRENCE_MONTHS))
