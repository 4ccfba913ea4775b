"""A site's training cohort built from Slicer scenes (slicer-core, real MRML): cases added from the
scene read back through every check of ``Case``, predict as the scene did, and train; a taken case
id and a scene Predict would refuse write nothing; cohort runs report each case and stop between
cases when cancelled, keeping what is finished."""

import threading

import pandas as pd
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test dependencies")

from HEROVisionLib.cli import main  # noqa: E402
from HEROVisionLib.errors import Cancelled, InputError  # noqa: E402
from HEROVisionLib.io.case import Case, Cohort  # noqa: E402
from HEROVisionLib.predict import load_models, predict_case, predict_cohort  # noqa: E402
from HEROVisionLib.slicer.add_to_cohort import add_scene_to_cohort  # noqa: E402
from HEROVisionLib.slicer.nodes import predict_scene, scene_inputs_from_case  # noqa: E402

OUTCOME = ("treatment", "pfs_months", "pfs_event", "er_2y")
SCORES = ("ta_risk_score", "sr_risk_score", "er_probability", "er_probability_combined", "tumor_size_cm",
          "tumor_volume_ml", "ivim_D_median")


@pytest.fixture(scope="module")
def models(untrained_models):
    return load_models(untrained_models, "cpu")


def _scene_case(phantom_cohort, case_id, without=()):
    """A fresh scene holding the phantom case as Slicer holds it, less the modalities ``without``;
    its clinical values typed as in the panel, and its outcome row."""
    cohort = Cohort(phantom_cohort)
    case = cohort.case(case_id)
    scene = slicer.vtkMRMLScene()
    inputs = scene_inputs_from_case(scene, Case(case.folder))
    for modality in without:
        inputs.segments.pop(modality, None)
        if modality == "ceus":
            inputs.ceus_phase_volumes = []
        else:
            inputs.volumes.pop(modality, None)
    row = {k: v for k, v in case.clinical.items() if k not in ("case_id", "center", *OUTCOME) and pd.notna(v)}
    inputs.clinical = {k: str(v) for k, v in row.items()}
    return scene, inputs, {k: str(case.clinical[k]) for k in OUTCOME}


def _state(scene) -> list:
    """What the scene holds: every node's id, class and modification time."""
    return [(node.GetID(), node.GetClassName(), node.GetMTime())
            for node in (scene.GetNthNode(k) for k in range(scene.GetNumberOfNodes()))]


@pytest.fixture(scope="module")
def built(phantom_cohort, models, tmp_path_factory):
    """Every phantom case added from its own scene (A0002 without CEUS and US), with the scenes'
    own predictions."""
    folder = tmp_path_factory.mktemp("site") / "cohort"
    predicted = {}
    for case_id in Cohort(phantom_cohort).case_ids:
        without = ("ceus", "us") if case_id == "A0002" else ()
        scene, inputs, outcome = _scene_case(phantom_cohort, case_id, without)
        before = _state(scene)
        written = add_scene_to_cohort(scene, inputs, folder, outcome)
        assert written == folder / case_id and _state(scene) == before  # the scene only read
        predicted[case_id] = predict_scene(scene, inputs, models, "cpu")[0].row()
    return folder, predicted


def test_each_added_case_reads_back_through_every_check_and_predicts_as_the_scene(built, phantom_cohort, models):
    folder, predicted = built
    cohort = Cohort(folder)  # strict: every row's values mean what their columns mean
    source = Cohort(phantom_cohort)
    assert cohort.case_ids == source.case_ids
    for case in cohort:
        expected = source.case(case.case_id)
        for column in ("age", "tumor_size_cm", "afp_high", "ecog", *OUTCOME):
            assert str(case.clinical[column]) == str(expected.clinical[column]), (case.case_id, column)
        without = {"ceus", "us"} if case.case_id == "A0002" else set()
        assert set(case.available) == set(Case(expected.folder).available) - without
        assert case.load_ivim().bvalues == Case(expected.folder).load_ivim().bvalues
        row = predict_case(case, models, "cpu").row()
        assert row["inputs_used"] == predicted[case.case_id]["inputs_used"]
        for column in SCORES:
            assert row[column] == pytest.approx(predicted[case.case_id][column], abs=1e-5), (case.case_id, column)


def test_the_cohort_trains(built, tmp_path):
    folder, _ = built
    assert main(["train", "--task", "er", "--cohort", str(folder), "--out", str(tmp_path / "IVIM-ER"),
                 "--preset", "tiny", "--device", "cpu", "--workers", "1"]) == 0
    assert (tmp_path / "IVIM-ER" / "manifest.sha256").is_file()


def test_a_taken_case_id_or_a_scene_predict_would_refuse_writes_nothing(built, phantom_cohort):
    folder, _ = built
    files = sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    scene, inputs, outcome = _scene_case(phantom_cohort, "A0003")
    with pytest.raises(InputError, match="A0003: is already a case of this cohort"):
        add_scene_to_cohort(scene, inputs, folder, outcome)
    inputs.case_id = "A0003-bis"
    inputs.segments.pop("t2wi")
    with pytest.raises(InputError, match="A0003-bis: not added to the cohort: T2WI: choose the tumour segment"):
        add_scene_to_cohort(scene, inputs, folder, outcome)
    inputs.segments["t2wi"] = inputs.segmentation.GetSegmentation().GetNthSegmentID(1)
    with pytest.raises(InputError, match="cohort values: column pfs_event: "):
        add_scene_to_cohort(scene, inputs, folder, {**outcome, "pfs_event": "2"})
    with pytest.raises(InputError, match=r"unknown column\(s\) pfs_month"):
        add_scene_to_cohort(scene, inputs, folder, {"pfs_month": "12"})
    assert sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*")) == files


def test_a_case_is_replaced_only_when_asked_and_only_over_case_files(phantom_cohort, tmp_path):
    scene, inputs, outcome = _scene_case(phantom_cohort, "A0004")
    add_scene_to_cohort(scene, inputs, tmp_path / "cohort", outcome)
    changed = {**outcome, "pfs_event": "1", "pfs_months": "3.5"}
    add_scene_to_cohort(scene, inputs, tmp_path / "cohort", changed, replace=True)
    table = pd.read_csv(tmp_path / "cohort" / "cohort.csv", dtype=str)
    assert table["case_id"].tolist() == ["A0004"] and table.loc[0, "pfs_months"] == "3.5"
    (tmp_path / "cohort" / "A0004" / "notes.txt").write_text("the radiologist's notes")
    with pytest.raises(InputError, match=r"holds file\(s\) that are not the case layout's \(notes.txt\)"):
        add_scene_to_cohort(scene, inputs, tmp_path / "cohort", outcome, replace=True)
    assert (tmp_path / "cohort" / "A0004" / "notes.txt").is_file()
    (tmp_path / "cohort" / "A0004").rename(tmp_path / "kept")
    (tmp_path / "cohort" / "A0004").symlink_to(tmp_path / "kept")  # a link to a folder outside the cohort
    with pytest.raises(InputError, match="is not a plain case folder"):
        add_scene_to_cohort(scene, inputs, tmp_path / "cohort", outcome, replace=True)
    assert (tmp_path / "kept" / "notes.txt").is_file() and (tmp_path / "cohort" / "A0004").is_symlink()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("")
    with pytest.raises(InputError, match="is not a cohort"):
        add_scene_to_cohort(scene, inputs, tmp_path / "other", outcome)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["thesis.tex"]


def test_a_cohort_run_reports_each_case_and_stops_between_cases_when_cancelled(built, models, tmp_path):
    folder, _ = built
    cancel, heard = threading.Event(), []

    def on_case(done, total, case_id):
        heard.append((done, total, case_id))
        if done == 2:
            cancel.set()

    with pytest.raises(Cancelled, match="cancelled after 2 of 10 case"):
        predict_cohort(folder, models, tmp_path / "run", device="cpu", progress=False, on_case=on_case, cancel=cancel)
    assert heard == [(0, 10, ""), (1, 10, "A0001"), (2, 10, "A0002")]
    assert pd.read_csv(tmp_path / "run" / "results.csv", dtype={"case_id": str})["case_id"].tolist() == ["A0001", "A0002"]
    heard.clear()
    table = predict_cohort(folder, models, tmp_path / "run", resume=True, device="cpu", progress=False,
                           on_case=lambda *report: heard.append(report))
    assert len(table) == 10 and (table["status"] == "ok").all() and heard[0] == (0, 8, "")
