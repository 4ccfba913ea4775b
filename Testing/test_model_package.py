"""The model package: bit-exact round trip, and refusal of anything tampered, foreign or too new."""

import hashlib
import json
import pickle

import pytest
import torch

from HEROVisionLib.errors import InputError
from HEROVisionLib.models.ivim_net import EarlyRecurrenceHead, IVIMFeatureNet
from HEROVisionLib.models.package import MANIFEST_FILE, METADATA_FILE, WEIGHTS_FILE, load_package, save_package
from HEROVisionLib.transforms.ivim_crops import IVIM_PREPROCESSING
from HEROVisionLib.models.model_set import early_recurrence_package

SMALL = dict(crop_size=16, patch_size=8, hidden_size=32, mlp_dim=64, num_layers=1, num_heads=2)


def _package(tmp_path, seed=0):
    torch.manual_seed(seed)
    network = IVIMFeatureNet(**SMALL)
    head = EarlyRecurrenceHead.untrained(network.feature_count, seed=seed)
    package = early_recurrence_package(network, [head], trained=False, version="0.0.1", description="test",
                                       preprocessing=dict(IVIM_PREPROCESSING, crop_size=SMALL["crop_size"]))
    return save_package(package, tmp_path / "package"), network


def _rewrite(folder, name, content: bytes):
    """Change a file and re-sign it in the manifest, as a forger (or a newer HEROVision) would."""
    (folder / name).write_bytes(content)
    lines = []
    for line in (folder / MANIFEST_FILE).read_text().splitlines():
        digest, _, listed = line.partition("  ")
        if listed == name:
            digest = hashlib.sha256(content).hexdigest()
        lines.append(f"{digest}  {listed}")
    (folder / MANIFEST_FILE).write_text("\n".join(lines) + "\n")


def test_round_trip_is_bit_exact(tmp_path):
    folder, network = _package(tmp_path)
    loaded = load_package(folder)
    original, restored = network.state_dict(), loaded.network.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    assert not loaded.network.training
    assert loaded.herovision["architecture"] == {"name": "IVIMFeatureNet", "config": network.to_config()}
    assert loaded.herovision["format_version"] == "1.0"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(
        [METADATA_FILE, WEIGHTS_FILE, "docs/README.md", "LICENSE", MANIFEST_FILE])
    assert "Untrained placeholder" in (folder / "docs" / "README.md").read_text()


def test_saving_again_replaces_the_package_whole(tmp_path):
    folder, _ = _package(tmp_path, seed=0)
    folder, second = _package(tmp_path, seed=1)
    restored = load_package(folder).network.state_dict()
    assert all(torch.equal(value, restored[key]) for key, value in second.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["package"]


def test_tampered_weights_are_refused(tmp_path):
    folder, _ = _package(tmp_path)
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0x01
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="model.safetensors: checksum mismatch"):
        load_package(folder)


def test_tampered_or_missing_manifest_is_refused(tmp_path):
    folder, _ = _package(tmp_path)
    manifest = folder / MANIFEST_FILE
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(line for line in lines if not line.endswith(WEIGHTS_FILE)) + "\n")
    with pytest.raises(InputError, match="does not list models/model.safetensors"):
        load_package(folder)
    manifest.write_text("0" * 64 + "  ../outside.json\n")
    with pytest.raises(InputError, match="line 1 is not"):
        load_package(folder)
    manifest.unlink()
    with pytest.raises(InputError, match="not a HEROVision model package: manifest.sha256 is missing"):
        load_package(folder)


def test_a_package_from_a_future_format_is_refused_with_advice(tmp_path):
    folder, _ = _package(tmp_path)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["herovision"]["format_version"] = "2.0"
    _rewrite(folder, METADATA_FILE, json.dumps(metadata).encode())
    with pytest.raises(InputError, match=r"package format 2.0 was made by a newer HEROVision.*update HEROVision"):
        load_package(folder)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    folder, _ = _package(tmp_path)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["herovision"]["architecture"]["config"]["hidden_size"] = 16
    _rewrite(folder, METADATA_FILE, json.dumps(metadata).encode())
    with pytest.raises(InputError, match="weights do not fit the recorded architecture"):
        load_package(folder)


class _Payload:
    """Unpickling this would create a file: proof that code from the package ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_weights_are_never_executed(tmp_path):
    folder, _ = _package(tmp_path)
    marker = tmp_path / "code-ran"
    _Payload.marker = marker
    _rewrite(folder, WEIGHTS_FILE, pickle.dumps({"weight": _Payload()}))
    with pytest.raises(InputError, match="unreadable weights"):
        load_package(folder)
    assert not marker.exists()


def test_a_survival_ensemble_round_trips_and_a_tampered_one_is_refused_naming_the_key(tmp_path):
    from HEROVisionLib.models.herovision_net import HEROVisionEnsemble, HEROVisionNet
    from HEROVisionLib.models.model_set import survival_package

    member = dict(encoder=dict(image_size=32, stem_channels=8, patch_grid=4, embed_dim=16, depth=1, num_heads=2,
                               out_features=16), modality_features=8, fusion_hidden=16)
    torch.manual_seed(0)
    ensemble = HEROVisionEnsemble.of([HEROVisionNet(**member) for _ in range(2)]).eval()
    folder = save_package(survival_package(ensemble, "TA", trained=False, cutoff=0.0,
                                           baseline_cumulative_hazard={12: 0.1, 24: 0.2, 36: 0.3}, version="0.0.1",
                                           description="test"), tmp_path / "package")
    loaded = load_package(folder, "cpu").network
    images = {m: torch.rand(3, k, 32, 32) for m, k in loaded.modality_images.items()}
    present = torch.ones(3, len(loaded.modalities), dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(loaded(images, present), ensemble(images, present))
        assert torch.allclose(loaded(images, present), (ensemble.members[0](images, present)
                                                        + ensemble.members[1](images, present)) / 2)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["herovision"]["architecture"]["config"]["members"] = 1
    _rewrite(folder, METADATA_FILE, json.dumps(metadata).encode())
    with pytest.raises(InputError, match=r"herovision\.architecture\.config\.members: 1 is less than the minimum of 2"):
        load_package(folder)
