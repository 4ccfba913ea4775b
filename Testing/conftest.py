"""Shared fixtures, made once per test session: one small phantom cohort, untrained model packages
and packages trained on that cohort with the tiny preset."""

import hashlib

import pytest

from HEROVisionLib.phantom import generate_cohort
from HEROVisionLib.predict import write_untrained_models
from HEROVisionLib.train.run import train_task

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


@pytest.fixture(scope="session")
def tiny_packages(phantom_cohort, tmp_path_factory):
    """All three packages trained on the phantom cohort with the tiny preset (seconds)."""
    out = tmp_path_factory.mktemp("trained")
    for task, name in (("pfs-ta", "HEROVision-TA"), ("pfs-sr", "HEROVision-SR"), ("er", "IVIM-ER")):
        train_task(task, phantom_cohort, out / name, preset="tiny", device="cpu", workers=2, progress=False)
    return out


def resign_manifest(package) -> None:
    """Recompute a package's manifest after a test edited one of its files, as a forger (or a user
    editing metadata by hand) would: the checksum passes, so the later checks are what is tested."""
    manifest = package / "manifest.sha256"
    lines = []
    for line in manifest.read_text().splitlines():
        name = line.partition("  ")[2]
        lines.append(f"{hashlib.sha256((package / name).read_bytes()).hexdigest()}  {name}")
    manifest.write_text("\n".join(lines) + "\n")
