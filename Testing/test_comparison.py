"""The comparison with staging systems and clinical models: every number of a row is the statistic
checked elsewhere against R (truncated Harrell C, DeLong), measured on the patients the predictor
can score; constant predictors are called constant; the command writes the table and figure."""

import json

import numpy as np
import pandas as pd
import pytest

from HEROVisionLib.cli import main
from HEROVisionLib.staging import SYSTEMS
from HEROVisionLib.stats import delong_test, harrell_c
from HEROVisionLib.stats.predictor_comparison import compare_predictors


@pytest.fixture(scope="module")
def cohort():
    """200 patients whose risk follows ``truth``; a model sees it with noise, a 4-level stage coarsely."""
    rng = np.random.default_rng(7)
    truth = rng.normal(size=200)
    onset, censoring = rng.exponential(30 * np.exp(-truth)), rng.uniform(12, 72, 200)
    stage = np.digitize(truth + rng.normal(size=200), [-1.0, 0.0, 1.0]).astype(float)
    stage[:20] = np.nan  # a system that cannot stage 20 patients
    predictors = {"model": truth + rng.normal(scale=0.5, size=200), "stage": stage, "same": None,
                  "constant": np.full(200, 2.0)}
    predictors["same"] = predictors["model"].copy()
    return predictors, np.minimum(onset, censoring), onset <= censoring


def test_each_row_holds_the_truncated_c_its_interval_and_the_paired_test_on_the_patients_it_scores(cohort):
    predictors, time, event = cohort
    table = compare_predictors(predictors, "model", time, event, n_boot=200).set_index("predictor")
    assert list(table.index) == ["model", "stage", "same", "constant"]
    staged = np.isfinite(predictors["stage"])
    stage = table.loc["stage"]
    assert stage["patients"] == 180
    assert stage["c_index"] == pytest.approx(harrell_c(predictors["stage"][staged], time[staged], event[staged], tau=24))
    reference_on_staged = harrell_c(predictors["model"][staged], time[staged], event[staged], tau=24)
    assert stage["c_difference"] == pytest.approx(stage["c_index"] - reference_on_staged)
    assert stage["c_index_lower"] < stage["c_index"] < stage["c_index_upper"]
    known = staged & ((event & (time <= 24)) | (time > 24))
    progressed = (event & (time <= 24))[known]
    assert stage["auc_delong_p"] == pytest.approx(
        delong_test(progressed, predictors["stage"][known], predictors["model"][known]).p)
    for horizon in ("12", "24", "36"):
        assert stage[f"auc_{horizon}m_lower"] < stage[f"auc_{horizon}m"] < stage[f"auc_{horizon}m_upper"]
    assert stage["c_difference"] < 0 and stage["c_difference_p"] < 0.05  # the coarse stage ranks worse
    assert table.loc["same", "c_difference"] == 0 and table.loc["same", "c_difference_p"] == 1
    assert table.loc["same", "auc_delong_p"] == pytest.approx(1)
    assert np.isnan(table.loc["model", "c_difference"])  # the reference is not compared with itself


def test_a_constant_predictor_is_reported_as_constant_not_as_c_one_half(cohort):
    predictors, time, event = cohort
    row = compare_predictors(predictors, "model", time, event, n_boot=20).set_index("predictor").loc["constant"]
    assert bool(row["constant"]) and np.isnan(row["c_index"]) and "constant on this cohort" in row["note"]


def test_evaluate_compare_writes_one_row_per_predictor_with_ci_and_p_and_records_it_on_the_card(tiny_packages, phantom_cohort, tmp_path, capsys):
    out = tmp_path / "comparison"
    assert main(["evaluate", "--package", str(tiny_packages / "HEROVision-TA"), "--cohort", str(phantom_cohort),
                 "--out", str(out), "--bootstrap", "30", "--device", "cpu", "--workers", "1", "--compare",
                 "--record"]) == 0
    table = pd.read_csv(out / "comparison.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    shown = set(table["predictor"])
    left_out = set(metrics["comparison"]["left_out"])
    expected = {"HEROVision-TA", "Nomogram", "Clinical model", *SYSTEMS, *(f"{s} + HEROVision-TA" for s in SYSTEMS)}
    assert shown | left_out == expected and not shown & left_out and {"HEROVision-TA", *SYSTEMS} <= shown
    scored = table[table["c_index"].notna()]
    assert len(scored) and (scored["c_index_lower"] <= scored["c_index_upper"]).all()
    assert scored[scored["predictor"] != "HEROVision-TA"]["c_difference_p"].between(0, 1).all()
    assert (table[table["c_index"].isna()]["note"].fillna("").astype(str).str.len() > 0).all()  # anything without a C says why
    assert (out / "comparison.png").is_file()
    printed = capsys.readouterr().out
    assert all(f"| {name} |" in printed for name in SYSTEMS)  # the table, one row per system
    card = (tiny_packages / "HEROVision-TA" / "docs" / "README.md").read_text(encoding="utf-8")
    assert "## Compared with the clinical model and the staging systems" in card
    assert all(line in card for line in metrics["comparison"]["markdown"])
