"""*Add to cohort*: the case a radiologist has loaded and contoured in Slicer, written as one case of
a training cohort (:mod:`HEROVisionLib.io.cohort_writer`), so that the people who contour are the
ones who build a site's training data — without a hand-written export in between.

A scene that Predict would refuse (:func:`~.panel_inputs.input_problems`) is refused here too, with
the same words and nothing written; the scene itself is only read.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..io.cohort_writer import add_case_to_cohort
from .nodes import SceneInputs, case_from_scene
from .panel_inputs import input_problems


def add_scene_to_cohort(scene, inputs: SceneInputs, cohort_folder, outcome: dict | None = None, *,
                        replace: bool = False) -> Path:
    """Write the scene's case (``inputs``: volumes, VOIs, b-values, CEUS phases, the clinical values)
    and ``outcome`` (treatment, pfs_months, pfs_event, er_2y — any that are known) into the cohort;
    returns the case folder."""
    problems = input_problems(scene, inputs)
    if problems:
        raise InputError(inputs.case_id, "not added to the cohort: " + "; ".join(problems))
    case = case_from_scene(scene, inputs)
    return add_case_to_cohort(case, cohort_folder, {**inputs.clinical, **(outcome or {})}, replace=replace)
