"""Propensity-score matching against R (MatchIt's glm propensity; its documented greedy nearest-neighbour
rule with and without the 0.2 SD caliper, written out in R) and standardised mean differences against
the same arithmetic in R; bad inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.stats.propensity import match_nearest, propensity_scores, standardized_mean_differences

R_FIXTURES = Path(__file__).parent / "fixtures" / "r"
DATA = pd.read_csv(R_FIXTURES / "matching_synthetic.csv")
COVARIATES = ["age", "sex_male", "size_cm", "portal_hypertension"]


@pytest.fixture(scope="module")
def matching():
    propensity = propensity_scores(DATA, DATA["treated"], COVARIATES)
    return match_nearest(propensity, DATA["treated"])


def test_propensity_is_the_logistic_fit_r_glm_gives(matching):
    reference = pd.read_csv(R_FIXTURES / "matching_propensity.csv")["propensity"]
    np.testing.assert_allclose(matching.propensity, reference, rtol=1e-6)


def test_without_a_caliper_every_treated_subject_gets_the_nearest_free_control(matching):
    reference = pd.read_csv(R_FIXTURES / "matching_pairs_no_caliper.csv")
    uncalipered = match_nearest(matching.propensity, DATA["treated"], caliper_sd=None)
    ours = pd.DataFrame(uncalipered.pairs, columns=["treated_row", "control_row"]).sort_values("treated_row")
    pd.testing.assert_frame_equal(ours.reset_index(drop=True),
                                  reference.sort_values("treated_row").reset_index(drop=True))
    assert len(uncalipered.pairs) == int(DATA["treated"].sum())  # every treated subject matched


def test_pairs_within_the_caliper_are_rs(matching):
    reference = pd.read_csv(R_FIXTURES / "matching_pairs.csv")
    ours = pd.DataFrame(matching.pairs, columns=["treated_row", "control_row"]).sort_values("treated_row")
    pd.testing.assert_frame_equal(ours.reset_index(drop=True),
                                  reference.sort_values("treated_row").reset_index(drop=True))
    assert len(set(matching.pairs[:, 1])) == len(matching.pairs)  # no control used twice
    gaps = np.abs(matching.propensity[matching.pairs[:, 0]] - matching.propensity[matching.pairs[:, 1]])
    assert gaps.max() <= matching.caliper


def test_standardised_mean_differences_before_and_after_match_r(matching):
    reference = pd.read_csv(R_FIXTURES / "matching_smd.csv").set_index("covariate")
    table = standardized_mean_differences(DATA, DATA["treated"], COVARIATES, matching)
    np.testing.assert_allclose(table.loc[COVARIATES, ["before", "after"]], reference.loc[COVARIATES], rtol=1e-9)


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="lacks column"):
        propensity_scores(DATA, DATA["treated"], ["age", "centre"])
    with pytest.raises(InputError, match="both groups"):
        propensity_scores(DATA, np.ones(len(DATA)), COVARIATES)
    with pytest.raises(InputError, match="age: has 1 missing"):
        propensity_scores(DATA.assign(age=DATA["age"].where(DATA.index != 4)), DATA["treated"], COVARIATES)
