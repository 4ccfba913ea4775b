"""The case folder and cohort layout of PHANTOM.md §4 — the input contract for phantom and real data.

A case is a folder named by its case id holding, per modality, an image and its ROI label map
(any SimpleITK format, e.g. ``t2wi.nii.gz`` or ``t2wi.nrrd``; a DICOM series may be a folder named
after the modality). A modality whose image is absent is *missing*; one whose image is present
but unusable (no ROI, no b-values) is missing with the reason, so a model can say what it lacked.
A cohort is a folder of cases with ``cohort.csv`` (clinical variables and outcomes).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import SimpleITK as sitk

from ..errors import InputError
from .clinical import check_clinical_record
from .diffusion import DiffusionSeries, bval_path_for, read_diffusion_series
from .geometry import case_roi_on
from .images import IMAGE_SUFFIXES, read_image, read_multiframe
from .numbers import plain_numbers

if TYPE_CHECKING:
    import pandas as pd  # loaded where a cohort table is read: reading one case needs none

MODALITIES = ("ivim", "t2wi", "dwi", "us", "ceus")
MR_MODALITIES = MODALITIES[:3]  # one MR study (and DICOM series of one study)
#: Modalities stored as several frames per voxel (vector images).
MULTIFRAME = {"ivim", "ceus"}

COHORT_COLUMNS = ("case_id", "center", "age", "sex_male", "cirrhosis", "ctp_b", "portal_hypertension",
                  "tumor_number", "tumor_size_cm", "perivascular", "subcapsular", "echo", "afp_high",
                  "alt_high", "ast_high", "inr_high", "cea_high", "ca19_9_high", "pni_low", "ecog",
                  "child_pugh_score", "vascular_invasion", "extrahepatic_spread", "treatment",
                  "pfs_months", "pfs_event", "er_2y")

#: A case id is a name, never a path: it becomes a folder name inside outputs. Letters, digits,
#: ``_ . + -`` and inner spaces; it starts with a letter or digit; at most 128 characters.
CASE_ID_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.+-]{0,126}[A-Za-z0-9_.+-])?")


def check_case_id(case_id, source) -> str:
    """``case_id`` as text if it is a plain name (:data:`CASE_ID_PATTERN`, no ``..``); else an error
    naming ``source``. No separator, ``..``, absolute path or control character can pass, so a case
    id can never point outside the folder it is joined to."""
    text = case_id if isinstance(case_id, str) else ""  # a blank cell reads as NaN
    if not CASE_ID_PATTERN.fullmatch(text) or ".." in text:
        raise InputError(source, f"case id {text!r} is not a plain name (letters, digits, '_', '.', '+', '-', "
                                 "inner spaces; no path separators or '..')")
    return text


def find_image_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` with any known image suffix, or a DICOM folder ``folder/stem``; else None.
    Two of them (``t2wi.nii.gz`` and a corrected ``t2wi.nrrd``) are refused: which one is meant
    cannot be guessed."""
    found = [folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if (folder / stem).is_dir():
        found.append(folder / stem)
    if len(found) > 1:
        raise InputError(folder / stem, f"{len(found)} images of one series ({', '.join(p.name for p in found)}): "
                                        "keep one")
    return found[0] if found else None


def read_frame_times(path, frames: int | None = None) -> tuple[float, ...]:
    """Frame acquisition times in seconds (whitespace separated, one per frame; exactly ``frames``
    of them when given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        times = plain_numbers(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(path, "frame times must be numbers (seconds) separated by spaces") from None
    if not times or not all(math.isfinite(t) and t >= 0 for t in times):
        raise InputError(path, f"frame times must be finite, non-negative seconds, found {list(times)}")
    if any(b <= a for a, b in zip(times, times[1:])):
        raise InputError(path, f"frame times must increase, found {list(times)}")
    if frames is not None and len(times) != frames:
        raise InputError(path, f"{len(times)} frame time(s) for {frames} CEUS frame(s): one time per frame is needed")
    return times


@dataclass
class Case:
    """One patient's folder. Loading is lazy: nothing is read until asked for."""

    folder: Path
    clinical: dict | None = None

    def __post_init__(self):
        self.folder = Path(self.folder)

    @property
    def case_id(self) -> str:
        return str(self.clinical["case_id"]) if self.clinical and "case_id" in self.clinical else self.folder.name

    def image_path(self, modality: str) -> Path | None:
        _check_modality(modality)
        return find_image_file(self.folder, modality)

    def roi_path(self, modality: str) -> Path | None:
        _check_modality(modality)
        return find_image_file(self.folder, f"{modality}_roi")

    @property
    def frame_times_source(self) -> Path:
        """Where the CEUS frame times come from (named in messages)."""
        return self.folder / "ceus.times"

    def missing(self) -> dict[str, str]:
        """Modality → why it cannot be used (absent image, absent ROI, absent frame labels)."""
        reasons = {modality: self._missing_reason(modality) for modality in MODALITIES}
        return {modality: reason for modality, reason in reasons.items() if reason}

    def _missing_reason(self, modality: str) -> str | None:
        """Why ``modality`` cannot be used, or None when its files are there."""
        try:
            image, roi = self.image_path(modality), self.roi_path(modality)
        except InputError as error:
            return str(error)
        if image is None:
            return "no image"
        if roi is None:
            return f"{image.name} has no ROI ({modality}_roi.nii.gz)"
        if modality == "ceus" and not self.frame_times_source.exists():
            return "ceus.times (frame times in seconds) is missing"
        return None

    @property
    def available(self) -> tuple[str, ...]:
        missing = self.missing()
        return tuple(m for m in MODALITIES if m not in missing)

    def _require(self, modality: str) -> Path:
        reason = self._missing_reason(modality)
        if reason:
            raise InputError(self.folder / modality, f"case {self.case_id}: {modality} unavailable ({reason})")
        return self.image_path(modality)

    def load_image(self, modality: str) -> sitk.Image:
        """The modality's image (vector image for IVIM and CEUS)."""
        path = self._require(modality)
        if modality == "ivim":
            return self.load_ivim().image
        return read_multiframe(path) if modality in MULTIFRAME else read_image(path)

    def load_ivim(self) -> DiffusionSeries:
        path = self._require("ivim")
        bval = bval_path_for(path)
        return read_diffusion_series(path, bval if bval.exists() else None)

    def load_ceus_times(self, series: sitk.Image | None = None) -> tuple[float, ...]:
        """The CEUS frame times, exactly one per frame of ``series`` (the CEUS image, read if not given)."""
        series = self.load_image("ceus") if series is None else series
        return read_frame_times(self.frame_times_source, series.GetNumberOfComponentsPerPixel())

    def load_roi(self, modality: str, image: sitk.Image | None = None) -> sitk.Image:
        """The modality's ROI on its image's grid (resampled in physical space if needed)."""
        image_path = self._require(modality)
        image = self.load_image(modality) if image is None else image
        roi_path = self.roi_path(modality)
        return case_roi_on(read_image(roi_path, label=True), image, roi_path, image_path)


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise InputError(modality, f"unknown modality; expected one of {', '.join(MODALITIES)}")


class Cohort:
    """A folder of case folders with ``cohort.csv``. ``truth.csv`` is never read here.

    Every case id must be a plain name (else the cohort is refused: it would name folders). A row
    whose clinical values do not mean what their columns mean is refused when the cohort is read
    (``strict``, for training and evaluation), or only when that case is asked for (a batch goes on
    with the others)."""

    def __init__(self, folder, strict: bool = True):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(self.folder, "cohort folder not found")
        table = self.folder / "cohort.csv"
        if table.exists():
            self.table = read_case_table(table)
            self.problems = _row_problems(self.table, table)
        else:
            ids = sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not ids:
                raise InputError(self.folder, "neither cohort.csv nor case folders found")
            for name in ids:
                check_case_id(name, self.folder / name)
            import pandas as pd

            self.table = pd.DataFrame({"case_id": ids})
            self.problems = {}
        if strict and self.problems:
            raise next(iter(self.problems.values()))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def case_ids(self) -> list[str]:
        return self.table["case_id"].tolist()

    def case(self, case_id: str) -> Case:
        rows = self.table[self.table["case_id"] == case_id]
        if rows.empty:
            raise InputError(self.folder / "cohort.csv", f"no case {case_id!r}")
        if case_id in self.problems:
            raise self.problems[case_id]
        return Case(self.folder / case_id, rows.iloc[0].to_dict())

    def __iter__(self):
        for record in self.table.to_dict("records"):
            yield Case(self.folder / str(record["case_id"]), record)


def _row_problems(table: pd.DataFrame, path: Path) -> dict[str, InputError]:
    """Case id → the first clinical value of its row that cannot mean what its column means. A case
    id that is not a plain name refuses the whole table."""
    problems = {}
    for number, record in enumerate(table.to_dict("records"), 2):  # line 1 is the header
        case_id = check_case_id(record["case_id"], f"{path}: line {number}")
        try:
            check_clinical_record(record, path, f"line {number} (case {case_id})")
        except InputError as error:
            problems[case_id] = error
    return problems


def read_case_table(path: Path) -> pd.DataFrame:
    """A CSV table with one row per case (cohort.csv, results.csv, truth.csv): readable, keyed by a
    unique text ``case_id``."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"case_id": str})
    except UnicodeDecodeError:
        raise InputError(path, "is not UTF-8 text: save it as UTF-8 (\"CSV UTF-8\" in spreadsheet programs)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(path, f"not a readable CSV table ({error})") from None
    with open(path, encoding="utf-8-sig", newline="") as handle:  # pandas renames repeated columns: read the header
        header = next(csv.reader(handle), [])
    if "case_id" not in table.columns:
        separator = next((name for sign, name in ((";", "semicolons"), ("\t", "tabs"))
                          if any("case_id" in cell.split(sign) for cell in header)), None)
        raise InputError(path, f"is separated by {separator}: save it comma-separated" if separator
                         else "has no case_id column")
    # Spreadsheet programs add trailing separators: columns without a name or a value are not columns.
    unnamed = [k for k, name in enumerate(header) if not name.strip()]
    if any(table.iloc[:, k].notna().any() for k in unnamed):
        raise InputError(path, "a column with values has no name in the header")
    table = table.drop(columns=table.columns[unnamed])
    header = [name for name in header if name.strip()]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(path, f"column(s) {', '.join(repeated)} appear more than once in the header")
    duplicated = table["case_id"][table["case_id"].duplicated()].tolist()
    if duplicated:
        raise InputError(path, f"duplicate case_id(s) {duplicated}")
    return table


def parse_clinical_values(text: str, source: str = "clinical values") -> dict[str, str]:
    """``NAME=VALUE`` pairs separated by commas (e.g. ``afp_high=1, portal_hypertension=0``), as typed
    on the command line or in the Slicer panel, each checked against its column's meaning; values
    stay text until a nomogram reads them."""
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise InputError(source, f"{item!r} is not NAME=VALUE")
        values[name.strip()] = value.strip()
    check_clinical_record(values, source)
    return values
