"""What prediction returns for one case, and its flat table row.

``results.csv`` columns (one row per case, keyed by ``case_id``; names say model and quantity):

========================== ==================================================================
``case_id``, ``status``    ``ok`` or ``error``; ``error`` holds the message of a failed case
``ta_risk_score``          HEROVision-TA Cox log-hazard (thermal ablation); ``sr_…`` for resection
``ta_risk_group``          ``high`` above the package's cutoff, else ``low``
``ta_pfs_1y/2y/3y``        PFS probability at 12/24/36 months, exp(−H₀(t)·e^score) (Breslow H₀)
``ta_nomogram_points``     total nomogram points (risk score + clinical factors), when the package
                           has a nomogram and the case's clinical values are known; with
``ta_nomogram_risk_group`` and ``ta_nomogram_pfs_1y/2y/3y`` as above, from the nomogram's Cox model
``pfs_2y_threshold``       cross-stratification: predicted 2-year PFS below which a patient is high
                           risk under either treatment (``ModelSet.common_pfs_threshold``);
``nomogram_pfs_2y_threshold`` the same for the nomograms' PFS, when both were computed
``er_probability``         early recurrence ≤ 2 years after resection, deep-feature model
``er_probability_combined`` … with tumour size and tumour D
``tumor_size_cm``          largest axial diameter of ROI label 1 (T2WI, else IVIM)
``tumor_volume_ml``        volume of ROI label 1 (same image)
``ivim_{ADC,D,Dstar,f}_median`` tumour (label 1) medians of the parametric maps
``inputs_used``            modalities read, ``;``-separated; ``inputs_missing`` with reasons
``models_trained``         False while placeholder (untrained) models are in use
``device``, ``seconds``    where and how long
``advice_category``        the treatment advice against the planned treatment (cohort.csv's
                           ``treatment``), when both survival models ran: ``switch``, ``either``,
                           ``both high``, ``keep`` (or ``favours`` without a planned treatment), with
``advice_treatment``, ``advice_difference_2y`` (PFS SR − TA), its 95 % interval
``advice_difference_low/high``, ``advice_stability`` (share of re-scorings keeping the category) and
``advice_borderline``; the same as ``advice.json``
========================== ==================================================================
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

import SimpleITK as sitk

from ..io.clinical import ARMS

RESULT_COLUMNS = ("case_id", "status", "error",
                  "ta_risk_score", "ta_risk_group", "ta_pfs_1y", "ta_pfs_2y", "ta_pfs_3y",
                  "ta_nomogram_points", "ta_nomogram_risk_group", "ta_nomogram_pfs_1y", "ta_nomogram_pfs_2y",
                  "ta_nomogram_pfs_3y",
                  "sr_risk_score", "sr_risk_group", "sr_pfs_1y", "sr_pfs_2y", "sr_pfs_3y",
                  "sr_nomogram_points", "sr_nomogram_risk_group", "sr_nomogram_pfs_1y", "sr_nomogram_pfs_2y",
                  "sr_nomogram_pfs_3y", "pfs_2y_threshold", "nomogram_pfs_2y_threshold",
                  "er_probability", "er_probability_combined", "tumor_size_cm", "tumor_volume_ml",
                  "ivim_ADC_median", "ivim_D_median", "ivim_Dstar_median", "ivim_f_median",
                  "inputs_used", "inputs_missing", "out_of_distribution", "models_trained", "device", "seconds")
ADVICE_COLUMNS = ("advice_category", "advice_treatment", "advice_p_sr_better", "advice_p_other_better",
                  "advice_difference_2y", "advice_difference_median", "advice_difference_low",
                  "advice_difference_high", "advice_stability", "advice_borderline", "advice_draws_disagree")


@dataclass
class NomogramResult:
    points: dict[str, float]  # covariate → points
    total_points: float
    risk_group: str
    pfs: dict[int, float]  # months → probability


@dataclass
class SurvivalResult:
    model: str
    risk_score: float
    risk_group: str
    pfs: dict[int, float]  # months → probability
    modalities_used: tuple[str, ...]
    nomogram: NomogramResult | None = None


@dataclass
class PredictionResult:
    case_id: str
    survival: dict[str, SurvivalResult] = field(default_factory=dict)  # "ta", "sr"
    pfs_2y_threshold: float = math.nan  # cross-stratification's common threshold, image scores
    nomogram_pfs_2y_threshold: float = math.nan  # … and nomograms
    er_probability: float = math.nan
    er_probability_combined: float = math.nan
    tumor_size_cm: float = math.nan
    tumor_volume_ml: float = math.nan
    ivim_medians: dict[str, float] = field(default_factory=dict)
    ivim_statistics: list[dict] = field(default_factory=list)
    inputs_used: tuple[str, ...] = ()
    inputs_missing: dict[str, str] = field(default_factory=dict)
    out_of_distribution: list[str] = field(default_factory=list)  # measures outside the training acquisitions
    staging: dict[str, str] = field(default_factory=dict)  # system → the patient's stage, as text
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    model_versions: dict[str, str] = field(default_factory=dict)
    case_folder: str = ""  # where the case's images were read (reports draw them); "" for in-memory cases
    models_trained: bool = False
    overlays: dict[str, sitk.Image] = field(default_factory=dict, repr=False)  # file stem → image
    maps: dict[str, sitk.Image] = field(default_factory=dict, repr=False)
    # Each survival model's network inputs ("ta", "sr"), kept for the advice's re-scorings; not saved.
    survival_inputs: dict = field(default_factory=dict, repr=False)

    def row(self) -> dict:
        row = {"case_id": self.case_id, "status": "ok", "error": ""}
        for key in ARMS:
            result = self.survival.get(key)
            row[f"{key}_risk_score"] = result.risk_score if result else math.nan
            row[f"{key}_risk_group"] = result.risk_group if result else ""
            for years in (1, 2, 3):
                row[f"{key}_pfs_{years}y"] = result.pfs[12 * years] if result else math.nan
            nomogram = result.nomogram if result else None
            row[f"{key}_nomogram_points"] = nomogram.total_points if nomogram else math.nan
            row[f"{key}_nomogram_risk_group"] = nomogram.risk_group if nomogram else ""
            for years in (1, 2, 3):
                row[f"{key}_nomogram_pfs_{years}y"] = nomogram.pfs[12 * years] if nomogram else math.nan
        row.update(pfs_2y_threshold=self.pfs_2y_threshold, nomogram_pfs_2y_threshold=self.nomogram_pfs_2y_threshold)
        row.update(er_probability=self.er_probability, er_probability_combined=self.er_probability_combined,
                   tumor_size_cm=self.tumor_size_cm, tumor_volume_ml=self.tumor_volume_ml)
        for name in ("ADC", "D", "Dstar", "f"):
            row[f"ivim_{name}_median"] = self.ivim_medians.get(name, math.nan)
        row.update(inputs_used=";".join(self.inputs_used),
                   inputs_missing="; ".join(f"{k}: {v}" for k, v in self.inputs_missing.items()),
                   out_of_distribution="; ".join(self.out_of_distribution),
                   models_trained=self.models_trained, device=self.device,
                   seconds=round(sum(self.timings.values()), 3))
        return {column: row[column] for column in RESULT_COLUMNS}

    def to_record(self) -> dict:
        """The result as plain data (what ``results.json`` holds, and what a report is drawn from):
        images by name only, keys as text, numbers as floats."""
        data = asdict(replace(self, overlays={}, maps={}, survival_inputs={}))  # images are files, not JSON
        data.pop("survival_inputs")
        data["overlays"], data["maps"] = sorted(self.overlays), sorted(self.maps)
        return _plain(data)

    def to_json(self) -> str:
        return json.dumps(self.to_record(), indent=2, allow_nan=True)


def _plain(value):
    """``value`` with every mapping keyed by text and every number a float or int, as JSON reads back."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return float(value) if hasattr(value, "__float__") else str(value)


def advice_row(advice: dict | None) -> dict:
    """The ``advice_…`` columns of a ``TreatmentAdvice.to_dict()`` (empty without advice)."""
    if advice is None:
        return {column: "" for column in ADVICE_COLUMNS}
    low, high = advice["difference_interval"]
    other = advice["p_other_better"]
    return {"advice_category": advice["category"], "advice_treatment": advice["treatment"] or "",
            "advice_p_sr_better": advice["p_sr_better"], "advice_p_other_better": "" if other is None else other,
            "advice_difference_2y": advice["difference_2y"], "advice_difference_median": advice["difference_median"],
            "advice_difference_low": low, "advice_difference_high": high, "advice_stability": advice["stability"],
            "advice_borderline": advice["borderline"], "advice_draws_disagree": advice["draws_disagree"]}


def error_row(case_id: str, message: str) -> dict:
    row = {column: "" for column in RESULT_COLUMNS + ADVICE_COLUMNS}
    row.update(case_id=case_id, status="error", error=message)
    return row
