"""IVIM maps of whole series: agreement with the phantom's tissue values, masks, ROI statistics,
the ``herovision ivim`` command, and bounded memory on a clinical-size series."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from HEROVisionLib.cli import main
from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Case
from HEROVisionLib.io.output_folder import MARKER
from HEROVisionLib.io.diffusion import write_diffusion_series
from HEROVisionLib.io.geometry import labels_present, same_grid
from HEROVisionLib.ivim import MAP_NAMES, fit_series, roi_statistics
from HEROVisionLib.ivim.fit import fit_full
from HEROVisionLib.ivim.simulate import synthetic_voxels
from HEROVisionLib.phantom.anatomy import draw_anatomy
from HEROVisionLib.phantom.generate import draw_case_variables
from HEROVisionLib.phantom.profiles import PROFILES
from HEROVisionLib.phantom.render import S0

from conftest import COHORT_SEED

PROFILE = PROFILES["A"]
SIGMA = 1000.0 / PROFILE.snr_ivim  # the phantom's noise: liver S0 / SNR


def _pure_tissue_masks(index):
    """Voxels made only of liver, and only of the largest tumour, from the phantom's own anatomy."""
    rng, patient, _ = draw_case_variables(COHORT_SEED, index)
    anatomy = draw_anatomy(rng, patient, PROFILE.ivim)
    fractions = anatomy.tissue_fractions(PROFILE.ivim.voxel_centres(), PROFILE.ivim.spacing)
    return patient, fractions["liver"] >= 0.999, fractions["tumour"][0] >= 0.999


def _expected_spread(d, f, dstar, snr):
    """Bias and per-voxel SD (1.4826·MAD) of the full fit for one tissue at this SNR, by simulation."""
    voxels = synthetic_voxels(4000, PROFILE.bvalues, snr, seed=11, d_range=(d, d), f_range=(f, f),
                              dstar_range=(dstar, dstar))
    fitted = fit_full(voxels.signal.float(), PROFILE.bvalues)
    out = {}
    for name, truth in (("D", d), ("f", f), ("Dstar", dstar)):
        value = {"D": fitted.d, "f": fitted.f, "Dstar": fitted.dstar}[name].double()
        median = value.median().item()
        out[name] = (median - truth, 1.4826 * (value - median).abs().median().item())
    return out


@pytest.mark.parametrize("index", [4, 5])
def test_phantom_maps_agree_with_the_tissue_values(phantom_cohort, index):
    """Map medians over pure liver and pure tumour voxels equal the phantom's values within the
    fit's own bias at this SNR plus 4 standard errors of a median (1.25·SD/√n); tumour values also
    vary in space (±15 %·heterogeneity per SD of the phantom's fields), which is allowed for."""
    case = Case(phantom_cohort / f"A{index:04d}")
    maps = {name: sitk.GetArrayFromImage(image) for name, image in fit_series(case.load_ivim(), device="cpu").items()}
    patient, liver, tumour = _pure_tissue_masks(index)
    assert tumour.sum() >= 100 and liver.sum() >= 10000
    tissues = (("liver", liver, patient.liver_D, patient.liver_f, patient.liver_Dstar, 0.0),
               ("tumour", tumour, patient.tumor_D, patient.tumor_f, patient.tumor_Dstar, 0.15 * patient.heterogeneity))
    for tissue, mask, d, f, dstar, spatial in tissues:
        snr = S0[tissue] / SIGMA
        for name, (bias, sd) in _expected_spread(d, f, dstar, snr).items():
            truth = {"D": d, "f": f, "Dstar": dstar}[name]
            spatial_allowance = spatial * truth if name in ("D", "f") else 0.0
            tolerance = abs(bias) + 4 * 1.25 * sd / np.sqrt(mask.sum()) + spatial_allowance
            assert abs(np.median(maps[name][mask]) - truth) <= tolerance, (tissue, name)


def _case_series(phantom_cohort):
    case = Case(phantom_cohort / "A0002")
    return case, case.load_ivim(), case.load_roi("ivim")


def test_mask_limits_the_fit_and_other_grids_are_resampled(phantom_cohort):
    case, series, roi = _case_series(phantom_cohort)
    whole = fit_series(series, method="segmented", device="cpu")
    # the same ROI on a grid twice as fine: brought back onto the series grid in physical space
    fine_origin = roi.TransformContinuousIndexToPhysicalPoint([-0.25, -0.25, -0.25])
    fine = sitk.Resample(roi, [2 * s for s in roi.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                         fine_origin, [s / 2 for s in roi.GetSpacing()], roi.GetDirection())
    masked = fit_series(series, fine, method="segmented", device="cpu")
    inside = sitk.GetArrayViewFromImage(roi) != 0
    for name in MAP_NAMES:
        assert same_grid(masked[name], roi)
        values, reference = sitk.GetArrayViewFromImage(masked[name]), sitk.GetArrayViewFromImage(whole[name])
        assert not values[~inside].any()
        np.testing.assert_allclose(values[inside], reference[inside], rtol=1e-5, atol=1e-7)


def test_a_mask_outside_the_series_is_refused(phantom_cohort):
    _, series, roi = _case_series(phantom_cohort)
    roi.SetOrigin([o + 500.0 for o in roi.GetOrigin()])
    with pytest.raises(InputError, match="do not overlap in physical space"):
        fit_series(series, roi, mask_source="liver_mask.nii.gz")


def test_roi_statistics_are_the_textbook_ones():
    values = np.zeros((1, 4, 5), dtype=np.float32)
    values[0, 0, :] = [1, 2, 3, 4, 5]
    values[0, 1, :] = [6, 7, 8, 9, 10]
    labels = np.zeros((1, 4, 5), dtype=np.uint8)
    labels[0, :2] = 1
    labels[0, 2, 0] = 2
    flags = np.zeros((1, 4, 5), dtype=np.uint8)
    flags[0, 2, 0] = 1  # label 2's only voxel had no signal
    image = lambda array: sitk.GetImageFromArray(array)  # noqa: E731
    maps = {name: image(values) for name in ("ADC", "D", "Dstar", "f", "S0", "R2")}
    maps["flags"] = image(flags)
    table = roi_statistics(maps, image(labels)).set_index(["label", "parameter"])
    row = table.loc[(1, "D")]
    # 1…10: mean 5.5, median 5.5, SD √(82.5/9), numpy's linear percentiles 1.9 and 9.1
    assert row["count"] == 10 and row["flagged"] == 0
    np.testing.assert_allclose(row[["mean", "median", "sd", "p10", "p90"]].astype(float),
                               [5.5, 5.5, np.sqrt(82.5 / 9), 1.9, 9.1], rtol=1e-12)
    assert table.loc[(2, "D"), "count"] == 0 and table.loc[(2, "D"), "flagged"] == 1
    assert np.isnan(table.loc[(2, "D"), "mean"])


def test_ivim_command_on_a_case_folder(phantom_cohort, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(["ivim", str(phantom_cohort / "A0002"), "--out", str(out), "--device", "cpu"]) == 0
    case, series, roi = _case_series(phantom_cohort)
    for name in MAP_NAMES:
        assert same_grid(sitk.ReadImage(str(out / f"ivim_{name}.nrrd")), roi)
    table = pd.read_csv(out / "ivim_statistics.csv")
    assert list(table.columns) == ["label", "parameter", "count", "mean", "median", "sd", "p10", "p90", "flagged"]
    tumour_voxels = int((sitk.GetArrayViewFromImage(roi) == 1).sum())
    assert table.query("label == 1 and parameter == 'D'")["count"].item() == tumour_voxels
    assert sorted(p.name for p in out.iterdir()) == sorted([f"ivim_{n}.nrrd" for n in MAP_NAMES]
                                                           + ["ivim_statistics.csv", MARKER])
    assert "Statistics per label" in capsys.readouterr().out


def test_ivim_command_on_a_4d_file_with_a_mask(phantom_cohort, tmp_path):
    case, series, roi = _case_series(phantom_cohort)
    image_path = write_diffusion_series(series, tmp_path / "series.nrrd")  # writes series.bval beside it
    sitk.WriteImage(roi, str(tmp_path / "mask.nrrd"))
    out = tmp_path / "maps"
    assert main(["ivim", str(image_path), "--out", str(out), "--mask", str(tmp_path / "mask.nrrd"),
                 "--method", "segmented", "--device", "cpu"]) == 0
    d_map = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ivim_D.nrrd")))
    assert not d_map[sitk.GetArrayViewFromImage(roi) == 0].any()
    assert set(pd.read_csv(out / "ivim_statistics.csv")["label"]) == set(labels_present(roi))


def test_without_a_mask_only_the_body_is_fitted_and_the_command_says_so(phantom_cohort, tmp_path, capsys):
    """The phantom's IVIM series (a body in a dark field) padded with more air (noise at 2 % of the
    body's signal): the air is left unfitted, the tumour VOI is fitted whole; a volume that is all
    tissue is fitted whole — both said on the terminal."""
    from HEROVisionLib.io.diffusion import DiffusionSeries
    from HEROVisionLib.io.images import frames_to_vector, vector_to_frames

    _, series, roi = _case_series(phantom_cohort)
    rng = np.random.default_rng(0)
    padded = []
    for frame in vector_to_frames(series.image):
        field = sitk.ConstantPad(frame, (8, 8, 0), (8, 8, 0), 0.0)
        values = sitk.GetArrayFromImage(field)
        air = np.ones(values.shape, dtype=bool)
        air[:, 8:-8, 8:-8] = False
        values[air] = np.abs(rng.normal(0, 0.02 * np.percentile(sitk.GetArrayViewFromImage(frame), 99), int(air.sum())))
        image = sitk.GetImageFromArray(values)
        image.CopyInformation(field)
        padded.append(image)
    path = write_diffusion_series(DiffusionSeries(frames_to_vector(padded), series.bvalues, "padded"),
                                  tmp_path / "series.nrrd")
    assert main(["ivim", str(path), "--out", str(tmp_path / "maps"), "--method", "segmented", "--device", "cpu"]) == 0
    s0 = sitk.ReadImage(str(tmp_path / "maps" / "ivim_S0.nrrd"))
    fitted = sitk.GetArrayFromImage(s0) > 0
    tumour = sitk.GetArrayFromImage(sitk.Resample(roi, s0, sitk.Transform(), sitk.sitkNearestNeighbor)) > 0
    assert not fitted[air].any() and tumour.any() and fitted[tumour].all()
    assert f"{int(fitted.sum())} of {fitted.size} voxels fitted: the body in the b = 0 volume" in capsys.readouterr().out
    tissue = synthetic_voxels(1000, series.bvalues, snr=50).signal.numpy().astype(np.float32).reshape(10, 10, 10, -1)
    frames = [sitk.GetImageFromArray(np.ascontiguousarray(tissue[..., k])) for k in range(len(series.bvalues))]
    path = write_diffusion_series(DiffusionSeries(frames_to_vector(frames), series.bvalues, "tissue"),
                                  tmp_path / "tissue.nrrd")
    assert main(["ivim", str(path), "--out", str(tmp_path / "whole"), "--method", "segmented", "--device", "cpu"]) == 0
    assert "Every voxel fitted (no background in the b = 0 volume)" in capsys.readouterr().out
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "whole" / "ivim_S0.nrrd"))) > 0).all()


def test_ivim_command_errors_leave_no_output(phantom_cohort, tmp_path, capsys):
    out = tmp_path / "maps"
    roi = sitk.ReadImage(str(phantom_cohort / "A0002" / "ivim_roi.nii.gz"))
    roi.SetOrigin([o + 500.0 for o in roi.GetOrigin()])
    sitk.WriteImage(roi, str(tmp_path / "far.nrrd"))
    case = str(phantom_cohort / "A0002")
    assert main(["ivim", case, "--out", str(out), "--mask", str(tmp_path / "far.nrrd")]) == 2
    assert main(["ivim", case, "--out", str(out), "--method", "fast"]) == 2
    assert main(["ivim", case, "--out", str(out), "--device", "tpu"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3
    assert "far.nrrd: ROI and image" in errors[0]
    assert errors[1] == "herovision: error: --method: unknown IVIM fit method 'fast'; expected one of segmented, full"
    assert errors[2].startswith("herovision: error: --device: unknown device 'tpu'")
    assert not out.exists()


def test_clinical_size_series_stays_under_2_gb(tmp_path):
    """256 × 256 × 40 voxels × 9 b-values, full fit of every voxel, in a fresh process."""
    script = textwrap.dedent("""
        import resource, numpy as np, SimpleITK as sitk
        from HEROVisionLib.io.diffusion import DiffusionSeries
        from HEROVisionLib.ivim import fit_series
        from HEROVisionLib.ivim.simulate import synthetic_voxels
        bvalues = (0.0, 10, 20, 40, 80, 200, 400, 600, 1000)
        signal = synthetic_voxels(256 * 256 * 40, bvalues, snr=40).signal.float().numpy()
        image = sitk.GetImageFromArray(signal.reshape(40, 256, 256, 9), isVector=True)
        del signal
        maps = fit_series(DiffusionSeries(image, bvalues, "synthetic"), method="full", device="cpu")
        assert all(np.isfinite(sitk.GetArrayViewFromImage(m)).all() for m in maps.values())
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, encoding="utf-8",
                            check=True)
    peak_kib = int(result.stdout.split()[-1])
    assert peak_kib < 2 * 1024 ** 2, f"peak RSS {peak_kib / 1024:.0f} MiB"
