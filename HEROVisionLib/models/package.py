"""Model packages: one folder per model, in the MONAI bundle layout, verified before use.

```
<package>/
  configs/metadata.json     MONAI bundle metadata + a "herovision" block (architecture, preprocessing,
                            risk cutoff, baseline hazard, feature selection, coefficients, metrics…)
  models/model.safetensors  the weights (safetensors: loading never executes code from the file)
  docs/README.md            the model card
  LICENSE
  manifest.sha256           SHA-256 of every other file
```

Loading checks the manifest (every listed file present and unchanged, nothing outside the folder),
then the package format version, then builds the network from its recorded architecture and loads
the weights strictly. Saving writes to a temporary folder renamed into place: a package on disk is
always complete. Save then load reproduces every weight bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..devices import resolve_device
from ..errors import InputError
from ..io.images import user_umask
from ..io.model_folders import METADATA_FILE
from ..io.output_folder import refuse_overlap
from .package_schema import check_metadata

#: Package format (major, minor): a reader accepts its own major and any minor.
PACKAGE_FORMAT = (1, 0)
WEIGHTS_FILE = "models/model.safetensors"
MODEL_CARD_FILE = "docs/README.md"
LICENSE_FILE = "LICENSE"
MANIFEST_FILE = "manifest.sha256"
REQUIRED_FILES = (METADATA_FILE, WEIGHTS_FILE, MODEL_CARD_FILE, LICENSE_FILE)
MONAI_SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
LICENSE_TEXT = ("These model weights and metadata are distributed under the Apache License, Version 2.0\n"
                "(https://www.apache.org/licenses/LICENSE-2.0), as part of HEROVision.\n")


def architectures() -> dict[str, type[nn.Module]]:
    """Network classes a package may name (imported here to keep the registry in one place)."""
    from .herovision_net import HEROVisionEnsemble, HEROVisionNet
    from .ivim_net import IVIMEnsemble, IVIMFeatureNet

    return {"HEROVisionNet": HEROVisionNet, "HEROVisionEnsemble": HEROVisionEnsemble, "IVIMFeatureNet": IVIMFeatureNet,
            "IVIMEnsemble": IVIMEnsemble}


@dataclass
class ModelPackage:
    """A loaded (or about to be saved) model: its network in eval mode and its metadata."""

    network: nn.Module
    metadata: dict
    path: Path | None = None

    @property
    def herovision(self) -> dict:
        return self.metadata["herovision"]

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def version(self) -> str:
        return self.metadata["version"]

    @property
    def trained(self) -> bool:
        return bool(self.herovision["trained"])

    def network_on(self, device) -> nn.Module:
        """The network on ``device``, moved only when it is elsewhere (``Module.to`` walks every
        parameter even when nothing moves: 8 ms per call, several calls per case)."""
        device, parameter = torch.device(device), next(self.network.parameters(), None)
        where = parameter.device if parameter is not None else device
        if where.type != device.type or device.index not in (None, where.index):  # "cuda" means the current one
            self.network.to(device)
        return self.network


def build_metadata(network: nn.Module, *, name: str, version: str, task: str, description: str,
                   inputs: dict, outputs: dict, herovision: dict, authors="HEROVision contributors",
                   intended_use: str = "Research only; not for clinical use.") -> dict:
    """MONAI bundle metadata with the ``herovision`` block; architecture and format are filled in."""
    block = dict(herovision)
    block.update(format_version=".".join(map(str, PACKAGE_FORMAT)), intended_use=intended_use,
                 architecture={"name": type(network).__name__, "config": network.to_config()},
                 parameter_count=sum(p.numel() for p in network.parameters()))
    return {
        "schema": MONAI_SCHEMA,
        "name": name,
        "version": version,
        "changelog": {version: description},
        "monai_version": _version_of("monai"),
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": {"safetensors": _version_of("safetensors"), "herovision": __version__},
        "task": task,
        "description": description,
        "authors": authors,
        "copyright": "Copyright HEROVision contributors",
        "license": "Apache-2.0",
        "intended_use": intended_use,
        "network_data_format": {"inputs": inputs, "outputs": outputs},
        "herovision": block,
    }


def _version_of(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _holds_only_a_package(folder: Path) -> bool:
    """Whether every entry of ``folder`` is a file its manifest lists (or the manifest, or their
    folders), with no symbolic link: such a folder may be replaced by a newer package."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file() or manifest.is_symlink():
        return False
    try:
        listed = {line.partition("  ")[2] for line in manifest.read_text(encoding="utf-8").splitlines()}
    except (OSError, UnicodeDecodeError):
        return False
    allowed = listed | {MANIFEST_FILE} | {str(Path(name).parent) for name in listed}
    return all(not entry.is_symlink() and str(entry.relative_to(folder)) in allowed for entry in folder.rglob("*"))


def check_package_destination(folder, inputs=()) -> Path:
    """The resolved folder a package may be written to: a new one, or a HEROVision package holding
    nothing else (replaced whole); never an input, inside one, or holding one."""
    shown = Path(folder)
    target = shown.expanduser().resolve()
    refuse_overlap(target, inputs, shown)
    if target.exists() and not (target.is_dir() and _holds_only_a_package(target)):
        raise InputError(shown, "exists and is not a HEROVision model package holding only its own files: "
                                "give a new folder (a package replaces only an older package)")
    return target


def save_package(package: ModelPackage, folder) -> Path:
    """Write ``package`` as a complete, checksummed folder (replacing an older package atomically;
    :func:`check_package_destination` says what may be replaced)."""
    folder = check_package_destination(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    partial.chmod(0o777 & ~user_umask())  # mkdtemp's 0700 would make the package private to its writer
    try:
        for name in ("configs", "models", "docs"):
            (partial / name).mkdir()
        state = {key: value.detach().cpu().contiguous() for key, value in package.network.state_dict().items()}
        save_file(state, str(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        metadata_text = json.dumps(_json_safe(package.metadata), indent=2, allow_nan=False) + "\n"
        (partial / METADATA_FILE).write_text(metadata_text, encoding="utf-8")
        (partial / MODEL_CARD_FILE).write_text(model_card(package.metadata), encoding="utf-8")
        (partial / LICENSE_FILE).write_text(LICENSE_TEXT, encoding="utf-8")
        lines = [f"{_sha256(partial / name)}  {name}" for name in sorted(REQUIRED_FILES)]
        (partial / MANIFEST_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        _swap_in(partial, folder)
    finally:
        if partial.is_dir():  # made by this run, under a name no one else uses
            shutil.rmtree(partial)
    return folder


def _swap_in(partial: Path, folder: Path) -> None:
    """Put the finished package in place; an older package there (checked again now: nothing but its
    own files) is moved aside under a fresh name and then deleted."""
    if not folder.exists():
        os.replace(partial, folder)
        return
    check_package_destination(folder)
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.replace(folder, old)  # onto the fresh empty folder
    os.replace(partial, folder)
    shutil.rmtree(old)


def _json_safe(value):
    """Metadata as strict JSON: a metric that could not be computed (NaN, ±inf) becomes null."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_package(folder) -> dict:
    """Check that the package is a closed box (no symbolic link, nothing listed outside it), its
    manifest, the format version and the metadata's schema; return the metadata. Raises
    :class:`InputError`."""
    folder = Path(folder)
    manifest = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise InputError(folder, "model package not found (expected a folder)")
    if not manifest.is_file():
        raise InputError(folder, f"not a HEROVision model package: {MANIFEST_FILE} is missing")
    links = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_symlink()]
    if links:
        raise InputError(folder, f"holds symbolic link(s) {', '.join(sorted(links))}: a package must hold its own "
                                 "files; refusing to load it")
    listed = _read_manifest(manifest)
    root = folder.resolve()
    for name, digest in listed.items():
        path = folder / name
        if root not in path.resolve().parents:
            raise InputError(manifest, f"lists {name}, which lies outside the package; refusing to load it")
        if not path.is_file():
            raise InputError(path, "listed in the package manifest but missing")
        if _sha256(path) != digest:
            raise InputError(path, "checksum mismatch: the file was modified or corrupted since the package "
                                   "was made; refusing to load it")
    metadata = _read_metadata(folder / METADATA_FILE)
    _check_format(metadata, folder)
    check_metadata(metadata, folder / METADATA_FILE)
    return metadata


def _read_manifest(manifest: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file the manifest lists (all of :data:`REQUIRED_FILES`)."""
    try:
        lines = manifest.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(manifest, "is not UTF-8 text: not a manifest HEROVision wrote") from None
    listed = {}
    for number, line in enumerate(lines, 1):
        digest, _, name = line.partition("  ")
        if (len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or not name
                or Path(name).is_absolute() or ".." in Path(name).parts or any(ord(c) < 32 for c in name)):
            raise InputError(manifest, f"line {number} is not '<sha256>  <relative path>'")
        listed[name] = digest
    missing = [name for name in REQUIRED_FILES if name not in listed]
    if missing:
        raise InputError(manifest, f"does not list {', '.join(missing)}")
    return listed


def _read_metadata(path: Path) -> dict:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"not valid JSON ({error})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("herovision"), dict):
        raise InputError(path, "no 'herovision' block: not a HEROVision model package")
    return metadata


def _check_format(metadata: dict, folder: Path) -> None:
    text = str(metadata["herovision"].get("format_version", ""))
    try:
        major = int(text.split(".")[0])
    except ValueError:
        raise InputError(folder, f"unreadable package format version {text!r}") from None
    reader = ".".join(map(str, PACKAGE_FORMAT))
    if major > PACKAGE_FORMAT[0]:
        raise InputError(folder, f"package format {text} was made by a newer HEROVision; this HEROVision "
                                 f"({__version__}) reads format {PACKAGE_FORMAT[0]}.x: update HEROVision")
    if major < PACKAGE_FORMAT[0]:
        raise InputError(folder, f"package format {text} is older than this HEROVision supports ({reader}): "
                                 "re-export or retrain the model")


def load_package(folder, device="auto") -> ModelPackage:
    """Verify, then build the network and load its weights (strictly) on ``device``; eval mode."""
    folder = Path(folder)
    metadata = verify_package(folder)
    architecture = metadata["herovision"].get("architecture", {})
    known = architectures()
    if architecture.get("name") not in known:
        raise InputError(folder / METADATA_FILE, f"unknown architecture {architecture.get('name')!r}; "
                                                 f"this HEROVision knows {', '.join(known)}")
    try:
        network = known[architecture["name"]].from_config(architecture.get("config", {}))
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise InputError(folder / METADATA_FILE, f"architecture settings not usable: {error}") from None
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as error:
        raise InputError(folder / WEIGHTS_FILE, f"unreadable weights ({error})") from None
    problems = _state_mismatch(network.state_dict(), state)
    if problems:
        raise InputError(folder / WEIGHTS_FILE, f"weights do not fit the recorded architecture: {problems}")
    network.load_state_dict(state, strict=True)
    return ModelPackage(network.to(resolve_device(device)).eval(), metadata, folder)


def _state_mismatch(expected: dict, found: dict) -> str:
    """What differs between the architecture's tensors and the file's ('' when they match)."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    reshaped = [key for key in expected if key in found and found[key].shape != expected[key].shape]
    parts = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
             ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if keys]
    return "; ".join(parts)


def _nomogram_section(nomogram: dict) -> list[str]:
    if "unavailable" in nomogram:
        return ["## Nomogram", "", f"Not fitted: {nomogram['unavailable']}", ""]
    scale = nomogram["points_scale"]
    lines = ["## Nomogram", "", "Multivariable Cox model of the risk score and clinical factors (univariate P < 0.20, "
             "then backward stepwise AIC), fitted on the training cohort:", "",
             "| covariate | hazard ratio (95 % CI) | P | points per unit |", "|---|---|---|---|"]
    for row in nomogram["model"]:
        lines.append(f"| {row['covariate']} | {row['hazard_ratio']:.2f} ({row['lower']:.2f}–{row['upper']:.2f}) | "
                     f"{row['p']:.3g} | {row['coef'] / scale:+.1f} |")
    return lines + ["", f"High risk above a linear predictor of {nomogram['risk_cutoff']:.3f} (maxstat cutoff).", ""]


def model_card(metadata: dict) -> str:
    """The package's docs/README.md, written from its metadata so the two never disagree."""
    block = metadata["herovision"]
    status = ("**Untrained placeholder**: random weights, for exercising the software only."
              if not block.get("trained") else
              "**Demonstration model** trained on the synthetic phantom cohort — not on patients."
              if block.get("training_cohort", {}).get("synthetic") else "Trained model.")
    lines = [f"# {metadata['name']} {metadata['version']}", "", metadata["description"], "", status, "",
             "## Intended use", "", metadata.get("intended_use", ""), "",
             "## Architecture", "", f"`{block['architecture']['name']}`, {block['parameter_count']:,} parameters:", "",
             "```json", json.dumps(block["architecture"]["config"], indent=2), "```", "",
             "## Inputs and outputs", "", "```json", json.dumps(metadata["network_data_format"], indent=2), "```", ""]
    if block.get("training"):
        training = block["training"]
        lines += ["## Training", "", f"Command: `{training.get('command', '')}`", "",
                  f"Took {training.get('seconds', '?')} s on {training.get('device', '?')} "
                  f"({training.get('processes', 1)} process(es)).", ""]
    if block.get("training_cohort"):
        lines += ["## Training cohort", "", "```json", json.dumps(block["training_cohort"], indent=2), "```", ""]
    if block.get("nomogram"):
        lines += _nomogram_section(block["nomogram"])
    if block.get("metrics"):
        comparison = block["metrics"].get("test", {}).get("comparison")
        metrics = json.loads(json.dumps(block["metrics"]))
        metrics.get("test", {}).pop("comparison", None)  # shown as its own table below
        lines += ["## Validation metrics", "", "```json", json.dumps(metrics, indent=2), "```", ""]
        if comparison:
            lines += ["## Compared with the clinical model and the staging systems", "",
                      f"On the test cohort; Harrell's C truncated at {comparison['truncation_months']:g} months, "
                      f"{comparison['bootstrap_resamples']} bootstrap resamples; {comparison['p_values']}. "
                      "Each row on the patients that predictor can score.", "", *comparison["markdown"], ""]
    lines += ["## Files", "", f"`{MANIFEST_FILE}` holds the SHA-256 of every file; HEROVision refuses a package "
              "whose files do not match it. Weights are in safetensors format (no code is executed on loading).", ""]
    return "\n".join(lines)
