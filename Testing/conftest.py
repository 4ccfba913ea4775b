"""Shared fixtures, made once per test session: one small phantom cohort and untrained model packages."""

import hashlib

import pytest

from HEROVisionLib.phantom import generate_cohort
from HEROVisionLib.predict import write_untrained_models

COHORT_SEED = 7
COHORT_SIZE = 10


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """A 10-case profile-A cohort (seed 7) in the PHANTOM.md §4 layout."""
    folder = tmp_path_factory.mktemp("cohort")
    return generate_cohort(COHORT_SIZE, COHORT_SEED, folder, progress=False)


@pytest.fixture(scope="session")
def untrained_models(tmp_path_factory):
    """Random-weight placeholder packages of all three models (the real package format)."""
    return write_untrained_models(tmp_path_factory.mktemp("models"))


def resign_manifest(package) -> None:
    """Recompute a package's manifest after a test edited one of its files, as a forger (or a user
    editing metadata by hand) would: the checksum passes, so the later checks are what is tested."""
    manifest = package / "manifest.sha256"
    lines = []
    for line in manifest.read_text().splitlines():
        name = line.partition("  ")[2]
        lines.append(f"{hashlib.sha256((package / name).read_bytes()).hexdigest()}  {name}")
    manifest.write_text("\n".join(lines) + "\n")
