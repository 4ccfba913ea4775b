"""Writing a case's results: table row, JSON, overlays and maps as NRRD named for what they show
(``attention_ta_t2wi.nrrd`` overlays the T2WI, ``ivim_D.nrrd`` the IVIM series), and the treatment
advice when there is one."""

from __future__ import annotations

import io
import json
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd

from ..io.images import write_image, write_text_atomic
from .result import ADVICE_COLUMNS, RESULT_COLUMNS, PredictionResult, advice_row


#: The sub-folder of a case folder that holds its DICOM objects (``--dicom``).
DICOM_FOLDER = "dicom"
#: Every name a case folder may hold: what :func:`write_case_outputs` and the DICOM export write.
CASE_OUTPUT_NAMES = ("results.csv", "results.json", "advice.json", "attention_*.nrrd", "ivim_*.nrrd", DICOM_FOLDER)


def holds_only_case_outputs(folder: Path) -> bool:
    """A real folder (not a link) holding nothing but names a case's outputs have: an earlier run's
    case folder, which a new run may replace — never a file or folder somebody else put there."""
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and all(
        any(fnmatch(item.name, pattern) for pattern in CASE_OUTPUT_NAMES) for item in folder.iterdir())


def table_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS + ADVICE_COLUMNS)).to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


def write_case_outputs(result: PredictionResult, folder, advice: dict | None = None) -> list[Path]:
    """All outputs of one case into ``folder`` (each file atomic; stage the folder for all-or-nothing);
    ``advice`` (``TreatmentAdvice.to_dict()``) goes to ``advice.json`` and the row's ``advice_…`` columns."""
    folder = Path(folder)
    written = [write_text_atomic(table_text([{**result.row(), **advice_row(advice)}]), folder / "results.csv"),
               write_text_atomic(result.to_json() + "\n", folder / "results.json")]
    if advice is not None:
        written.append(write_text_atomic(json.dumps(advice, indent=2) + "\n", folder / "advice.json"))
    for name, image in {**result.overlays, **result.maps}.items():
        written.append(write_image(image, folder / f"{name}.nrrd"))
    return written
