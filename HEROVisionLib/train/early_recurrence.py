"""Training the IVIM early-recurrence model (ViT-bDL + ViT-mDL → ViT-fDL) and its published head.

The two 3-D ViTs are trained end to end through a linear logit on the fused features (binary
cross-entropy, class-weighted), keeping the epoch with the best internal-validation AUC. The
predictor the paper reports is then fitted on the training cohort's fused features: a Pearson
filter (of any two features with |r| > 0.8 the less relevant is dropped), the 10 most relevant left
by ANOVA F, standardisation and logistic regression (the deep model); the combined model is a
logistic regression of the deep model's linear predictor with tumour size and tumour D. The head's
selection and fit are cross-validated (stratified 5-fold) on the training cohort for its metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from ..models.ivim_net import (EarlyRecurrenceHead, IVIMEnsemble, IVIMFeatureNet, LogisticModel, ensemble_probabilities,
                               networks_of)
from ..transforms.ivim_crops import IVIM_PREPROCESSING
from ..models.model_set import early_recurrence_package
from ..transforms.augment import augment_ivim_pair
from .data import CohortTensors
from .loop import TrainingConfig, TrainingRun, autocast, train_epochs, train_members

PEARSON_LIMIT = 0.8
SELECTED_FEATURES = 10


@dataclass
class EarlyRecurrenceConfig(TrainingConfig):
    batch_size: int = 8
    learning_rate: float = 3e-4
    folds: int = 5


def fused_features(network: IVIMFeatureNet, data: CohortTensors, device, batch_size: int = 8) -> np.ndarray:
    network.eval()
    out = []
    with torch.no_grad():
        for index in torch.arange(len(data)).split(batch_size):
            with autocast(device):
                out.append(network.features(data.inputs["bvalues"][index].to(device).float(),
                                            data.inputs["maps"][index].to(device).float()).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def _validation_auc(network, data, device) -> float:
    network.eval()
    logits = []
    with torch.no_grad():
        for index in torch.arange(len(data)).split(8):
            logits.append(network(data.inputs["bvalues"][index].to(device).float(),
                                  data.inputs["maps"][index].to(device).float()).float().cpu())
    labels = data.labels["er"].numpy()
    return float(roc_auc_score(labels, torch.cat(logits).numpy())) if len(np.unique(labels)) == 2 else float("nan")


def train_ivim(training: CohortTensors, validation: CohortTensors, config: EarlyRecurrenceConfig, device,
               log_folder=None, progress: bool = True):
    """Returns (the network — an ensemble when ``config.members`` > 1 —, its internal-validation
    metrics, distributed); each network keeps its epoch of best validation AUC (:func:`train_members`)."""
    networks, metrics, distributed = train_members(
        lambda member_config, folder, label: train_feature_network(training, validation, member_config, device,
                                                                   folder, progress, label),
        config, log_folder, "auc", "internal_validation_auc_network")
    return (networks[0] if len(networks) == 1 else IVIMEnsemble.of(networks).eval()), metrics, distributed


def train_feature_network(training: CohortTensors, validation: CohortTensors, config: EarlyRecurrenceConfig, device,
                          log_folder=None, progress: bool = True, label: str = "epochs"):
    """Returns (network with the best validation AUC, history rows, best epoch, distributed)."""
    run = TrainingRun.start(IVIMFeatureNet, config, device)
    generator, distributed, network, model, optimiser = (run.generator, run.distributed, run.network, run.model,
                                                        run.optimiser)
    labels = training.labels["er"].float()
    positive = float(labels.mean())
    weight = torch.tensor((1 - positive) / max(positive, 1e-6), device=device)
    loss_function = torch.nn.BCEWithLogitsLoss(pos_weight=weight)

    def crops(i, epoch):
        bvalues, maps = training.inputs["bvalues"][i], training.inputs["maps"][i]
        if config.augment:
            return augment_ivim_pair(bvalues, maps, seed=config.seed * 100003 + epoch * 1009 + int(i))
        return bvalues.float(), maps.float()

    def batch_loss(index, epoch):
        pairs = [crops(i, epoch) for i in index]
        bvalues = torch.stack([b for b, _ in pairs]).to(device)
        maps = torch.stack([m for _, m in pairs]).to(device)
        with autocast(device):
            logits = model(bvalues, maps)
        return loss_function(logits.float(), labels[index].to(device))

    history, best_epoch = train_epochs(
        network, model, optimiser, distributed, epochs=config.epochs, patience=config.patience,
        smoothing=config.smoothing,
        batches=lambda epoch: list(torch.randperm(len(training), generator=generator).split(config.batch_size)),
        batch_loss=batch_loss, validate=lambda: _validation_auc(network, validation, device), metric="auc",
        log_folder=log_folder, progress=progress, label=label)
    return network.eval(), history, best_epoch, distributed


def select_features(features: np.ndarray, labels: np.ndarray, limit: float = PEARSON_LIMIT,
                    count: int = SELECTED_FEATURES) -> list[int]:
    """Pearson filter then ANOVA: the ``count`` most relevant features no two of which have |r| > ``limit``."""
    f_scores, _ = f_classif(features, labels)
    f_scores = np.nan_to_num(f_scores, nan=-np.inf)
    correlation = np.abs(np.nan_to_num(np.corrcoef(features, rowvar=False)))
    kept: list[int] = []
    for index in np.argsort(-f_scores, kind="stable"):
        if all(correlation[index, other] <= limit for other in kept):
            kept.append(int(index))
        if len(kept) == count:
            break
    return kept


def fit_head(features: np.ndarray, labels: np.ndarray, tumor_size_cm: np.ndarray, tumor_d: np.ndarray,
             seed: int = 0) -> EarlyRecurrenceHead:
    """Feature selection, standardisation, deep and combined logistic models on one training set."""
    selected = select_features(features, labels)
    chosen = features[:, selected]
    mean, scale = chosen.mean(0), chosen.std(0, ddof=0)
    scale = np.where(scale > 0, scale, 1.0)
    deep = LogisticRegression(max_iter=1000, random_state=seed).fit((chosen - mean) / scale, labels)
    deep_model = LogisticModel(float(deep.intercept_[0]),
                               {f"feature_{i}": float(w) for i, w in zip(selected, deep.coef_[0])})
    deep_score = deep.decision_function((chosen - mean) / scale)
    clinical = np.column_stack([deep_score, tumor_size_cm, tumor_d * 1e3])
    combined = LogisticRegression(C=np.inf, max_iter=1000).fit(clinical, labels)  # unpenalised
    combined_model = LogisticModel(float(combined.intercept_[0]),
                                   dict(zip(("deep_score", "tumor_size_cm", "tumor_D_1e3"), map(float, combined.coef_[0]))))
    return EarlyRecurrenceHead(selected, mean.tolist(), scale.tolist(), deep_model, combined_model)


def cross_validated_head_auc(features: list[np.ndarray], labels, tumor_size_cm, tumor_d, folds: int,
                             seed: int) -> dict:
    """Stratified k-fold AUCs of the whole head (selection included) on the training cohort: in each
    fold every network's head is fitted on its own features and their probabilities averaged, as
    prediction averages them."""
    deep_aucs, combined_aucs = [], []
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(features[0], labels)
    for train, test in splits:
        heads = [fit_head(member[train], labels[train], tumor_size_cm[train], tumor_d[train], seed) for member in features]
        deep, combined = ensemble_probabilities(heads, [torch.as_tensor(member[test]) for member in features],
                                                torch.as_tensor(tumor_size_cm[test]), torch.as_tensor(tumor_d[test]))
        deep_aucs.append(roc_auc_score(labels[test], deep.numpy()))
        combined_aucs.append(roc_auc_score(labels[test], combined.numpy()))
    return {"cv_folds": folds, "cv_auc_deep_mean": float(np.mean(deep_aucs)), "cv_auc_deep_sd": float(np.std(deep_aucs)),
            "cv_auc_combined_mean": float(np.mean(combined_aucs)), "cv_auc_combined_sd": float(np.std(combined_aucs))}


def early_recurrence_model_package(network: IVIMFeatureNet | IVIMEnsemble, training: CohortTensors, *,
                                   metrics: dict, training_cohort: dict, command: str, config: EarlyRecurrenceConfig,
                                   device):
    """The published head fitted on each network's features of the training cohort, its
    cross-validated AUCs, and the package."""
    networks = networks_of(network)
    features = [fused_features(member, training, device) for member in networks]
    labels = training.labels["er"].numpy().astype(int)
    size, tumor_d = training.labels["tumor_size_cm"].numpy(), training.labels["tumor_D"].numpy()
    heads = [fit_head(member, labels, size, tumor_d, config.seed) for member in features]
    if min(np.bincount(labels, minlength=2)) >= config.folds:
        metrics = {**metrics, **cross_validated_head_auc(features, labels, size, tumor_d, config.folds, config.seed)}
    preprocessing = dict(IVIM_PREPROCESSING, crop_size=networks[0].to_config()["crop_size"])
    return early_recurrence_package(
        network, heads, trained=True, version="1.0.0", preprocessing=preprocessing,
        description="IVIM-ER: early recurrence within 2 years after resection, from the IVIM b-value images and "
                    "parametric maps of the tumour VOI (ViT-fDL), alone and combined with tumour size and D.",
        metrics=metrics, training_cohort=training_cohort, training={"command": command, "config": asdict(config)})
