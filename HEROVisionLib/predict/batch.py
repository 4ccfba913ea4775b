"""Prediction over a cohort: streamed, sharded, resumable, and never stopped by one bad case.

Each case's outputs go to ``out/<case_id>/``, written under a temporary name and renamed when
complete; its ``results.csv`` row is the record of the case. A case that fails gets a folder with
an error row instead, and the batch goes on. ``out/results.csv`` is rebuilt from the case folders
after every case (atomically), so shards running at the same time on the same ``out`` folder merge
by themselves, and an interrupted batch leaves a table of what finished. ``resume`` skips cases
whose row says ``ok`` and retries the others.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import pandas as pd

from ..errors import Cancelled, HEROVisionError, InputError
from ..io.case import Cohort
from ..io.images import write_text_atomic
from ..io.output_folder import OutputFolder, output_folder, remove_within
from .case_prediction import predict_case
from ..models.model_set import ModelSet
from .outputs import holds_only_case_outputs, table_text, write_case_outputs
from .result import error_row

CASE_TABLE = "results.csv"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1 ≤ i ≤ n) → (i, n)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError("--shard", f"expected i/n such as 2/8, got {text!r}") from None
    if not 1 <= index <= count:
        raise InputError("--shard", f"shard {index} of {count} does not exist (1 ≤ i ≤ n)")
    return index, count


def shard_case_ids(case_ids: list[str], shard: tuple[int, int]) -> list[str]:
    """Every n-th case from the i-th: shards are disjoint, cover the cohort, and balance in size."""
    index, count = shard
    return case_ids[index - 1::count]


def _finished(folder: Path) -> bool:
    """A case an earlier run predicted: its table says ok and its results.json reads (a folder
    damaged since is predicted again)."""
    table = folder / CASE_TABLE
    if not table.is_file():
        return False
    try:
        json.loads((folder / "results.json").read_text(encoding="utf-8"))
        status = pd.read_csv(table, dtype=str, keep_default_na=False).get("status")
    except (OSError, ValueError, pd.errors.ParserError):
        return False
    return status is not None and list(status) == ["ok"]


def _check_replaceable(path: Path) -> None:
    """A case's place in the output folder is free or holds an earlier run's case folder."""
    if (path.exists() or path.is_symlink()) and not holds_only_case_outputs(path):
        raise InputError(path, "is in the output folder but is not a case folder HEROVision wrote (a file, a link, "
                               "or a folder holding other files): move it away; nothing was predicted")


def _publish(out: OutputFolder, case_id: str, write) -> None:
    """Write a case's folder under a temporary name, then put it in place of an earlier run's."""
    partial = out.path / f".{case_id}.partial"
    remove_within(partial, out)
    partial.mkdir()
    try:
        write(partial)
        final = out.path / case_id
        _check_replaceable(final)
        remove_within(final, out)
        os.replace(partial, final)
    finally:
        remove_within(partial, out)


def published_case_tables(out: Path) -> list[Path]:
    """The case tables of the case folders under ``out``, in case-id order — not those of a case
    another shard is still writing (its folder is published by a rename when complete)."""
    return [path for path in sorted(Path(out).glob(f"*/{CASE_TABLE}")) if not path.parent.name.startswith(".")]


def collect_table(out: Path, known: dict | None = None) -> pd.DataFrame:
    """The rows of every case folder under ``out``, in case-id order.

    ``known`` (table path → (file stamp, rows)), kept by the caller between calls, spares re-reading
    the case tables that did not change: a batch merges after every case, and reading every table each
    time would cost the square of the cohort's size. A case folder rewritten by another shard, or by a
    resumed run, has a new stamp and is read again."""
    known = {} if known is None else known
    rows = []
    for path in published_case_tables(out):
        try:
            status = path.stat()
            stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
            if path not in known or known[path][0] != stamp:
                known[path] = (stamp, pd.read_csv(path, dtype={"case_id": str}).to_dict("records"))
        except FileNotFoundError:
            continue  # replaced by another shard a moment ago: its new table is read at the next merge
        rows.extend(known[path][1])
    return pd.DataFrame(rows)


def predict_cohort(cohort_folder, models: ModelSet, out, *, shard=(1, 1), resume: bool = False, device="auto",
                   progress: bool = True, advice=None, dicom_studies=None, on_case=None, cancel=None) -> pd.DataFrame:
    """Predict every case of the cohort's shard into ``out``; returns the merged table. ``advice``,
    when given, maps (case, result) to the case's treatment advice dict (or None), stored with it
    (``HEROVisionLib.clinical.treatment.cohort_advice``: prediction does not depend on the treatment layer); a
    case whose advice fails keeps its prediction, with the reason among its warnings. With
    ``dicom_studies`` (one study folder per case id) each case's results are also written as DICOM
    objects of its study; a case whose export fails keeps its prediction, with the reason.
    ``on_case(done, total, case_id)`` is told of the start (0 done) and of each finished case; ``cancel`` (a
    ``threading.Event``) stops the run between cases: the finished cases stay, the merged table is
    written and :class:`~HEROVisionLib.errors.Cancelled` is raised (``resume`` goes on from there)."""
    if dicom_studies is not None and not Path(dicom_studies).is_dir():
        raise InputError(dicom_studies, "not a folder of DICOM studies (one sub-folder per case id)")
    from tqdm import tqdm

    cohort = Cohort(cohort_folder, strict=False)  # a case with a bad row fails alone
    case_ids = shard_case_ids([str(c) for c in cohort.case_ids], shard)
    known = {}  # the case tables already read, for the merges after each case
    with output_folder(out, "batch", inputs=(cohort.folder, *models.paths)) as owner:
        todo = [c for c in case_ids if not (resume and _finished(owner.path / c))]
        for case_id in todo:
            _check_replaceable(owner.path / case_id)
        if on_case is not None:
            on_case(0, len(todo), "")
        for done, case_id in enumerate(tqdm(todo, desc="cases", unit="case", disable=not progress)):
            if cancel is not None and cancel.is_set():
                write_merged_table(owner.path, known)
                raise Cancelled(f"cohort run cancelled after {done} of {len(todo)} case(s); the finished ones are "
                                f"in {owner.path} (resume goes on from there)")
            try:
                case = cohort.case(case_id)
                result = predict_case(case, models, device)
                advised = _advice_or_warning(advice, case, result)
                _publish(owner, case_id, lambda folder: _write_case(result, folder, advised, case, dicom_studies))
            except Exception as error:  # noqa: BLE001 — one bad case must never stop the batch
                row = error_row(case_id, _describe(error))
                _publish(owner, case_id, lambda folder: write_text_atomic(table_text([row]), folder / CASE_TABLE))
            write_merged_table(owner.path, known)
            if on_case is not None:
                on_case(done + 1, len(todo), case_id)
        return write_merged_table(owner.path, known)


def _write_case(result, folder: Path, advised, case, dicom_studies) -> None:
    """The case's outputs, and its DICOM objects when asked; an export that fails is reported among
    the case's warnings (the outputs written again to say so)."""
    write_case_outputs(result, folder, advised)
    if dicom_studies is None:
        return
    from .dicom_export import add_dicom_outputs

    try:
        add_dicom_outputs(folder, Path(dicom_studies) / result.case_id, case)
    except Exception as error:  # noqa: BLE001 — as for the advice: the prediction stands
        result.warnings.append(f"DICOM objects not written: {_describe(error)}")
        write_case_outputs(result, folder, advised)


def _advice_or_warning(advice, case, result) -> dict | None:
    """The case's advice, or None with the reason added to ``result.warnings``: the prediction is
    worth keeping without it."""
    if advice is None:
        return None
    try:
        return advice(case, result)
    except Exception as error:  # noqa: BLE001 — as for a whole case, but the prediction stands
        result.warnings.append(f"treatment advice not computed: {_describe(error)}")
        return None


def _describe(error: Exception) -> str:
    if isinstance(error, HEROVisionError):
        return str(error)
    where = traceback.extract_tb(error.__traceback__)[-1]
    return f"internal error {type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})"


def write_merged_table(out: Path, known: dict | None = None) -> pd.DataFrame:
    """``results.csv`` of every case finished under ``out`` (written atomically), and the table."""
    table = collect_table(out, known)
    write_text_atomic(table.to_csv(index=False, float_format="%.6g"), out / CASE_TABLE)
    return table
