"""The set of model packages prediction uses, where they live, and untrained placeholders.

Three packages: ``HEROVision-TA`` and ``HEROVision-SR`` (PFS after thermal ablation / surgical
resection) and ``IVIM-ER`` (early recurrence after resection). The bundled ones live in
``Resources/Models``; ``HEROVISION_MODELS`` or an explicit folder points elsewhere (a site's own
trained models). Until trained packages exist, :func:`write_untrained_models` makes clearly
labelled placeholders with random weights so the whole pipeline can run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.clinical import ARMS
from ..io.model_folders import PACKAGE_NAMES, bundled_models_folder
from .herovision_net import HEROVisionNet
from .ivim_net import EarlyRecurrenceHead, IVIMEnsemble, IVIMFeatureNet, heads_block
from .package import ModelPackage, build_metadata, load_package, save_package
from ..transforms.ivim_crops import IVIM_PREPROCESSING
from ..transforms.network_inputs import SURVIVAL_PREPROCESSING

HORIZONS_MONTHS = (12, 24, 36)


def survival_probability(risk, baseline_cumulative_hazard) -> np.ndarray:
    """S(t | x) = exp(−H₀(t)·e^risk) for each risk score (rows) and each baseline time (columns): the
    one place prediction, nomograms, reports and evaluation turn a Cox score into survival (checked
    against R's ``survfit.coxph``)."""
    risk = np.atleast_1d(np.asarray(risk, dtype=np.float64))
    hazard = np.atleast_1d(np.asarray(baseline_cumulative_hazard, dtype=np.float64))
    if not (np.isfinite(risk).all() and np.isfinite(hazard).all()) or (hazard < 0).any():
        raise InputError("baseline cumulative hazard", "risk scores and the baseline must be finite, the baseline ≥ 0")
    return np.exp(-np.outer(np.exp(risk), hazard))


def survival_risk_scores(network: HEROVisionNet, images: dict, present: torch.Tensor, device,
                         with_attention: bool = False):
    """Cox risk scores of a batch ``{modality: (N, k, H, W)}`` in full precision: the one scoring path
    of prediction, of a package's calibration (cutoff, baseline) and of its evaluation, so the
    numbers on a model card are measured the way patients' predictions are made. ``with_attention``
    adds the attention maps of the same pass (:meth:`~.herovision_net.HEROVisionNet.scores_and_attention`):
    (scores, {modality: maps on ``device``})."""
    images = {m: images[m].to(device).float() for m in network.modalities}
    with torch.inference_mode():  # numbers out, never a graph: no autograd bookkeeping at all
        if with_attention:
            scores, maps = network.scores_and_attention(images, present.to(device))
            return scores.float().cpu(), maps
        return network(images, present.to(device)).float().cpu()


@dataclass
class ModelSet:
    ta: ModelPackage
    sr: ModelPackage
    er: ModelPackage

    @property
    def trained(self) -> bool:
        return all(package.trained for package in (self.ta, self.sr, self.er))

    @property
    def synthetic(self) -> bool:
        """Any model trained on a synthetic (phantom) cohort."""
        return any(package.herovision.get("training_cohort", {}).get("synthetic") for _, package in self.items())

    @property
    def paths(self) -> tuple[Path, ...]:
        """The packages' folders (inputs an output must keep clear of)."""
        return tuple(package.path for _, package in self.items() if package.path is not None)

    def versions(self) -> dict[str, str]:
        return {key: f"{package.name} {package.version}" for key, package in self.items()}

    def items(self):
        return (("ta", self.ta), ("sr", self.sr), ("er", self.er))

    def nomogram_covariates(self) -> list[str]:
        """The clinical values the survival nomograms need from the user (risk score and tumour size
        come from the images)."""
        names = set()
        for package in (self.ta, self.sr):
            block = package.herovision.get("nomogram") or {}
            names |= set(block.get("coefficients", {}))
        return sorted(names - {"risk_score", "tumor_size_cm"})

    def common_pfs_threshold(self, nomogram: bool) -> float:
        """The 2-year PFS below which a patient counts as high risk under *either* treatment, for
        cross-stratification: each survival model's own cutoff (the nomogram's, or the image score's)
        read as predicted 2-year PFS, averaged with each weighted by its training arm's patients.

        One absolute scale is what makes the two treatments comparable: with a separate cutoff per
        model, a patient can be "high" under one and "low" under the other while the other predicts
        the *lower* PFS, and switching would be advised towards the worse treatment.
        """
        cutoffs, weights = [], []
        for package in (self.ta, self.sr):
            block = package.herovision
            if nomogram:
                nomogram_block = block.get("nomogram") or {}
                if "coefficients" not in nomogram_block:
                    raise InputError(package.path, "has no nomogram")
                hazard = nomogram_block["baseline_cumulative_hazard"][nomogram_block["horizons"].index(24.0)]
                cutoff = nomogram_block["risk_cutoff"]
            else:
                hazard, cutoff = block["baseline_cumulative_hazard"]["24"], block["risk_cutoff"]
            cutoffs.append(float(survival_probability(cutoff, hazard)[0, 0]))
            weights.append(block.get("training_cohort", {}).get("cases", 1))
        return sum(c * w for c, w in zip(cutoffs, weights)) / sum(weights)

    def describe(self) -> list[str]:
        """One line per package for the panel: name, version, how it was trained, intended use."""
        lines = []
        for _, package in self.items():
            cohort = package.herovision.get("training_cohort", {})
            trained = ("untrained placeholder" if not package.trained else
                       "trained on a synthetic phantom cohort" if cohort.get("synthetic") else "trained")
            lines.append(f"{package.name} {package.version} ({trained}) — {package.metadata.get('intended_use', '')}")
        return lines


def load_models(folder=None, device="auto") -> ModelSet:
    """Load and verify the three packages of ``folder`` (default: :func:`bundled_models_folder`)."""
    folder = Path(folder) if folder is not None else bundled_models_folder()
    missing = [name for name in PACKAGE_NAMES.values() if not (folder / name).is_dir()]
    if missing:
        raise InputError(folder, f"model packages missing: {', '.join(missing)} (train them with "
                                 "`herovision train`, or point --models to a folder that has them)")
    return ModelSet(**{key: load_package(folder / name, device) for key, name in PACKAGE_NAMES.items()})


def survival_package(network: HEROVisionNet, treatment: str, *, trained: bool, cutoff: float,
                     baseline_cumulative_hazard: dict, version: str, description: str,
                     preprocessing: dict = SURVIVAL_PREPROCESSING, **extra) -> ModelPackage:
    """A HEROVision-TA/SR package: network, risk cutoff and Breslow baseline at 12/24/36 months."""
    herovision = {"kind": "survival", "treatment": treatment, "trained": trained, "risk_cutoff": cutoff,
                  "baseline_cumulative_hazard": {str(k): v for k, v in baseline_cumulative_hazard.items()},
                  "preprocessing": preprocessing, **extra}
    inputs = {modality: {"type": "image", "num_channels": count, "spatial_shape": [preprocessing["image_size"]] * 2,
                         "format": "magnitude", "value_range": [0, 1]}
              for modality, count in network.modality_images.items()}
    metadata = build_metadata(network, name=f"HEROVision-{treatment}", version=version,
                              task=f"progression-free survival after {treatment} (Cox log-hazard)",
                              description=description, inputs=inputs,
                              outputs={"risk_score": {"type": "object", "format": "Cox log-hazard"}},
                              herovision=herovision)
    return ModelPackage(network, metadata)


def early_recurrence_package(network: IVIMFeatureNet | IVIMEnsemble, heads: list[EarlyRecurrenceHead], *,
                             trained: bool, version: str, description: str, preprocessing: dict = IVIM_PREPROCESSING,
                             **extra) -> ModelPackage:
    """An IVIM-ER package: the network(s) and one published head per network."""
    herovision = {"kind": "early_recurrence", "trained": trained, "early_recurrence": heads_block(heads),
                  "preprocessing": preprocessing, **extra}
    size = [preprocessing["crop_size"]] * 3
    metadata = build_metadata(network, name="IVIM-ER", version=version,
                              task="early recurrence within 2 years after resection",
                              description=description,
                              inputs={"bvalues": {"type": "image", "num_channels": 9, "spatial_shape": size},
                                      "maps": {"type": "image", "num_channels": 4, "spatial_shape": size}},
                              outputs={"probability": {"type": "probability"}}, herovision=herovision)
    return ModelPackage(network, metadata)


def write_untrained_models(folder, seed: int = 0) -> Path:
    """Random-weight placeholders of all three packages (labelled untrained everywhere they show)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    description = "UNTRAINED placeholder with random weights: exercises the software, predicts nothing."
    flat_hazard = {months: 0.03 * months for months in HORIZONS_MONTHS}  # placeholder, ~30 % PFS at 3 years
    for key in ARMS:
        package = survival_package(HEROVisionNet(), ARMS[key], trained=False, cutoff=0.0,
                                   baseline_cumulative_hazard=flat_hazard, version="0.0.0", description=description)
        save_package(package, folder / PACKAGE_NAMES[key])
    network = IVIMFeatureNet()
    head = EarlyRecurrenceHead.untrained(network.feature_count, seed=seed)
    save_package(early_recurrence_package(network, [head], trained=False, version="0.0.0", description=description),
                 folder / PACKAGE_NAMES["er"])
    return folder
