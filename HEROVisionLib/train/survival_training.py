"""Training a HEROVision survival model (TA or SR) and everything its package needs afterwards.

The network is trained on the Cox partial likelihood (Efron ties) over event-balanced batches, with
modality drop-out and per-modality augmentation, keeping the epoch with the best internal-validation
Harrell's C. Then, on the training cohort: the risk cutoff by maximally selected log-rank statistics
(as R ``survminer::surv_cutpoint``) and the Breslow baseline cumulative hazard at 12, 24, 36 months;
and the nomogram: a Cox model of the risk score with the clinical factors of the cohort (univariate
P < 0.20, then backward stepwise AIC), its points, baseline and its own maxstat cutoff.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError

from ..errors import HEROVisionError
from ..models.herovision_net import HEROVisionEnsemble, HEROVisionNet
from ..staging import staging_ordinals
from ..stats.survival import COX_FIT_OPTIONS, breslow_baseline_cumulative_hazard, harrell_c
from ..stats.cutpoint import optimal_cutpoint
from ..stats.nomogram_fit import build_nomogram, select_cox_model
from ..models.model_set import HORIZONS_MONTHS, survival_package, survival_risk_scores
from ..transforms.network_inputs import SURVIVAL_PREPROCESSING
from ..transforms.augment import augment_survival_batch, modality_augmentation
from .data import CohortTensors
from .loop import TrainingConfig, TrainingRun, autocast, event_balanced_batches, train_epochs, train_members
from .losses import cox_partial_likelihood_loss


#: Clinical factors the nomogram may select (those the cohort records, with more than one value).
NOMOGRAM_CANDIDATES = ("age", "sex_male", "cirrhosis", "ctp_b", "portal_hypertension", "tumor_number",
                       "tumor_size_cm", "perivascular", "subcapsular", "afp_high", "alt_high", "ast_high",
                       "inr_high", "cea_high", "ca19_9_high", "pni_low")


#: The usual floor of events per covariate for a Cox model that is more than noise.
EVENTS_PER_VARIABLE = 10


@dataclass
class SurvivalConfig(TrainingConfig):
    epochs: int = 40
    batch_size: int = 64
    patience: int = 8


def _inputs(data: CohortTensors, index, device, modalities):
    images = {m: data.inputs[m][index].to(device).float() for m in modalities}
    return images, data.inputs["present"][index].to(device)


def risk_scores(network: HEROVisionNet | HEROVisionEnsemble, data: CohortTensors, device,
                batch_size: int = 32) -> np.ndarray:
    """The cohort's risk scores, scored as prediction scores a patient (full precision, eval mode)."""
    network.eval()
    scores = [survival_risk_scores(network, {m: data.inputs[m][index] for m in network.modalities},
                                   data.inputs["present"][index], device)
              for index in torch.arange(len(data)).split(batch_size)]
    return torch.cat(scores).numpy().astype(np.float64)


def _validation_c(network, validation: CohortTensors, device) -> float:
    """Harrell's C on the validation set; NaN when it has no comparable pair (tiny cohorts)."""
    try:
        return harrell_c(risk_scores(network, validation, device), validation.labels["time"].numpy(),
                         validation.labels["event"].numpy())
    except (ZeroDivisionError, HEROVisionError):
        return float("nan")


def train_survival(training: CohortTensors, validation: CohortTensors, config: SurvivalConfig, device,
                   log_folder=None, progress: bool = True):
    """Returns (the network — an ensemble when ``config.members`` > 1 —, its internal-validation
    metrics, distributed); each network keeps its epoch of best validation C (:func:`train_members`)."""
    networks, metrics, distributed = train_members(
        lambda member_config, folder, label: _train_network(training, validation, member_config, device, folder,
                                                            progress, label),
        config, log_folder, "c_index", "internal_validation_c_index")
    if len(networks) == 1:
        return networks[0], metrics, distributed
    ensemble = HEROVisionEnsemble.of(networks).eval()
    return ensemble, {"internal_validation_c_index": _validation_c(ensemble, validation, device), **metrics}, distributed


def _train_network(training: CohortTensors, validation: CohortTensors, config: SurvivalConfig, device, log_folder,
                   progress: bool, label: str):
    """One network: (network with the best validation C, history rows, best epoch, distributed)."""
    run = TrainingRun.start(HEROVisionNet, config, device)
    generator, distributed, network, model, optimiser = (run.generator, run.distributed, run.network, run.model,
                                                        run.optimiser)
    transforms = {m: modality_augmentation(m, network.encoder_config["image_size"]) for m in network.modalities}
    for k, transform in enumerate(transforms.values()):
        transform.set_random_state(config.seed * 100 + k + distributed.rank)
    event = training.labels["event"]

    def batch_loss(index, epoch):
        images, present = _inputs(training, index, device, network.modalities)
        if config.augment:
            images = {m: v.to(device) for m, v in augment_survival_batch(
                {m: v.cpu() for m, v in images.items()}, transforms).items()}
        with autocast(device):
            scores = model(images, present)  # training mode: the network applies modality drop-out
        return cox_partial_likelihood_loss(scores.float(), training.labels["time"][index].to(device),
                                           event[index].to(device))

    history, best_epoch = train_epochs(
        network, model, optimiser, distributed, epochs=config.epochs, patience=config.patience,
        smoothing=config.smoothing,
        batches=lambda epoch: event_balanced_batches(event, config.batch_size, generator), batch_loss=batch_loss,
        validate=lambda: _validation_c(network, validation, device), metric="c_index", log_folder=log_folder,
        progress=progress, label=label)
    return network.eval(), history, best_epoch, distributed


def _candidate_frame(training: CohortTensors, scores: np.ndarray | None = None) -> pd.DataFrame:
    """Time, event, the risk score (when given) and every candidate clinical factor the cohort
    records for all its patients, with more than one value."""
    frame = pd.DataFrame({"time": training.labels["time"].numpy(),
                          "event": training.labels["event"].numpy().astype(float)})
    if scores is not None:
        frame["risk_score"] = scores
    for name in NOMOGRAM_CANDIDATES:
        if name in training.clinical.columns:
            values = pd.to_numeric(training.clinical[name], errors="coerce").to_numpy(np.float64)
            if np.isfinite(values).all() and np.unique(values).size > 1:
                frame[name] = values
    return frame


def _selected_cox_block(frame: pd.DataFrame) -> dict:
    """Selection over every covariate of ``frame`` (univariate P < 0.20, backward AIC), the points
    and baseline of the result and its maxstat cutoff; ``{"unavailable": reason}`` when the cohort
    cannot support a model (too few events, nothing recorded or selected)."""
    events = int(frame["event"].sum())
    try:
        model = select_cox_model(frame, "time", "event", [c for c in frame.columns if c not in ("time", "event")])
        if events < EVENTS_PER_VARIABLE * len(model.covariates):
            return {"unavailable": f"{events} events for {len(model.covariates)} selected covariates: fewer than "
                                   f"{EVENTS_PER_VARIABLE} events per variable"}
        nomogram = build_nomogram(model, frame, "time", "event", horizons=HORIZONS_MONTHS)
        linear_predictor = nomogram.linear_predictor(nomogram.points(frame)["total"])
        cutoff = optimal_cutpoint(linear_predictor, frame["time"].to_numpy(), frame["event"].to_numpy().astype(bool))
    except (HEROVisionError, ConvergenceError) as error:
        return {"unavailable": str(error)}
    table = model.summary.reset_index(names="covariate")
    return {**nomogram.to_dict(), "risk_cutoff": float(cutoff),
            "model": table.to_dict(orient="records"), "screening_p": model.screening_p.to_dict()}


def fit_nomogram(scores: np.ndarray, training: CohortTensors) -> dict:
    """The nomogram block of a package: the risk score with the clinical factors it selects (or
    ``{"unavailable": reason}``)."""
    return _selected_cox_block(_candidate_frame(training, scores))


def fit_clinical_model(training: CohortTensors) -> dict:
    """The clinical-factor model HEROVision is compared with (the paper's clinical model): the
    nomogram's selection over the clinical factors alone, without the risk score."""
    return _selected_cox_block(_candidate_frame(training))


def fit_staging_models(scores: np.ndarray, training: CohortTensors) -> dict:
    """Per staging system, a Cox model of its stage (ordinal; ITA.LI.CA's score) with the risk score,
    on the training patients it can stage: "staging system + HEROVision" of the comparison.
    ``{"unavailable": reason}`` for a system that is constant on (or cannot stage) the cohort."""
    ordinals = staging_ordinals(training.clinical)
    time_, event = training.labels["time"].numpy(), training.labels["event"].numpy().astype(float)
    models = {}
    for system in ordinals.columns:
        staged = ordinals[system].notna().to_numpy()
        frame = pd.DataFrame({"time": time_, "event": event, "stage": ordinals[system].to_numpy(),
                              "risk_score": scores})[staged]
        if frame["stage"].nunique() < 2:
            models[system] = {"unavailable": f"{system} is constant on the {int(staged.sum())} training patients "
                                             "it can stage"}
            continue
        try:
            fitter = CoxPHFitter().fit(frame, "time", "event", fit_options=COX_FIT_OPTIONS)
        except ConvergenceError as error:
            models[system] = {"unavailable": str(error)}
            continue
        models[system] = {"coefficients": {name: float(v) for name, v in fitter.params_.items()},
                          "patients": int(staged.sum())}
    return models


#: Months at which a package records its training cohort's curves (what reports draw).
CURVE_MONTHS = tuple(range(0, 61, 2))


def training_curves(scores: np.ndarray, time_: np.ndarray, event: np.ndarray, cutoff: float) -> dict:
    """Kaplan–Meier PFS of the training cohort's low- and high-risk groups and the Breslow baseline
    cumulative hazard, at :data:`CURVE_MONTHS` (a patient's predicted curve is exp(−H₀(t)·e^score))."""
    from lifelines import KaplanMeierFitter

    high = scores > cutoff
    curves = {"months": list(CURVE_MONTHS),
              "baseline_cumulative_hazard": breslow_baseline_cumulative_hazard(scores, time_, event,
                                                                               CURVE_MONTHS).tolist()}
    for name, members in (("low", ~high), ("high", high)):
        if members.any():
            fitter = KaplanMeierFitter().fit(time_[members], event[members])
            curves[f"kaplan_meier_{name}"] = fitter.survival_function_at_times(CURVE_MONTHS).tolist()
            curves[f"patients_{name}"] = int(members.sum())
    return curves


def survival_model_package(network: HEROVisionNet | HEROVisionEnsemble, treatment: str, training: CohortTensors, *, metrics: dict,
                           training_cohort: dict, command: str, config: SurvivalConfig, device):
    """Cutoff, Breslow baseline, nomogram, the models it is compared with and the training cohort's
    curves, then the package."""
    scores = risk_scores(network, training, device)
    time_, event = training.labels["time"].numpy(), training.labels["event"].numpy().astype(bool)
    cutoff = optimal_cutpoint(scores, time_, event)
    hazard = breslow_baseline_cumulative_hazard(scores, time_, event, HORIZONS_MONTHS)
    nomogram = fit_nomogram(scores, training)
    comparators = {"clinical_model": fit_clinical_model(training), "staging_models": fit_staging_models(scores, training)}
    curves = training_curves(scores, time_, event, float(cutoff))
    preprocessing = dict(SURVIVAL_PREPROCESSING, image_size=network.encoder_config["image_size"])
    return survival_package(network, treatment, trained=True, cutoff=float(cutoff),
                            baseline_cumulative_hazard=dict(zip(HORIZONS_MONTHS, map(float, hazard))),
                            version="1.0.0", description=f"HEROVision-{treatment}: progression-free survival after "
                            f"{'thermal ablation' if treatment == 'TA' else 'surgical resection'} from T2WI, DWI, US and CEUS.",
                            metrics=metrics, training_cohort=training_cohort,
                            training={"command": command, "config": asdict(config)},
                            preprocessing=preprocessing, nomogram=nomogram, training_curves=curves, **comparators)
