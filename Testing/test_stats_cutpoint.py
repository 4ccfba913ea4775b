"""The optimal cutpoint against R's survminer::surv_cutpoint(minprop = 0.1) — maxstat.test with log-rank
scores — on Rossi and on synthetic sets with tied scores and times; bad inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.stats import logrank_scores, optimal_cutpoint

R_FIXTURES = Path(__file__).parent / "fixtures" / "r"
REFERENCE = pd.read_csv(R_FIXTURES / "cutpoints.csv")


def _data(name: str) -> pd.DataFrame:
    """time, event and the scores of one reference data set."""
    if name == "rossi":
        rossi = pd.read_csv(R_FIXTURES / "rossi.csv").rename(columns={"week": "time", "arrest": "event"})
        coefficients = pd.read_csv(R_FIXTURES / "cox_coefficients.csv").query("ties == 'efron'")
        return rossi.assign(efron_lp=rossi[list(coefficients["term"])].to_numpy() @ coefficients["coef"].to_numpy())
    synthetic = pd.read_csv(R_FIXTURES / "survival_synthetic.csv")
    return synthetic[synthetic["set"] == name.removeprefix("synthetic_")]


@pytest.mark.parametrize("row", list(REFERENCE.itertuples(index=False)), ids=lambda row: f"{row.data}-{row.score}")
def test_cutpoint_and_statistic_match_survminer(row):
    data = _data(row.data)
    cutpoint = optimal_cutpoint(data[row.score], data["time"], data["event"])
    assert cutpoint.value == pytest.approx(row.cutpoint, rel=1e-12)
    assert cutpoint.statistic == pytest.approx(row.statistic, rel=1e-9)
    assert float(cutpoint) == cutpoint.value


def test_every_group_keeps_a_tenth_of_the_subjects():
    data = _data("synthetic_b")  # integer scores with many ties
    cutpoint = optimal_cutpoint(data["score"], data["time"], data["event"])
    high = (data["score"] > cutpoint.value).mean()
    assert 0.1 <= high <= 0.9


def test_logrank_scores_match_exact_rank_tests():
    """R: exactRankTests::cscores(Surv(time, event), type = "LogRank"), on times with ties."""
    data = _data("synthetic_b")
    expected = pd.read_csv(R_FIXTURES / "logrank_scores_synthetic_b.csv")["score"]
    np.testing.assert_allclose(logrank_scores(data["time"], data["event"]), expected, rtol=1e-12, atol=1e-14)


def test_bad_inputs_raise_input_errors():
    rng = np.random.default_rng(0)
    score, time, event = rng.normal(size=30), rng.uniform(1, 10, size=30), rng.integers(0, 2, size=30)
    with pytest.raises(InputError, match="no event"):
        optimal_cutpoint(score, time, np.zeros(30))
    with pytest.raises(InputError, match="risk score: has 1 missing"):
        optimal_cutpoint(np.r_[np.nan, score[1:]], time, event)
    with pytest.raises(InputError, match="time: has 29 values"):
        optimal_cutpoint(score, time[:29], event[:29])
    with pytest.raises(InputError, match="no cutpoint"):
        optimal_cutpoint(np.ones(30), time, event)
    with pytest.raises(InputError, match="min_proportion"):
        optimal_cutpoint(score, time, event, min_proportion=0.5)
