"""``herovision train``: one task from a cohort folder to a complete model package.

Tasks: ``pfs-ta`` and ``pfs-sr`` (HEROVision survival models on the patients treated that way) and
``er`` (the IVIM early-recurrence model). Presets fix the network sizes and schedule: ``default``
(the bundled models), ``tiny`` (seconds; the test suite's smoke run). A survival model sees one
treatment arm (~250 patients of a 600-patient cohort: 8 steps an epoch), so it gets up to 100 epochs,
patience 20 and model selection on a five-epoch mean of the validation C (on ~60 patients one epoch's
C is mostly chance; with 30 epochs and a one-epoch metric SR stopped after its first), and the default
preset trains three such networks from consecutive seeds and averages their scores (an ensemble:
one network's ranking of a few hundred patients depends on its seed); for the IVIM model two, each
with its own published head, their probabilities averaged (two fit the 60-minute budget of the
bundled re-training). Under ``torchrun`` every
process trains on its share of each epoch's batches (DistributedDataParallel) and rank 0 writes the
package; the command is the same.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..devices import resolve_device
from ..errors import InputError
from ..io.case import Cohort
from ..io.output_folder import output_folder
from ..models.package import check_package_destination, load_package, save_package
from ..predict.acquisition import acquisition_ranges
from ..transforms.ivim_crops import IVIM_PREPROCESSING
from ..transforms.network_inputs import SURVIVAL_PREPROCESSING
from .data import TASKS, check_outcomes, prepare, split
from .early_recurrence import EarlyRecurrenceConfig, early_recurrence_model_package, train_ivim
from .survival_training import SurvivalConfig, survival_model_package, train_survival

PRESETS = {
    "default": {
        "survival": dict(epochs=100, batch_size=32, patience=20, smoothing=2, members=3,
                         network=dict(encoder=dict(image_size=64, stem_channels=16, patch_grid=8, embed_dim=48,
                                                   depth=2, num_heads=4, out_features=128))),
        "er": dict(epochs=25, batch_size=8, patience=6, members=2,
                   network=dict(crop_size=64, patch_size=8, hidden_size=64, mlp_dim=128, num_layers=2, num_heads=4)),
    },
    "tiny": {
        "survival": dict(epochs=2, batch_size=8, patience=2,
                         network=dict(encoder=dict(image_size=32, stem_channels=8, patch_grid=4, embed_dim=16, depth=1,
                                                   num_heads=2, out_features=16), modality_features=8, fusion_hidden=16)),
        "er": dict(epochs=2, batch_size=4, patience=2, folds=2,
                   network=dict(crop_size=16, patch_size=8, hidden_size=16, mlp_dim=32, num_layers=1, num_heads=2)),
    },
}


def train_task(task: str, cohort_folder, out, *, preset: str = "default", split_how: str = "stratified",
               epochs: int | None = None, members: int | None = None, seed: int = 0, device="auto",
               workers: int | None = None, progress: bool = True, command: str = "") -> Path | None:
    """Train ``task`` on the cohort and write the package to ``out`` (rank 0); returns its path.
    ``command`` (the command line that asked for it) goes on the model card."""
    if preset not in PRESETS:
        raise InputError("--preset", f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if task not in TASKS:
        raise InputError("--task", f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    device = resolve_device(device)
    started = time.perf_counter()
    cohort = Cohort(cohort_folder)
    out = check_package_destination(out, inputs=(cohort.folder,))  # before any work
    overrides = dict(seed=seed, **({"epochs": epochs} if epochs else {}), **({"members": members} if members else {}))
    with output_folder(out.with_name(out.name + "-training"), "train", inputs=(cohort.folder,)) as log:
        package = _train(task, cohort, preset, overrides, split_how, device, workers, progress, command, log.path)
    if package is None:
        return None
    package.herovision["training"]["seconds"] = round(time.perf_counter() - started)
    return save_package(package, out)


def _train(task, cohort, preset, overrides, split_how, device, workers, progress, command, log_folder):
    """The trained package (rank 0; None on the other processes of a distributed run)."""
    seed = overrides["seed"]
    if TASKS[task]:
        config = SurvivalConfig(**{**PRESETS[preset]["survival"], **overrides})
        preprocessing = dict(SURVIVAL_PREPROCESSING,
                             image_size=config.network.get("encoder", {}).get("image_size", 128))
        data = prepare(cohort, task, preprocessing, workers=workers, progress=progress)
        training, validation = split(data, split_how, seed=seed, stratify="event")
        _check_training_part(task, training, validation, cohort)
        network, metrics, distributed = train_survival(training, validation, config, device, log_folder, progress)
        build = lambda: survival_model_package(  # noqa: E731
            network, TASKS[task], training, metrics=metrics,
            training_cohort=_describe(cohort, data, training, validation, split_how, seed), command=command,
            config=config, device=device)
    else:
        config = EarlyRecurrenceConfig(**{**PRESETS[preset]["er"], **overrides})
        settings = dict(IVIM_PREPROCESSING, crop_size=config.network.get("crop_size", 64))
        data = prepare(cohort, task, settings, workers=workers, progress=progress)
        training, validation = split(data, split_how, seed=seed, stratify="er")
        _check_training_part(task, training, validation, cohort)
        network, metrics, distributed = train_ivim(training, validation, config, device, log_folder, progress)
        build = lambda: early_recurrence_model_package(  # noqa: E731
            network, training, metrics=metrics,
            training_cohort=_describe(cohort, data, training, validation, split_how, seed), command=command,
            config=config, device=device)
    if not distributed.main:
        return None
    package = build()
    package.herovision["training"].update(seconds=None, device=str(device), processes=distributed.world)  # seconds: by the caller
    package.herovision["acquisition_ranges"] = acquisition_ranges(data.acquisition)  # the out-of-distribution check
    return package


def record_acquisition_ranges(package_folder, cohort_folder, *, workers: int | None = None,
                              progress: bool = True) -> dict:
    """Measure the acquisitions of the cohort a package was trained on and record their ranges in it
    (the package is re-signed; its weights are unchanged): for packages trained before ``train``
    recorded them. The cohort must give as many cases for the package's task as it was trained on."""
    package = load_package(package_folder, "cpu")
    block = package.herovision
    task = next(task for task, treatment in TASKS.items() if treatment == block.get("treatment"))
    data = prepare(Cohort(cohort_folder), task, block["preprocessing"], workers=workers, progress=progress)
    trained_on = block.get("training_cohort", {}).get("cases")
    if trained_on is not None and trained_on != len(data):
        raise InputError(cohort_folder, f"gives {len(data)} usable cases for {task}; {package.name} was trained on "
                                        f"{trained_on}: not its training cohort")
    block["acquisition_ranges"] = acquisition_ranges(data.acquisition)
    save_package(package, package_folder)
    return block["acquisition_ranges"]


def _check_training_part(task, training, validation, cohort) -> None:
    outcomes = training.labels["event" if TASKS[task] else "er"].numpy()
    check_outcomes(task, outcomes, f"the {len(training)} training patients left by the validation split "
                                   f"({len(validation)})", cohort.folder / "cohort.csv")


def _describe(cohort, data, training, validation, split_how, seed) -> dict:
    return {"cohort": cohort.folder.name, "synthetic": (cohort.folder / "truth.csv").exists(),
            "cases": len(data), "training_cases": len(training), "validation_cases": len(validation),
            "split": split_how, "seed": seed, "skipped_cases": data.skipped}
