"""Training a HEROVision survival model (TA or SR) and everything its package needs afterwards.

The network is trained on the Cox partial likelihood (Efron ties) over event-balanced batches, with
modality drop-out and per-modality augmentation, keeping the epoch with the best internal-validation
Harrell's C. Then, on the training cohort: the risk cutoff by maximally selected log-rank statistics
(as R ``survminer::surv_cutpoint``) and the Breslow baseline cumulative hazard at 12, 24, 36 months.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from ..errors import HEROVisionError
from ..models.herovision_net import HEROVisionNet
from ..stats.survival import breslow_baseline_cumulative_hazard, harrell_c
from ..stats.cutpoint import optimal_cutpoint
from ..predict.models import HORIZONS_MONTHS, SURVIVAL_PREPROCESSING, survival_package
from .augment import augment_survival_batch, modality_augmentation
from .data import CohortTensors
from .loop import TrainingConfig, TrainingRun, autocast, event_balanced_batches, train_epochs
from .losses import cox_partial_likelihood_loss


@dataclass
class SurvivalConfig(TrainingConfig):
    epochs: int = 40
    batch_size: int = 64
    patience: int = 8


def _inputs(data: CohortTensors, index, device, modalities):
    images = {m: data.inputs[m][index].to(device).float() for m in modalities}
    return images, data.inputs["present"][index].to(device)


def risk_scores(network: HEROVisionNet, data: CohortTensors, device, batch_size: int = 32) -> np.ndarray:
    network.eval()
    scores = []
    with torch.no_grad():
        for index in torch.arange(len(data)).split(batch_size):
            with autocast(device):
                scores.append(network(*_inputs(data, index, device, network.modalities)).float().cpu())
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
    """Returns (network with the best validation C, history rows, best epoch, distributed)."""
    run = TrainingRun.start(HEROVisionNet, config, device)
    generator, distributed, network, model, optimiser = (run.generator, run.distributed, run.network, run.model,
                                                        run.optimiser)
    transforms = {m: modality_augmentation(m) for m in network.modalities}
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
        batches=lambda epoch: event_balanced_batches(event, config.batch_size, generator), batch_loss=batch_loss,
        validate=lambda: _validation_c(network, validation, device), metric="c_index", log_folder=log_folder,
        progress=progress)
    return network.eval(), history, best_epoch, distributed


def survival_model_package(network: HEROVisionNet, treatment: str, training: CohortTensors, *, metrics: dict,
                           training_cohort: dict, command: str, config: SurvivalConfig, device):
    """Cutoff and Breslow baseline on the training cohort, then the package."""
    scores = risk_scores(network, training, device)
    time_, event = training.labels["time"].numpy(), training.labels["event"].numpy().astype(bool)
    cutoff = optimal_cutpoint(scores, time_, event)
    hazard = breslow_baseline_cumulative_hazard(scores, time_, event, HORIZONS_MONTHS)
    preprocessing = dict(SURVIVAL_PREPROCESSING, image_size=network.encoder_config["image_size"])
    return survival_package(network, treatment, trained=True, cutoff=float(cutoff),
                            baseline_cumulative_hazard=dict(zip(HORIZONS_MONTHS, map(float, hazard))),
                            version="1.0.0", description=f"HEROVision-{treatment}: progression-free survival after "
                            f"{'thermal ablation' if treatment == 'TA' else 'surgical resection'} from T2WI, DWI, US and CEUS.",
                            metrics=metrics, training_cohort=training_cohort,
                            training={"command": command, "config": asdict(config)},
                            preprocessing=preprocessing)
