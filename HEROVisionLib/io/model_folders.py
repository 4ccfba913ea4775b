"""Where model packages are found on disk, and their recorded metadata, without torch: a command can
look at them before it loads torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

#: The package folder of each model in a models folder.
PACKAGE_NAMES = {"ta": "HEROVision-TA", "sr": "HEROVision-SR", "er": "IVIM-ER"}
#: A package's metadata, inside its folder (MONAI bundle layout).
METADATA_FILE = "configs/metadata.json"


def bundled_models_folder() -> Path:
    """``HEROVISION_MODELS`` if set, else the repository's / extension's ``Resources/Models``."""
    configured = os.environ.get("HEROVISION_MODELS")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "Resources" / "Models"


def recorded_block(models_folder, key: str) -> dict | None:
    """The ``herovision`` block of model ``key``'s metadata in ``models_folder`` (default: the bundled
    models) as written, unverified; None when it cannot be read (loading the package says why)."""
    folder = Path(models_folder) if models_folder is not None else bundled_models_folder()
    try:
        block = json.loads((folder / PACKAGE_NAMES[key] / METADATA_FILE).read_text(encoding="utf-8"))["herovision"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return block if isinstance(block, dict) else None
