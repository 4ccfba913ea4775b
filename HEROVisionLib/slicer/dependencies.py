"""Which of the packages HEROVision needs are missing from the running Python (Slicer's, usually).

Reads a requirements file (``HEROVision/Resources/requirements.txt``) and answers with the lines to
install; uses only the standard library and ``packaging``, so Slicer can ask before anything heavy
is imported. Installing is Slicer's job (its pip helpers and the PyTorch extension), done only when
the user agrees, never at import.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..errors import InputError


def read_requirements(path) -> list[Requirement]:
    """The requirements of a pip requirements file (comments and blank lines skipped)."""
    path = Path(path)
    requirements = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as error:
            raise InputError(f"{path}:{number}", f"not a requirement: {error}") from None
    return requirements


def missing_requirements(requirements) -> list[str]:
    """The requirements not installed, or installed in a version outside their specifier."""
    missing = []
    for requirement in requirements:
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(str(requirement))
    return missing
