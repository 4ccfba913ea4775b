"""One case in, one :class:`PredictionResult` out: every model, its attention maps on the source
grids, and the IVIM maps of the tumour VOI.

Nothing is fatal but a case with no usable input at all: a modality that is missing or unusable is
reported and the survival models run on the others (they were trained with modality drop-out); a
case without IVIM gets no early-recurrence probability, with a warning saying why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from ..errors import HEROVisionError, InputError
from ..io.case import Case
from ..io.clinical import ARMS
from ..staging import stage_patient
from ..io.measure import largest_axial_diameter_cm, volume_ml
from ..devices import cpu_threads, resolve_device
from ..models.ivim_net import ensemble_gradcam, ensemble_probabilities, heads_of, networks_of
from ..models.nomogram import Nomogram
from ..transforms.ivim_crops import IVIMInputsAhead, ivim_inputs
from ..transforms.network_inputs import survival_inputs
from .acquisition import ivim_measures, outside_ranges, survival_measures
from ..models.model_set import HORIZONS_MONTHS, ModelSet, survival_probability, survival_risk_scores
from ..transforms.overlays import overlay_on_source
from .result import NomogramResult, PredictionResult, SurvivalResult


#: The stages of a prediction, in order, with the share of a typical case's time each takes.
STAGES = {"survival inputs": 0.15, "survival models": 0.45, "IVIM": 0.40}


def _stage_timer(timings: dict, progress):
    """``with stage(name):`` times a stage; ``progress(name, fraction done before it)`` is told first
    (a caller that wants to stop the prediction raises from it, e.g. :class:`~HEROVisionLib.errors.Cancelled`)."""
    names = list(STAGES)

    @contextmanager
    def stage(name: str):
        if progress is not None:
            progress(name, sum(STAGES[n] for n in names[:names.index(name)]))
        start = time.perf_counter()
        yield
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start

    return stage


def predict_case(case: Case, models: ModelSet, device="auto", overlays: bool = True,
                 progress: Callable[[str, float], None] | None = None,
                 ivim_ahead: IVIMInputsAhead | None = None) -> PredictionResult:
    """Run every model on ``case`` (see module docstring); ``progress(stage, fraction)`` is called
    as each of :data:`STAGES` begins. ``ivim_ahead``: the case's IVIM inputs, started in another
    process before torch was loaded (the command line's ``predict``)."""
    device = resolve_device(device)
    result = PredictionResult(case.case_id, device=str(device), model_versions=models.versions(),
                              case_folder=str(case.folder.resolve()) if isinstance(case, Case) else "",
                              models_trained=models.trained)
    if not models.trained:
        result.warnings.append("untrained placeholder models: the numbers are meaningless")
    elif models.synthetic:
        result.warnings.append("demonstration models trained on synthetic phantom data: not for clinical use")
    stage = _stage_timer(result.timings, progress)
    settings = models.er.herovision["preprocessing"]
    ivim_source = (nullcontext(lambda: ivim_ahead.inputs(case, settings, device)) if ivim_ahead is not None
                   else _beside(ivim_inputs, case, settings, device))
    with ivim_source as built_ivim_inputs:
        with stage("survival inputs"):
            result.survival_inputs = survival_inputs_by_model(case, models)
        inputs = result.survival_inputs["ta"]
        result.inputs_missing = dict(inputs.missing)
        with stage("survival models"):
            if any(inputs.present.values()):
                for key in ARMS:
                    _survival(result, key, getattr(models, key), result.survival_inputs[key], device, overlays)
            else:
                result.warnings.append("no T2WI, DWI, US or CEUS image usable: no PFS prediction")
        with stage("IVIM"):
            ivim = _early_recurrence(result, models, device, overlays, built_ivim_inputs)
    result.inputs_used = tuple(m for m in ("ivim", *inputs.present) if m not in result.inputs_missing)
    if not result.inputs_used:
        raise InputError(case.folder, "no usable image: " + "; ".join(f"{k}: {v}" for k, v in result.inputs_missing.items()))
    for modality, reason in result.inputs_missing.items():
        result.warnings.append(f"{modality} not used: {reason}")
    _tumour_measures(result, case, inputs, ivim)
    _acquisition_check(result, models, ivim)
    for key, survival in result.survival.items():
        _nomogram(result, survival, getattr(models, key), case)
    result.staging = {system: stage.text for system, stage in stage_patient(clinical_values(result, case)).items()}
    if {"ta", "sr"} <= set(result.survival):
        result.pfs_2y_threshold = models.common_pfs_threshold(nomogram=False)
        if all(result.survival[key].nomogram is not None for key in ARMS):
            result.nomogram_pfs_2y_threshold = models.common_pfs_threshold(nomogram=True)
    return result


def _acquisition_check(result, models: ModelSet, ivim) -> None:
    """Name every measure of the case outside the acquisitions its models were trained on (packages
    that recorded them); the models have run all the same."""
    found = []
    for key in ARMS:
        ranges = getattr(models, key).herovision.get("acquisition_ranges")
        if ranges and key in result.survival:
            found += outside_ranges(survival_measures(result.survival_inputs[key]), ranges)
    ranges = models.er.herovision.get("acquisition_ranges")
    if ranges and ivim is not None:
        found += outside_ranges(ivim_measures(ivim), ranges)
    result.out_of_distribution = list(dict.fromkeys(found))  # TA and SR share most measures
    result.warnings += [f"outside the models' training acquisitions — {line}" for line in result.out_of_distribution]


def survival_inputs_by_model(case, models: ModelSet) -> dict:
    """Each survival package's inputs, made with its own recorded preprocessing (built once when the
    packages share it)."""
    built, by_model = {}, {}
    for key in ARMS:
        block = getattr(models, key).herovision["preprocessing"]
        signature = json.dumps(block, sort_keys=True)
        if signature not in built:
            built[signature] = survival_inputs(case, block)
        by_model[key] = built[signature]
    return by_model


def survival_scores(package, inputs, device, batch=None, with_attention: bool = False):
    """Risk scores of one survival package for the case's images, or for ``batch`` — a
    ``{modality: (N, k, H, W)}`` stack of variants of them (test-time augmentation); ``with_attention``
    adds the attention maps of the same pass (see :func:`survival_risk_scores`)."""
    network = package.network_on(device)
    images = batch or {m: inputs.images[m][None] for m in network.modalities}
    n = next(iter(images.values())).shape[0]
    present = torch.tensor([[inputs.present[m] for m in network.modalities]] * n)
    return survival_risk_scores(network, images, present, device, with_attention)


def survival_from_score(package, risk: float) -> tuple[str, dict[int, float]]:
    """Risk group (by the package's cutoff) and PFS at 12/24/36 months (Breslow baseline) of a score."""
    block = package.herovision
    hazards = [block["baseline_cumulative_hazard"][str(months)] for months in HORIZONS_MONTHS]
    pfs = dict(zip(HORIZONS_MONTHS, map(float, survival_probability(risk, hazards)[0])))
    return ("high" if risk > block["risk_cutoff"] else "low"), pfs


def _survival(result, key, package, inputs, device, with_overlays):
    if with_overlays:
        scores, attention = survival_scores(package, inputs, device, with_attention=True)
    else:
        scores = survival_scores(package, inputs, device)
    risk = float(scores[0])
    group, pfs = survival_from_score(package, risk)
    used = tuple(m for m in package.network.modalities if inputs.present[m])
    result.survival[key] = SurvivalResult(package.name, risk, group, pfs, used)
    for modality in used if with_overlays else ():
        maps = attention[modality][0].cpu().numpy()
        result.overlays[f"attention_{key}_{modality}"] = overlay_on_source(
            maps, inputs.crops[modality], inputs.sources[modality])


@contextmanager
def _beside(function, *arguments):
    """Start ``function(*arguments)`` on a thread of its own while the caller goes on, when this
    process may use more than one core; yields a call that waits for its result (or raises its
    error). The IVIM inputs — reading the series, fitting the maps, cropping — are mostly work that
    releases the GIL, so they run beside the survival models, which keep one core busy with Python.
    With one core (a shard beside others) the function runs when its result is asked for."""
    if cpu_threads() < 2:
        yield lambda: function(*arguments)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="herovision-inputs") as pool:
        yield pool.submit(function, *arguments).result


def _early_recurrence(result, models, device, with_overlays, built_ivim_inputs: Callable):
    """The IVIM maps, statistics and early-recurrence probabilities from the case's IVIM inputs
    (``built_ivim_inputs()``); returns them (or None)."""
    if "ivim" in result.inputs_missing:
        result.warnings.append("no IVIM series: no early-recurrence probability")
        return None
    package = models.er
    try:
        ivim = built_ivim_inputs()
    except HEROVisionError as error:
        result.inputs_missing["ivim"] = str(error)
        result.warnings.append("IVIM unusable: no early-recurrence probability")
        return None
    result.maps = {f"ivim_{name}": image for name, image in ivim.source_maps.items()}
    tumour = ivim.statistics[ivim.statistics["label"] == 1].set_index("parameter")
    result.ivim_medians = {name: float(tumour.loc[name, "median"]) for name in ("ADC", "D", "Dstar", "f")}
    result.ivim_statistics = ivim.statistics.to_dict(orient="records")
    heads, networks = heads_of(package.herovision["early_recurrence"]), networks_of(package.network_on(device))
    bvalues, maps = (torch.from_numpy(crop)[None].to(device) for crop in (ivim.bvalues, ivim.maps))
    with torch.no_grad():
        tokens = [network.tokens(bvalues, maps) for network in networks]
        features = [network.fuse(*network_tokens) for network, network_tokens in zip(networks, tokens)]
    deep, combined = ensemble_probabilities(heads, features, ivim.tumor_size_cm, ivim.tumor_d)
    result.er_probability, result.er_probability_combined = float(deep[0]), float(combined[0])
    if with_overlays:  # Grad-CAM explains the predicted class: recurrence, or no recurrence
        sign = 1.0 if result.er_probability >= 0.5 else -1.0
        bvalue_cam, map_cam = ensemble_gradcam(networks, heads, tokens, sign)
        for name, cam in (("bvalues", bvalue_cam), ("maps", map_cam)):
            result.overlays[f"attention_er_{name}"] = overlay_on_source([cam[0].cpu().numpy()], [ivim.crop], ivim.source)
    return ivim


def clinical_values(result, case) -> dict:
    """The case's clinical record for the nomograms; tumour size measured on the images when the
    record lacks it."""
    return {"tumor_size_cm": result.tumor_size_cm, **(case.clinical or {})}


def nomogram_result(package, risk_score: float, clinical: dict) -> NomogramResult | list[str] | None:
    """The package's nomogram for a risk score and a clinical record: the result, the names of the
    clinical values it lacks, or None when the package has no nomogram."""
    block = package.herovision.get("nomogram")
    if not block or "unavailable" in block:
        return None
    nomogram = Nomogram.from_dict(block)
    row = nomogram.patient_row(risk_score, clinical)
    if isinstance(row, list):
        return row
    points = nomogram.points(row).iloc[0]
    total = float(points["total"])
    linear_predictor = float(nomogram.linear_predictor(total))
    return NomogramResult({name: float(points[name]) for name in nomogram.covariates}, total,
                          "high" if linear_predictor > block["risk_cutoff"] else "low",
                          {int(months): float(p) for months, p in nomogram.survival([total]).iloc[0].items()})


def nomogram_survival(package, risk_scores, clinical: dict, months: int = 24) -> np.ndarray:
    """The nomogram's survival at ``months`` of one clinical record under each of several risk scores
    (re-scorings of the same patient), in one pass."""
    nomogram = Nomogram.from_dict(package.herovision["nomogram"])
    scores = np.atleast_1d(np.asarray(risk_scores, dtype=np.float64))
    row = nomogram.patient_row(float(scores[0]), clinical)
    if isinstance(row, list):
        raise InputError("clinical", f"{package.name} nomogram: value(s) {', '.join(row)} unknown")
    frame = row.loc[row.index.repeat(len(scores))].reset_index(drop=True)
    if "risk_score" in frame:
        frame["risk_score"] = scores
    return nomogram.survival(nomogram.points(frame)["total"])[float(months)].to_numpy()


def nomogram_log_hazard_se(package, risk_score: float, clinical: dict, months: int = 24) -> float | None:
    """Standard error of the nomogram's log cumulative hazard at ``months`` for this patient (its
    estimation error), or None when the package's nomogram did not record what it needs."""
    nomogram = Nomogram.from_dict(package.herovision["nomogram"])
    standard_errors = nomogram.log_hazard_se(nomogram.patient_row(risk_score, clinical))
    return None if standard_errors is None else float(standard_errors[0, nomogram.horizons.index(float(months))])


def _nomogram(result, survival: SurvivalResult, package, case) -> None:
    outcome = nomogram_result(package, survival.risk_score, clinical_values(result, case))
    if isinstance(outcome, list):
        result.warnings.append(f"{package.name} nomogram not computed: clinical value(s) {', '.join(outcome)} unknown")
    else:
        survival.nomogram = outcome


def _tumour_measures(result, case, inputs, ivim) -> None:
    """Size and volume of ROI label 1 on T2WI (what a radiologist reports), else on the IVIM grid;
    the ROIs were loaded already for the models."""
    if "t2wi" in inputs.rois:
        roi, source = inputs.rois["t2wi"], case.roi_path("t2wi")
    elif ivim is not None:
        roi, source = ivim.roi, ivim.roi_source
    else:
        return
    result.tumor_size_cm = largest_axial_diameter_cm(roi, 1, source)
    result.tumor_volume_ml = volume_ml(roi, 1, source)
