"""Shared fixtures: one small phantom cohort, generated once per test session."""

import pytest

from HEROVisionLib.phantom import generate_cohort

COHORT_SEED = 7
COHORT_SIZE = 10


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """A 10-case profile-A cohort (seed 7) in the PHANTOM.md §4 layout."""
    folder = tmp_path_factory.mktemp("cohort")
    return generate_cohort(COHORT_SIZE, COHORT_SEED, folder, progress=False)
