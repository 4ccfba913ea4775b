"""Cohort prediction: one corrupt case never stops the batch; resume skips what finished; shards
partition the cohort; the predict and batch commands."""

import json
import shutil

import pandas as pd
import pytest

from HEROVisionLib.cli import main
from HEROVisionLib.errors import InputError
from HEROVisionLib.predict import parse_shard, predict_cohort
from HEROVisionLib.io.images import write_text_atomic
from HEROVisionLib.io.output_folder import MARKER, claim_output_folder
from HEROVisionLib.predict.batch import _publish, collect_table, shard_case_ids
from HEROVisionLib.predict.outputs import table_text
from HEROVisionLib.predict.result import error_row
from HEROVisionLib.models.model_set import load_models
from HEROVisionLib.clinical.treatment import case_advice, cohort_advice


@pytest.fixture
def small_cohort(phantom_cohort, tmp_path):
    """Three phantom cases; A0002 corrupt in every image."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    for case_id in ("A0001", "A0002", "A0003"):
        shutil.copytree(phantom_cohort / case_id, folder / case_id)
    table = pd.read_csv(phantom_cohort / "cohort.csv", dtype={"case_id": str})
    table[table["case_id"].isin(["A0001", "A0002", "A0003"])].to_csv(folder / "cohort.csv", index=False)
    for image in (folder / "A0002").glob("*"):
        if not image.name.endswith((".bval", ".times")) and "_roi" not in image.name:
            image.write_bytes(b"not an image")
    return folder


def test_a_corrupt_case_is_reported_and_the_others_finish_then_resume_skips_them(small_cohort, untrained_models, tmp_path):
    out = tmp_path / "out"
    models = load_models(untrained_models, "cpu")
    table = predict_cohort(small_cohort, models, out, progress=False).set_index("case_id")
    assert list(table.index) == ["A0001", "A0002", "A0003"]
    assert list(table["status"]) == ["ok", "error", "ok"]
    assert "A0002" in table.loc["A0002", "error"] and "no usable image" in table.loc["A0002", "error"]
    assert (out / "A0001" / "attention_ta_t2wi.nrrd").is_file() and (out / "A0003" / "ivim_D.nrrd").is_file()
    assert pd.read_csv(out / "results.csv", dtype={"case_id": str})["case_id"].tolist() == ["A0001", "A0002", "A0003"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [MARKER]  # no partial folders left

    finished = {case: (out / case / "results.csv").stat().st_mtime_ns for case in ("A0001", "A0003")}
    failed_before = (out / "A0002" / "results.csv").stat().st_mtime_ns
    table = predict_cohort(small_cohort, models, out, resume=True, progress=False).set_index("case_id")
    assert {case: (out / case / "results.csv").stat().st_mtime_ns for case in finished} == finished
    assert (out / "A0002" / "results.csv").stat().st_mtime_ns != failed_before  # the failed case was retried
    assert list(table["status"]) == ["ok", "error", "ok"]


def test_resume_predicts_a_damaged_case_again_and_never_replaces_what_it_did_not_write(small_cohort, untrained_models,
                                                                                      tmp_path):
    out = tmp_path / "out"
    models = load_models(untrained_models, "cpu")
    predict_cohort(small_cohort, models, out, progress=False)
    (out / "A0001" / "results.json").write_text("{")  # damaged since: predicted again, not skipped
    untouched = (out / "A0003" / "results.csv").stat().st_mtime_ns
    table = predict_cohort(small_cohort, models, out, resume=True, progress=False).set_index("case_id")
    assert json.loads((out / "A0001" / "results.json").read_text())["case_id"] == "A0001"
    assert table.loc["A0001", "status"] == "ok" and (out / "A0003" / "results.csv").stat().st_mtime_ns == untouched

    (out / "A0002" / "my_notes.txt").write_text("mine")  # the failed case would be retried over it
    with pytest.raises(InputError, match=r"A0002: is in the output folder but is not a case folder HEROVision wrote"):
        predict_cohort(small_cohort, models, out, resume=True, progress=False)
    assert (out / "A0002" / "my_notes.txt").read_text() == "mine"
    shutil.rmtree(out / "A0001")
    (out / "A0001").write_text("a file where a case folder was")
    with pytest.raises(InputError, match=r"A0001: is in the output folder but is not a case folder"):
        predict_cohort(small_cohort, models, out, resume=True, progress=False)
    assert (out / "A0001").read_text() == "a file where a case folder was"


def test_processes_split_the_cohort_share_the_cores_and_give_one_table(small_cohort, untrained_models, tmp_path,
                                                                        capsys):
    """``--processes 2``: two shard processes with half the cores each write one merged table equal to
    a single process's, the corrupt case an error row of it."""
    single = predict_cohort(small_cohort, load_models(untrained_models, "cpu"), tmp_path / "single",
                            progress=False).set_index("case_id")
    code = main(["batch", str(small_cohort), "--out", str(tmp_path / "split"), "--processes", "2", "--models",
                 str(untrained_models), "--device", "cpu", "--advice-draws", "0"])
    printed = capsys.readouterr().out
    from HEROVisionLib.devices import available_cores

    assert code == 1 and f"2 shards running, {max(1, available_cores() // 2)} thread(s) each" in printed  # 1: a case failed
    assert "2 case(s) predicted, 1 failed" in printed
    split = pd.read_csv(tmp_path / "split" / "results.csv", dtype={"case_id": str}).set_index("case_id")
    assert list(split["status"]) == ["ok", "error", "ok"]
    for column in ("ta_risk_score", "sr_risk_score", "er_probability"):
        assert split.loc[["A0001", "A0003"], column].to_numpy() == pytest.approx(
            single.loc[["A0001", "A0003"], column].to_numpy(), abs=1e-6)
    assert main(["batch", str(small_cohort), "--out", str(tmp_path / "both"), "--processes", "2", "--shard", "1/2"]) == 2
    assert "give --processes or --shard, not both" in capsys.readouterr().err


def test_a_case_whose_advice_fails_keeps_its_prediction(small_cohort, untrained_models, tmp_path):
    """The advice is an extra: when it fails (here A0003's, asked with an impossible draw count), the
    case's prediction is still written, the advice columns stay empty and the reason is in its warnings."""
    models = load_models(untrained_models, "cpu")
    out = tmp_path / "out"
    table = predict_cohort(small_cohort, models, out, progress=False, advice=lambda case, result: case_advice(
        case, result, models, draws=2 if case.case_id == "A0001" else -1)).set_index("case_id")
    assert list(table["status"]) == ["ok", "error", "ok"]
    assert table.loc["A0001", "advice_category"] == json.loads((out / "A0001" / "advice.json").read_text())["category"]
    assert pd.isna(table.loc["A0003", "advice_category"]) and not (out / "A0003" / "advice.json").exists()
    assert table.loc["A0003", ["ta_risk_score", "sr_pfs_2y"]].notna().all()
    warnings = json.loads((out / "A0003" / "results.json").read_text())["warnings"]
    assert "treatment advice not computed: advice draws: must be 0 (no advice) or more, got -1" in warnings
    with pytest.raises(InputError, match="advice draws: must be 0"):  # a whole cohort asked so: refused at once
        cohort_advice(models, draws=-1)


def test_the_merged_table_reads_again_the_cases_another_shard_rewrote(tmp_path):
    """The batch keeps the case tables it read; a case folder replaced since (a shard or a resumed run
    on the same folder) must be read again, a new one added, a removed one dropped."""
    owner = claim_output_folder(tmp_path, "batch")

    def publish(case_id, message):
        _publish(owner, case_id, lambda folder: write_text_atomic(table_text([error_row(case_id, message)]),
                                                                     folder / "results.csv"))

    for case_id in ("A0001", "A0002", "A0003"):
        publish(case_id, "first try")
    known = {}
    assert collect_table(tmp_path, known)["error"].tolist() == ["first try"] * 3
    publish("A0002", "second try")
    publish("A0004", "new case")
    shutil.rmtree(tmp_path / "A0001")
    table = collect_table(tmp_path, known)
    assert table["case_id"].tolist() == ["A0002", "A0003", "A0004"]
    assert table["error"].tolist() == ["second try", "first try", "new case"]
    pd.testing.assert_frame_equal(table, collect_table(tmp_path))  # as read from scratch


def test_shards_partition_the_cohort():
    ids = [f"A{i:04d}" for i in range(1, 12)]
    shards = [shard_case_ids(ids, (i, 4)) for i in range(1, 5)]
    assert sorted(sum(shards, [])) == ids and max(map(len, shards)) - min(map(len, shards)) <= 1
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "two"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_predict_and_batch_commands(phantom_cohort, untrained_models, tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["predict", str(phantom_cohort / "A0005"), "--out", str(out), "--models", str(untrained_models),
                 "--device", "cpu"]) == 0
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["case_id"] == "A0005" and row["status"] == "ok"
    assert {"attention_ta_t2wi.nrrd", "attention_sr_ceus.nrrd", "attention_er_maps.nrrd", "ivim_D.nrrd",
            "results.json", "advice.json"} <= {p.name for p in out.iterdir()}
    advice = json.loads((out / "advice.json").read_text())
    assert row["advice_category"] == advice["category"] and row["advice_stability"] == pytest.approx(advice["stability"])
    assert advice["draws"] == 32 and "untrained placeholder models" in capsys.readouterr().out

    assert main(["batch", str(phantom_cohort), "--out", str(tmp_path / "b"), "--shard", "4/4", "--advice-draws", "4",
                 "--models", str(untrained_models), "--device", "cpu"]) == 0
    table = pd.read_csv(tmp_path / "b" / "results.csv")
    assert table["case_id"].tolist() == ["A0004", "A0008"]
    cohort = pd.read_csv(phantom_cohort / "cohort.csv", dtype={"case_id": str}).set_index("case_id")
    for row in table.itertuples():  # each case advised against the treatment its record plans
        advice = json.loads((tmp_path / "b" / row.case_id / "advice.json").read_text())
        assert advice["draws"] == 4 and row.advice_category == advice["category"] and advice["category"] != "favours"
        assert advice["category"] in ("switch", "either", "both high", "keep")
        if advice["category"] == "keep":
            assert advice["treatment"] == cohort.loc[row.case_id, "treatment"]

    assert main(["predict", str(phantom_cohort / "A0005"), "--out", str(tmp_path / "quick"), "--advice-draws", "0",
                 "--models", str(untrained_models), "--device", "cpu"]) == 0
    assert not (tmp_path / "quick" / "advice.json").exists()
    assert pd.read_csv(tmp_path / "quick" / "results.csv")["advice_category"].isna().all()
    with pytest.raises(SystemExit):  # refused before any case is predicted
        main(["batch", str(phantom_cohort), "--out", str(tmp_path / "y"), "--advice-draws", "-1"])
    assert "--advice-draws: must be 0 (no advice) or more" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()

    assert main(["predict", str(phantom_cohort / "A0005"), "--out", str(tmp_path / "x"),
                 "--models", str(tmp_path / "nowhere")]) == 2
    assert "model packages missing" in capsys.readouterr().err
