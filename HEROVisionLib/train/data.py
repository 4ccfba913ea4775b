"""Training data: a cohort's cases turned into network inputs once, exactly as prediction does.

Inputs come from :mod:`HEROVisionLib.transforms.network_inputs` and :mod:`~HEROVisionLib.transforms.ivim_crops`
(the same crops, scaling and IVIM fits as at prediction time: a model never sees training data prepared
differently from what it will meet).
Cases are prepared in parallel processes; a case that cannot be prepared (bad input or an
unexpected failure) is left out and listed, never silently, and never stops the run. Images are
kept as float16 to hold a few hundred 3-D crops in memory.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import HEROVisionError, InputError
from ..io.case import Cohort
from ..predict.acquisition import ivim_measures, survival_measures
from ..transforms.ivim_crops import ivim_inputs
from ..transforms.network_inputs import survival_inputs

TASKS = {"pfs-ta": "TA", "pfs-sr": "SR", "er": None}


@dataclass
class CohortTensors:
    """Per-case tensors stacked along the first axis, with the case ids and any skipped cases."""

    case_ids: list[str]
    inputs: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    clinical: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    acquisition: list[dict] = field(default_factory=list)  # per case: modality → measure → value

    def __len__(self) -> int:
        return len(self.case_ids)

    def subset(self, index) -> CohortTensors:
        index = torch.as_tensor(index, dtype=torch.long)
        return CohortTensors([self.case_ids[i] for i in index.tolist()],
                             {k: v[index] for k, v in self.inputs.items()},
                             {k: v[index] for k, v in self.labels.items()},
                             self.clinical.iloc[index.numpy()].reset_index(drop=True), dict(self.skipped),
                             [self.acquisition[i] for i in index.tolist()] if self.acquisition else [])


def task_cases(cohort: Cohort, task: str) -> pd.DataFrame:
    """The cohort rows a task trains on: the treated arm for PFS; everyone with er_2y for ER."""
    if task not in TASKS:
        raise InputError("--task", f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    table = cohort.table
    needed = ["pfs_months", "pfs_event", "treatment"] if TASKS[task] else ["er_2y"]
    absent = [c for c in needed if c not in table.columns]
    if absent:
        raise InputError(cohort.folder / "cohort.csv", f"task {task} needs column(s) {', '.join(absent)}")
    rows = table[table["treatment"] == TASKS[task]] if TASKS[task] else table[table["er_2y"].notna()]
    if rows.empty:
        raise InputError(cohort.folder / "cohort.csv", f"no case for task {task}")
    who = f"the {len(rows)} patients treated {TASKS[task]}" if TASKS[task] else f"the {len(rows)} patients with er_2y"
    check_outcomes(task, pd.to_numeric(rows["pfs_event" if TASKS[task] else "er_2y"]), who, cohort.folder / "cohort.csv")
    return rows.reset_index(drop=True)


def check_outcomes(task: str, outcomes, who: str, source) -> None:
    """What a task learns from must be there — progression events for a survival model, patients
    with and without early recurrence for ER — refused before any image is read or epoch run (an
    evaluation cohort without them could not measure a model either).
    ``outcomes``: the pfs_event or er_2y values of ``who``."""
    outcomes = np.asarray(outcomes, dtype=float)
    if TASKS[task]:
        if not (outcomes == 1).any():
            raise InputError(source, f"task {task}: no progression event (pfs_event = 1) among {who}: a survival "
                                     "model is trained and measured on events")
    elif len(np.unique(outcomes)) < 2:
        raise InputError(source, f"task er: er_2y is {outcomes[0]:g} for all of {who}: the model is trained and "
                                 "measured on patients with and without early recurrence")


def _survival_case(arguments):
    folder, clinical, preprocessing = arguments
    from ..io.case import Case

    inputs = survival_inputs(Case(folder, clinical), preprocessing)
    images = {m: t.half() for m, t in inputs.images.items()}
    return images, [inputs.present[m] for m in inputs.images], survival_measures(inputs)


def _ivim_case(arguments):
    folder, clinical, settings = arguments
    from ..io.case import Case

    ivim = ivim_inputs(Case(folder, clinical), settings, "cpu")
    bvalues, maps = (torch.from_numpy(crop).half() for crop in (ivim.bvalues, ivim.maps))
    return bvalues, maps, ivim.tumor_d, ivim.tumor_size_cm, ivim_measures(ivim)


def _single_thread():
    from ..devices import limit_threads

    limit_threads(1)


def _run(function, jobs, workers, progress, description):
    from tqdm import tqdm

    workers = workers or min(len(jobs), os.cpu_count() or 1)
    results = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_single_thread) as pool:
        futures = [pool.submit(function, job) for job in jobs]
        for future in tqdm(futures, desc=description, unit="case", disable=not progress):
            try:
                results.append(future.result())
            except Exception as error:  # noqa: BLE001 — one bad case is listed on the card, never fatal
                results.append(error if isinstance(error, HEROVisionError) else
                               HEROVisionError(f"internal error {type(error).__name__}: {error}"))
    return results


def prepare(cohort: Cohort, task: str, preprocessing: dict, *, workers: int | None = None,
            progress: bool = True) -> CohortTensors:
    """Inputs and labels of every case of ``task`` (see :func:`task_cases`), made as the package's
    ``preprocessing`` block says (the one prediction uses)."""
    rows = task_cases(cohort, task)
    records = rows.to_dict("records")
    jobs = [(cohort.folder / str(r["case_id"]), r, preprocessing) for r in records]
    if TASKS[task]:
        results = _run(_survival_case, jobs, workers, progress, f"preparing {task}")
    else:
        results = _run(_ivim_case, jobs, workers, progress, "preparing IVIM")
    kept = [k for k, result in enumerate(results) if not isinstance(result, HEROVisionError)]
    skipped = {str(records[k]["case_id"]): str(results[k]) for k in range(len(results)) if k not in kept}
    if len(kept) < 2:
        raise InputError(cohort.folder, f"fewer than two usable cases for task {task}; skipped: {skipped}")
    clinical = rows.iloc[kept].reset_index(drop=True)
    ids = [str(c) for c in clinical["case_id"]]
    if TASKS[task]:
        modalities = list(results[kept[0]][0])
        inputs = {m: torch.stack([results[k][0][m] for k in kept]) for m in modalities}
        inputs["present"] = torch.tensor([results[k][1] for k in kept], dtype=torch.bool)
        labels = {"time": torch.tensor(clinical["pfs_months"].to_numpy(np.float64)),
                  "event": torch.tensor(clinical["pfs_event"].to_numpy(np.float64)).bool()}
    else:
        inputs = {"bvalues": torch.stack([results[k][0] for k in kept]),
                  "maps": torch.stack([results[k][1] for k in kept])}
        labels = {"er": torch.tensor(clinical["er_2y"].to_numpy(np.float64)),
                  "tumor_D": torch.tensor([results[k][2] for k in kept], dtype=torch.float64),
                  "tumor_size_cm": torch.tensor([results[k][3] for k in kept], dtype=torch.float64)}
    return CohortTensors(ids, inputs, labels, clinical, skipped, [results[k][-1] for k in kept])


def split(data: CohortTensors, how: str, fraction: float = 0.2, seed: int = 0,
          stratify: str | None = None) -> tuple[CohortTensors, CohortTensors]:
    """Training / internal-validation split, 4:1 by default: ``chronological`` keeps the cohort's
    order (the last fifth validates, as a later period would), ``stratified`` draws at random within
    the strata of label ``stratify`` (event or outcome; plainly at random when a cohort is too small
    for strata), seeded."""
    from sklearn.model_selection import train_test_split

    n = len(data)
    n_validation = max(1, round(fraction * n))
    if how == "chronological":
        return data.subset(np.arange(n - n_validation)), data.subset(np.arange(n - n_validation, n))
    if how == "stratified":
        labels = data.labels[stratify].numpy() if stratify else None
        classes, counts = np.unique(labels, return_counts=True) if labels is not None else ([], [0])
        if labels is not None and (min(counts) < 2 or min(n_validation, n - n_validation) < len(classes)):
            labels = None  # too few cases to stratify (tiny cohorts): draw at random instead
        training, validation = train_test_split(np.arange(n), test_size=n_validation, random_state=seed,
                                                stratify=labels)
        return data.subset(np.sort(training)), data.subset(np.sort(validation))
    raise InputError("--split", f"unknown split {how!r}; expected chronological or stratified")
