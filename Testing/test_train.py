"""Training: the tiny configuration runs end to end and writes loadable packages (also under
torchrun with two processes); splits, event-balanced batches and paired IVIM augmentation behave."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from HEROVisionLib.cli import main
from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Cohort
from HEROVisionLib.models.package import load_package
from HEROVisionLib.predict import load_models, predict_case
from HEROVisionLib.stats import harrell_c
from HEROVisionLib.transforms.augment import augment_ivim_pair
from HEROVisionLib.train.data import CohortTensors, split, task_cases
from HEROVisionLib.train.loop import event_balanced_batches

from conftest import resign_manifest


def test_tiny_training_writes_packages_that_predict(tiny_packages, phantom_cohort):
    for name, kind in (("HEROVision-TA", "survival"), ("HEROVision-SR", "survival"), ("IVIM-ER", "early_recurrence")):
        package = load_package(tiny_packages / name)
        block = package.herovision
        assert block["trained"] and block["kind"] == kind
        assert block["training_cohort"]["synthetic"] and block["training_cohort"]["cases"] > 0
        assert (tiny_packages / f"{name}-training" / "training_log.csv").is_file()
        assert (tiny_packages / f"{name}-training" / "training_curves.png").is_file()
        if kind == "survival":
            hazard = [block["baseline_cumulative_hazard"][m] for m in ("12", "24", "36")]
            assert hazard == sorted(hazard) and hazard[0] >= 0
            assert np.isfinite(block["risk_cutoff"])
            curves = block["training_curves"]  # what reports draw: the training cohort's groups and baseline
            assert curves["baseline_cumulative_hazard"] == sorted(curves["baseline_cumulative_hazard"])
            for name in ("low", "high"):
                if f"kaplan_meier_{name}" in curves:
                    km = curves[f"kaplan_meier_{name}"]
                    assert km[0] == 1.0 and km == sorted(km, reverse=True)
    result = predict_case(Cohort(phantom_cohort).case("A0001"), load_models(tiny_packages, "cpu"), "cpu")
    assert result.models_trained and result.row()["status"] == "ok"
    assert 0 < result.er_probability < 1


def test_an_ensemble_averages_networks_each_trained_as_alone_from_its_seed(tiny_packages, phantom_cohort, tmp_path):
    """`--members 2`: member k is the network `--seed k` trains alone (same split, same schedule),
    the package scores the mean of the two, logs each member, and predicts with attention maps."""
    from HEROVisionLib.models.model_set import ModelSet
    from HEROVisionLib.train.data import prepare
    from HEROVisionLib.train.survival_training import risk_scores
    from HEROVisionLib.transforms.network_inputs import SURVIVAL_PREPROCESSING

    for members, seed in ((2, 0), (1, 1)):
        assert main(["train", "--task", "pfs-ta", "--cohort", str(phantom_cohort), "--out", str(tmp_path / f"m{members}"),
                     "--preset", "tiny", "--members", str(members), "--seed", str(seed), "--device", "cpu",
                     "--workers", "1"]) == 0
    ensemble, alone = load_package(tmp_path / "m2"), load_package(tmp_path / "m1")
    seed0 = load_package(tiny_packages / "HEROVision-TA")  # the fixture's: tiny preset, seed 0, one network
    block = ensemble.herovision
    assert block["architecture"]["name"] == "HEROVisionEnsemble" and block["architecture"]["config"]["members"] == 2
    assert [m["seed"] for m in block["metrics"]["members"]] == [0, 1]
    for k in (1, 2):
        assert (tmp_path / "m2-training" / f"member-{k}" / "training_log.csv").is_file()
    whole = pd.read_csv(tmp_path / "m2-training" / "training_log.csv")  # the run's overview, both members
    assert sorted(whole["member"].unique()) == [1, 2] and (tmp_path / "m2-training" / "training_curves.png").is_file()
    for member, single in zip(ensemble.network.members, (seed0.network, alone.network)):
        for name, tensor in single.state_dict().items():
            assert torch.equal(member.state_dict()[name], tensor), name
    data = prepare(Cohort(phantom_cohort), "pfs-ta", dict(SURVIVAL_PREPROCESSING, image_size=32), workers=1,
                   progress=False)
    together = risk_scores(ensemble.network, data, "cpu")
    apart = (risk_scores(seed0.network, data, "cpu") + risk_scores(alone.network, data, "cpu")) / 2
    np.testing.assert_allclose(together, apart, atol=1e-6)
    models = load_models(tiny_packages, "cpu")
    result = predict_case(Cohort(phantom_cohort).case("A0001"), ModelSet(ensemble, models.sr, models.er), "cpu")
    assert any(name.startswith("attention_ta_") for name in result.overlays)


def test_an_ivim_ensemble_averages_its_networks_probabilities_each_through_its_own_head(tiny_packages,
                                                                                       phantom_cohort, tmp_path):
    """`--task er --members 2`: the first member is, weight for weight and head for head, the package
    `--seed 0` trains alone; the ensemble's probabilities are the mean of its members', each through
    its own head; a case predicts with its Grad-CAM overlays."""
    from HEROVisionLib.models.ivim_net import ensemble_probabilities, heads_of, networks_of
    from HEROVisionLib.models.model_set import ModelSet
    from HEROVisionLib.train.data import prepare
    from HEROVisionLib.train.early_recurrence import fused_features
    from HEROVisionLib.transforms.ivim_crops import IVIM_PREPROCESSING

    for name, members in (("ensemble", 2), ("alone", 1)):
        assert main(["train", "--task", "er", "--cohort", str(phantom_cohort), "--out", str(tmp_path / name),
                     "--preset", "tiny", "--members", str(members), "--seed", "0", "--device", "cpu",
                     "--workers", "1"]) == 0
    ensemble, alone = load_package(tmp_path / "ensemble"), load_package(tmp_path / "alone")
    assert ensemble.herovision["architecture"]["name"] == "IVIMEnsemble"
    assert [m["seed"] for m in ensemble.herovision["metrics"]["members"]] == [0, 1]
    heads, networks = heads_of(ensemble.herovision["early_recurrence"]), networks_of(ensemble.network)
    assert heads[0] == heads_of(alone.herovision["early_recurrence"])[0] and heads[0] != heads[1]
    for name, tensor in alone.network.state_dict().items():
        assert torch.equal(networks[0].state_dict()[name], tensor), name
    data = prepare(Cohort(phantom_cohort), "er", dict(IVIM_PREPROCESSING, crop_size=16), workers=1, progress=False)
    features = [torch.as_tensor(fused_features(network, data, torch.device("cpu"))) for network in networks]
    size, tumor_d = data.labels["tumor_size_cm"], data.labels["tumor_D"]
    together = ensemble_probabilities(heads, features, size, tumor_d)
    apart = [head.probabilities(member, size, tumor_d) for head, member in zip(heads, features)]
    for k in (0, 1):  # deep, combined
        torch.testing.assert_close(together[k], (apart[0][k] + apart[1][k]) / 2)
    models = load_models(tiny_packages, "cpu")
    result = predict_case(Cohort(phantom_cohort).case("A0001"), ModelSet(models.ta, models.sr, ensemble), "cpu")
    assert 0 < result.er_probability < 1 and "attention_er_bvalues" in result.overlays


def test_training_under_torchrun_with_two_processes(phantom_cohort, tmp_path):
    """The same command under torchrun (gloo on CPU): both ranks train, rank 0 writes the package."""
    out = tmp_path / "IVIM-ER"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "HEROVisionLib.cli", "train", "--task", "er", "--cohort", str(phantom_cohort), "--out", str(out),
               "--preset", "tiny", "--device", "cpu", "--workers", "1"]
    completed = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert load_package(out).herovision["trained"]
    assert completed.stdout.count("Model package written") == 1  # rank 0 only


def _labelled(n, positive):
    labels = torch.zeros(n)
    labels[:positive] = 1
    return CohortTensors([f"C{i}" for i in range(n)], {"x": torch.arange(n)}, {"er": labels},
                         pd.DataFrame({"case_id": [f"C{i}" for i in range(n)]}))


def test_splits_are_four_to_one_and_stratified_or_chronological():
    data = _labelled(50, 20)
    training, validation = split(data, "stratified", seed=3, stratify="er")
    assert (len(training), len(validation)) == (40, 10)
    assert int(validation.labels["er"].sum()) == 4  # 20 % of the positives
    assert set(training.case_ids).isdisjoint(validation.case_ids)
    training, validation = split(data, "chronological")
    assert validation.case_ids == [f"C{i}" for i in range(40, 50)]
    with pytest.raises(InputError, match="unknown split"):
        split(data, "random")


def test_every_batch_has_its_share_of_events():
    event = torch.zeros(130, dtype=torch.bool)
    event[::4] = True  # 33 events
    batches = event_balanced_batches(event, 32, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(130))
    assert [int(event[b].sum()) for b in batches] in ([9, 8, 8, 8], [8, 9, 8, 8], [8, 8, 9, 8], [8, 8, 8, 9])


def test_ivim_crops_and_maps_are_flipped_together():
    """Blur, noise and scale change the b-value crops' values, never their orientation: along each
    axis the ramp rises the same way in the b-value crop as in the map crop."""
    volume = torch.arange(8 ** 3, dtype=torch.float32).reshape(1, 8, 8, 8)
    for seed in range(6):
        bvalues, maps = augment_ivim_pair(volume.repeat(9, 1, 1, 1), volume.repeat(4, 1, 1, 1), seed)
        for axis in (1, 2, 3):
            rises = [float(crop.diff(dim=axis - 1).mean()) > 0 for crop in (bvalues[0], maps[0])]
            assert rises[0] == rises[1]
    assert not torch.equal(augment_ivim_pair(volume, volume, 0)[1], augment_ivim_pair(volume, volume, 1)[1])


def test_tasks_read_the_right_cases(phantom_cohort):
    cohort = Cohort(phantom_cohort)
    assert set(task_cases(cohort, "pfs-ta")["treatment"]) == {"TA"}
    assert len(task_cases(cohort, "er")) == len(cohort)
    with pytest.raises(InputError, match="unknown task"):
        task_cases(cohort, "os")


def test_a_cohort_without_what_a_task_learns_from_is_refused_before_any_image_is_read(phantom_cohort, tmp_path):
    """No progression event in the arm, or one early-recurrence outcome for all: training crashed
    after preparing every case (ER: a traceback from the logistic head)."""
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(phantom_cohort, cohort)
    table = pd.read_csv(cohort / "cohort.csv", dtype={"case_id": str})
    table.assign(pfs_event=0, er_2y=1).to_csv(cohort / "cohort.csv", index=False)
    treated_ta = int((table["treatment"] == "TA").sum())
    with pytest.raises(InputError, match=rf"cohort.csv: task pfs-ta: no progression event \(pfs_event = 1\) among "
                                         rf"the {treated_ta} patients treated TA"):
        task_cases(Cohort(cohort), "pfs-ta")
    with pytest.raises(InputError, match=rf"cohort.csv: task er: er_2y is 1 for all of the {len(table)} patients"):
        task_cases(Cohort(cohort), "er")


def test_evaluation_reports_metrics_oracle_and_plots_and_records_them(tiny_packages, phantom_cohort, tmp_path):
    weights = {k: v.clone() for k, v in load_package(tiny_packages / "HEROVision-TA").network.state_dict().items()}
    out = tmp_path / "ta"
    assert main(["evaluate", "--package", str(tiny_packages / "HEROVision-TA"), "--cohort", str(phantom_cohort),
                 "--out", str(out), "--bootstrap", "50", "--device", "cpu", "--workers", "1", "--record"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    truth = pd.read_csv(phantom_cohort / "truth.csv", dtype={"case_id": str})
    cohort = pd.read_csv(phantom_cohort / "cohort.csv", dtype={"case_id": str})
    ta = cohort[cohort["treatment"] == "TA"].merge(truth, on="case_id")
    assert metrics["cases"] == len(ta)
    assert metrics["oracle_c_index"] == pytest.approx(harrell_c(ta["lp_TA"], ta["pfs_months"], ta["pfs_event"]))
    low, high = metrics["c_index"]["ci95"]
    assert low <= metrics["c_index"]["estimate"] <= high
    assert {"decision_curve.png", "metrics.csv"} <= {p.name for p in out.iterdir()}
    assert (out / "kaplan_meier.png").is_file() == (0 < metrics["high_risk_cases"] < metrics["cases"])
    recorded = load_package(tiny_packages / "HEROVision-TA")
    assert recorded.herovision["metrics"]["test"]["oracle_c_index"] == pytest.approx(metrics["oracle_c_index"])
    assert recorded.herovision["metrics"]["test"]["command"].startswith("herovision evaluate")
    assert all(torch.equal(weights[k], v) for k, v in recorded.network.state_dict().items())

    out = tmp_path / "er"
    assert main(["evaluate", "--package", str(tiny_packages / "IVIM-ER"), "--cohort", str(phantom_cohort),
                 "--out", str(out), "--device", "cpu", "--workers", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["deep"]["auc"] <= 1 and "oracle_auc" in metrics and "p" in metrics["combined_vs_deep"]
    assert metrics["combined_auc_over_oracle"] == pytest.approx(metrics["combined"]["auc"] / metrics["oracle_auc"])
    assert {"roc.png", "calibration.png", "decision_curve.png"} <= {p.name for p in out.iterdir()}


def test_packages_record_their_training_acquisitions_and_a_case_outside_them_is_named(tiny_packages, phantom_cohort,
                                                                                         tmp_path):
    """The phantom's profile A: 5 mm slices, 9 b-values, CEUS to 240 s. The same patient with a T2WI
    of 3 mm slices and CEUS frames 10 % later is still predicted, with both measures named."""
    import shutil

    import SimpleITK as sitk

    from HEROVisionLib.io.case import Case

    models = load_models(tiny_packages, "cpu")
    survival_ranges, ivim_ranges = (models.ta.herovision["acquisition_ranges"],
                                    models.er.herovision["acquisition_ranges"])
    assert survival_ranges["t2wi"]["slice thickness (mm)"] == [5.0, 5.0]
    assert survival_ranges["ceus"]["last CEUS frame (s)"] == [240.0, 240.0]
    assert ivim_ranges["ivim"]["b-value count"] == [9.0, 9.0] and set(ivim_ranges) == {"ivim"}
    low, high = survival_ranges["t2wi"]["SNR"]
    assert 5 < low <= high < 200  # profile A: SNR 30 in liver by construction; the tumour is brighter
    cohort = Cohort(phantom_cohort)
    inside = predict_case(cohort.case("A0001"), models, "cpu")
    assert inside.out_of_distribution == [] and inside.row()["out_of_distribution"] == ""

    folder = shutil.copytree(phantom_cohort / "A0001", tmp_path / "A0001")
    t2wi = sitk.ReadImage(str(folder / "t2wi.nii.gz"))
    thin = sitk.Image([192, 192, 33], sitk.sitkFloat32)
    thin.SetSpacing((1.0, 1.0, 3.0))
    thin.SetOrigin(t2wi.GetOrigin())
    sitk.WriteImage(sitk.Resample(t2wi, thin, sitk.Transform(), sitk.sitkLinear), str(folder / "t2wi.nii.gz"))
    times = [float(t) * 1.1 for t in (folder / "ceus.times").read_text().split()]
    (folder / "ceus.times").write_text(" ".join(f"{t:g}" for t in times) + "\n")
    outside = predict_case(Case(folder, cohort.case("A0001").clinical), models, "cpu")
    named = outside.out_of_distribution
    assert "t2wi: slice thickness (mm) 3 is outside the training cohort's 5–5" in named
    assert "ceus: last CEUS frame (s) 264 is outside the training cohort's 240–240" in named
    assert not any(line.startswith(("dwi:", "us:", "ivim:")) for line in named)  # untouched modalities pass
    assert all(f"training acquisitions — {line}" in " ".join(outside.warnings) for line in named)
    assert "t2wi: slice thickness" in outside.row()["out_of_distribution"]
    assert np.isfinite(outside.survival["ta"].risk_score) and 0 < outside.er_probability < 1


def test_acquisition_ranges_are_recorded_afterwards_from_the_training_cohort_alone(tiny_packages, phantom_cohort,
                                                                                   tmp_path):
    """A package trained before ranges were recorded gets the very ranges training would have
    recorded, weights untouched; another cohort is refused."""
    import json
    import shutil

    from HEROVisionLib.models.package import METADATA_FILE, WEIGHTS_FILE
    from HEROVisionLib.train.run import record_acquisition_ranges

    package = shutil.copytree(tiny_packages / "HEROVision-TA", tmp_path / "HEROVision-TA")
    expected = load_package(package).herovision["acquisition_ranges"]
    weights = (package / WEIGHTS_FILE).read_bytes()
    metadata = json.loads((package / METADATA_FILE).read_text())
    del metadata["herovision"]["acquisition_ranges"]  # as a package of an earlier HEROVision
    (package / METADATA_FILE).write_text(json.dumps(metadata))
    resign_manifest(package)
    assert "acquisition_ranges" not in load_package(package).herovision
    assert record_acquisition_ranges(package, phantom_cohort, workers=2, progress=False) == expected
    assert load_package(package).herovision["acquisition_ranges"] == expected
    assert (package / WEIGHTS_FILE).read_bytes() == weights
    smaller = tmp_path / "smaller"
    shutil.copytree(phantom_cohort, smaller)
    rows = (smaller / "cohort.csv").read_text().splitlines()
    (smaller / "cohort.csv").write_text("\n".join(rows[:-3]) + "\n")
    with pytest.raises(InputError, match="was trained on .*not its training cohort"):
        record_acquisition_ranges(package, smaller, workers=2, progress=False)


def test_model_selection_judges_an_epoch_with_its_neighbours_not_a_lucky_first_epoch():
    """A small validation set's C-index: 0.80 at epoch 0 by chance, then a model that stays near 0.71.
    The raw maximum would keep epoch 0; the smoothed metric keeps epoch 4, the middle of the best
    three-epoch stretch, and stops after ``patience`` epochs without a better stretch."""
    from torch import nn

    from HEROVisionLib.train.loop import EarlyStopping

    network = nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(patience=4)
    metrics = [0.80, 0.60, 0.62, 0.70, 0.72, 0.71, 0.60, 0.58, 0.57, 0.56, 0.55]
    stopped = None
    for epoch, metric in enumerate(metrics):
        with torch.no_grad():
            network.weight.fill_(epoch)
        if stopping.update(epoch, metric, network):
            stopped = epoch
            break
    assert stopping.restore_best(network, stopped) == 4 and network.weight.item() == 4.0
    assert stopping.best_metric == pytest.approx((0.70 + 0.72 + 0.71) / 3)
    assert stopped == 9  # judged at epoch 5, epoch 4 stays best through the 4 judgements that follow


def test_model_selection_with_no_computable_metric_keeps_the_last_epoch():
    from torch import nn

    from HEROVisionLib.train.loop import EarlyStopping

    network = nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(patience=2)
    for epoch in range(3):
        stopping.update(epoch, float("nan"), network)
    assert stopping.restore_best(network, 2) == 2
