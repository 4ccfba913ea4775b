"""Writing a case's results: table row, JSON, overlays and maps as NRRD named for what they show
(``attention_ta_t2wi.nrrd`` overlays the T2WI, ``ivim_D.nrrd`` the IVIM series)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ..io.images import write_image, write_text_atomic
from .result import RESULT_COLUMNS, PredictionResult


def table_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


def write_case_outputs(result: PredictionResult, folder) -> list[Path]:
    """All outputs of one case into ``folder`` (each file atomic; stage the folder for all-or-nothing)."""
    folder = Path(folder)
    written = [write_text_atomic(table_text([result.row()]), folder / "results.csv"),
               write_text_atomic(result.to_json() + "\n", folder / "results.json")]
    for name, image in {**result.overlays, **result.maps}.items():
        written.append(write_image(image, folder / f"{name}.nrrd"))
    return written
