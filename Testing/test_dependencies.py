"""Slicer's first-Predict dependency check: what it would install, from the module's requirements."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from HEROVisionLib.slicer.dependencies import missing_requirements, read_requirements
from HEROVisionLib.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "HEROVision" / "Resources" / "requirements.txt"


def test_the_modules_requirements_are_the_packages_dependencies_but_torch():
    """torch comes from Slicer's PyTorch extension; everything else must match pyproject.toml."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.S | re.M).group(1)
    declared = {str(Requirement(r)) for r in re.findall(r'^\s*"([^"]+)"', block, re.M)}
    listed = {str(r) for r in read_requirements(REQUIREMENTS)}
    assert listed == {r for r in declared if not r.startswith("torch")}


def test_this_environment_lacks_none_of_them():
    assert missing_requirements(read_requirements(REQUIREMENTS)) == []


def test_absent_or_too_old_packages_are_listed(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# needed\nnumpy>=1.0\nnumpy>=999\nno-such-package-herovision>=1\n\n", encoding="utf-8")
    assert missing_requirements(read_requirements(requirements)) == ["numpy>=999", "no-such-package-herovision>=1"]


def test_a_broken_requirements_line_is_named(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=1\nnot a requirement!!\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"requirements.txt:2: not a requirement"):
        read_requirements(requirements)
