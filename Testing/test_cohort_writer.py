"""Cases written into a training cohort (the engine of Slicer's *Add to cohort*, tested on case
folders here): sessions adding at once lose no row, a stale lock is named, and a case reads back
with its values."""

import threading

import pandas as pd
import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Case, Cohort
from HEROVisionLib.io.cohort_writer import LOCK_NAME, add_case_to_cohort


def test_sessions_adding_at_once_lose_no_row(phantom_cohort, tmp_path):
    cohort = Cohort(phantom_cohort)
    ids = cohort.case_ids[:4]
    errors = []

    def add(case_id):
        try:
            add_case_to_cohort(Case(phantom_cohort / case_id), tmp_path / "site", {"treatment": "TA", "pfs_months": "12"})
        except Exception as error:  # noqa: BLE001 — collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(case_id,)) for case_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    table = pd.read_csv(tmp_path / "site" / "cohort.csv", dtype={"case_id": str})
    assert sorted(table["case_id"]) == sorted(ids) and not (tmp_path / "site" / LOCK_NAME).exists()
    written = Cohort(tmp_path / "site").case(ids[0])
    assert written.load_ivim().bvalues == Case(phantom_cohort / ids[0]).load_ivim().bvalues
    assert set(written.available) == set(Case(phantom_cohort / ids[0]).available)


def test_a_lock_left_by_a_crashed_session_is_named(phantom_cohort, tmp_path, monkeypatch):
    import HEROVisionLib.io.cohort_writer as writer

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / LOCK_NAME).write_text("")
    monkeypatch.setattr(writer, "LOCK_WAIT_S", 0.3)
    with pytest.raises(InputError, match=rf"{LOCK_NAME}: another HEROVision has held this lock"):
        add_case_to_cohort(Case(phantom_cohort / "A0001"), tmp_path / "site", {})
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == [LOCK_NAME]
