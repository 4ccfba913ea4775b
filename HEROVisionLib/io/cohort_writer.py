"""One case written into a training cohort folder (the layout of docs/PHANTOM.md §4) with its row
appended to ``cohort.csv`` — what Slicer's *Add to cohort* does with a case a radiologist has loaded
and contoured, so that no site writes its own export (where b-value order, ROI grids and frame
times go wrong silently).

* Images and VOIs are written as NRRD (double-precision geometry), IVIM with ``ivim.bval`` in volume
  order, CEUS with ``ceus.times``; the case reads back through :class:`~.case.Case` as it was given.
* The case folder appears whole or not at all (written under a hidden name, then renamed), and
  ``cohort.csv`` is rewritten atomically under a lock file, its columns and other rows kept as
  they were: two Slicer sessions adding cases at once do not lose a row.
* The cohort folder must be new, empty or a cohort (it holds ``cohort.csv``); nothing else in it is
  touched. An existing case id is refused unless ``replace``; even then a folder holding files that
  are not the case layout's is refused, not deleted.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from .case import COHORT_COLUMNS, MODALITIES, check_case_id
from .clinical import CLINICAL_FIELDS, check_clinical_record
from .diffusion import write_diffusion_series
from .images import IMAGE_SUFFIXES, write_image, write_multiframe, write_text_atomic

#: The files a case folder may hold (images and VOIs in any format HEROVision reads, b-values, frame times).
CASE_LAYOUT = ({f"{stem}{suffix}" for m in MODALITIES for stem in (m, f"{m}_roi") for suffix in IMAGE_SUFFIXES}
               | {"ivim.bval", "ceus.times"})
LOCK_NAME = ".cohort.csv.lock"
LOCK_WAIT_S = 30.0


def add_case_to_cohort(case, cohort_folder, values: dict, *, replace: bool = False) -> Path:
    """Write ``case`` (a :class:`~.memory_case.MemoryCase`: every modality with its VOI) into
    ``cohort_folder/<case id>`` and its ``values`` (clinical and outcome columns) as its row of
    ``cohort.csv``; returns the case folder."""
    case_id = check_case_id(case.case_id, "case id")
    unknown = sorted(set(values) - set(COHORT_COLUMNS) - set(CLINICAL_FIELDS))
    if unknown:
        raise InputError("cohort values", f"unknown column(s) {', '.join(unknown)}; known: "
                                          f"{', '.join(c for c in COHORT_COLUMNS if c != 'case_id')}, afp_ng_ml")
    check_clinical_record(values, "cohort values")
    if not case.available:
        raise InputError(case_id, "no modality with its tumour VOI: nothing to add")
    folder = _cohort_folder(cohort_folder)
    with _locked(folder):
        _refuse_unless_cohort(folder)  # what another session did meanwhile is complete now
        header, rows = _read_table(folder / "cohort.csv")
        target = folder / case_id
        if (target.exists() or any(row.get("case_id") == case_id for row in rows)) and not replace:
            raise InputError(target, "is already a case of this cohort: choose another case id, or replace it")
        if target.exists():
            _refuse_foreign_files(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{case_id}.", suffix=".partial", dir=folder))
        old = None
        try:
            _write_case_files(case, staging)
            row = {"case_id": case_id, **{name: str(value) for name, value in values.items() if value is not None}}
            header = (header or list(COHORT_COLUMNS)) + [name for name in row if name not in (header or COHORT_COLUMNS)]
            rows = [r for r in rows if r.get("case_id") != case_id] + [row]
            if target.exists():
                old = target.rename(staging.with_suffix(".replaced"))
            os.replace(staging, target)
            try:
                write_text_atomic(_table_text(header, rows), folder / "cohort.csv")
            except BaseException:
                _remove(target, folder)  # the case written a moment ago, under the lock
                if old is not None:
                    old.rename(target)
                raise
            if old is not None:
                _remove(old, folder)
        finally:
            if staging.exists():
                _remove(staging, folder)
    return target


def _remove(path: Path, folder: Path) -> None:
    """Delete a case folder this call wrote or replaced — checked at this moment to be a real folder
    directly inside the (resolved) cohort folder, never a link out of it."""
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != folder:
        raise InputError(path, f"is not a folder directly inside {folder}: not removed")
    shutil.rmtree(path)


def _cohort_folder(folder) -> Path:
    """The resolved cohort folder, made when new. A folder that is not a cohort is refused before
    anything is written — unless another session holds its lock (it is making it one: judged again
    under the lock)."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "exists and is not a folder")
    if folder.is_dir() and not (folder / LOCK_NAME).exists():
        _refuse_unless_cohort(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _refuse_unless_cohort(folder: Path) -> None:
    """A cohort holds cohort.csv; a new one nothing but what a session adding to it writes first."""
    if (folder / "cohort.csv").is_file():
        return
    if any(not (p.name == LOCK_NAME or (p.name.startswith(".") and p.name.endswith((".partial", ".replaced"))))
           for p in folder.iterdir()):
        raise InputError(folder, "is not a cohort (no cohort.csv) and not empty: give a cohort folder or a new one")


@contextmanager
def _locked(folder: Path):
    """Hold ``folder``'s lock file while cohort.csv is read, changed and written."""
    lock = folder / LOCK_NAME
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise InputError(lock, f"another HEROVision has held this lock for over {LOCK_WAIT_S:.0f} s; "
                                       "if none is adding cases, delete the file") from None
            time.sleep(0.1)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    if not path.is_file():
        return [], []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    if "case_id" not in header:
        raise InputError(path, "has no case_id column")
    return header, rows


def _table_text(header: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _refuse_foreign_files(folder: Path) -> None:
    if folder.is_symlink() or not folder.is_dir():
        raise InputError(folder, "is not a plain case folder (a link or a file): move it before replacing the case")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in CASE_LAYOUT)
    if foreign:
        raise InputError(folder, f"holds file(s) that are not the case layout's ({', '.join(foreign[:3])}): "
                                 "move them before replacing the case")


def _write_case_files(case, folder: Path) -> None:
    for modality in case.available:
        image = case.load_image(modality)
        if modality == "ivim":
            write_diffusion_series(case.load_ivim(), folder / "ivim.nrrd")
        elif modality == "ceus":
            write_multiframe(image, folder / "ceus.nrrd")
            write_text_atomic(" ".join(f"{t:.10g}" for t in case.load_ceus_times(image)) + "\n", folder / "ceus.times")
        else:
            write_image(image, folder / f"{modality}.nrrd")
        write_image(case.load_roi(modality, image), folder / f"{modality}_roi.nrrd")
