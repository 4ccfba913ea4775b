"""IVIM fitting, both engines (torch for GPUs, numba for the CPU): accuracy against the field's
references and against scipy's least squares, bounds, degenerate voxels, determinism, and the
two engines against each other."""

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from HEROVisionLib.errors import InputError
from HEROVisionLib.ivim import FLAG_AT_BOUND, FLAG_INVALID_SIGNAL, FLAG_NOT_CONVERGED
from HEROVisionLib.ivim.cpu_fit import fit_cpu
from HEROVisionLib.ivim.fit import IVIMFit, fit_adc, fit_full, fit_segmented, model
from HEROVisionLib.ivim.simulate import synthetic_voxels

BVALUES = (0.0, 10, 20, 40, 80, 200, 400, 600, 1000)
B = torch.tensor(BVALUES, dtype=torch.float64)
BOUNDS = {"d": (0, 5e-3), "f": (0, 1), "dstar": (5e-3, 0.2)}


def _numba(method, threads=2):
    """The CPU engine with the torch engine's calling convention (tensors in, an IVIMFit out)."""

    def fit(signal, bvalues):
        maps = fit_cpu(signal.numpy(), bvalues, method, threads=threads)
        return IVIMFit(*(torch.from_numpy(maps[name]) for name in ("S0", "f", "D", "Dstar", "R2", "flags")))

    fit.__name__ = f"numba_{method}"
    return fit


SEGMENTED = [fit_segmented, _numba("segmented")]
FULL = [fit_full, _numba("full")]
ENGINE_NAMES = ["torch", "numba"]


def _median_errors(fitted, truth):
    return {name: (getattr(fitted, name) - getattr(truth, name)).abs().median().item() for name in ("d", "f", "dstar")}


@pytest.mark.parametrize("fit_segmented", SEGMENTED, ids=ENGINE_NAMES)
def test_segmented_fit_matches_the_consensus_accuracy_at_snr_50(fit_segmented):
    """Reference: the OSIPI consensus segmented fit (TF_reference) reaches, on this b-value set and
    parameter range at SNR 50, median absolute errors of about D 8.2e-5, f 0.028, D* 0.0128."""
    voxels = synthetic_voxels(20000, BVALUES, snr=50)
    fitted = fit_segmented(voxels.signal.float(), BVALUES)
    errors = _median_errors(fitted, voxels)
    assert errors["d"] < 8.2e-5 * 1.05 and errors["f"] < 0.028 * 1.05 and errors["dstar"] < 0.0128 * 1.05
    assert fitted.s0.sub(1000).abs().median() < 20


@pytest.mark.parametrize("fit_full", FULL, ids=ENGINE_NAMES)
def test_full_fit_matches_the_best_least_squares_fitters_at_snr_50(fit_full):
    """Reference: OSIPI's OGC_AmsterdamUMC_biexp (full bi-exponential least squares) reaches, on
    this set-up, median absolute errors of about D 6.6e-5, f 0.020, D* 0.0097."""
    voxels = synthetic_voxels(20000, BVALUES, snr=50)
    errors = _median_errors(fit_full(voxels.signal.float(), BVALUES), voxels)
    assert errors["d"] < 6.6e-5 * 1.05 and errors["f"] < 0.020 * 1.05 and errors["dstar"] < 0.0097 * 1.05


SCIPY_BOUNDS = ([0.7, 0, 0, 5e-3], [1.3, 1, 5e-3, 0.2])
# OSIPI's usual generic initial guess (S0, f, D, D*) first, then other corners of the range.
SCIPY_STARTS = ([1, 0.1, 1e-3, 0.01], [1, 0.1, 1e-3, 0.05], [1, 0.3, 1e-3, 0.1], [1, 0.05, 2e-3, 0.02],
                [1, 0.2, 0.5e-3, 0.15])


def _scipy_costs(signal) -> np.ndarray:
    """(voxels, starts) least-squares costs of scipy's bounded per-voxel fit of S/S(b=0)."""
    b = B.numpy()
    costs = []
    for row in signal.numpy():
        y = row / row[0]

        def residual(p, y=y):
            s0, f, d, dstar = p
            return s0 * ((1 - f) * np.exp(-b * d) + f * np.exp(-b * dstar)) - y

        costs.append([2 * least_squares(residual, start, bounds=SCIPY_BOUNDS).cost for start in SCIPY_STARTS])
    return np.array(costs)


@pytest.mark.parametrize("fit_full", FULL, ids=ENGINE_NAMES)
@pytest.mark.parametrize("snr", [20, 50])
def test_full_fit_finds_the_least_squares_minimum_as_often_as_scipy(snr, fit_full):
    """Bi-exponential least squares has local minima. The best of five scipy starts (and ours) is
    the reference minimum; our LM must reach it (cost within 0.1 %) on at least as many
    voxels, less 2 %, as scipy's per-voxel fit from the usual generic start."""
    signal = synthetic_voxels(200, BVALUES, snr=snr, seed=3).signal
    fitted = fit_full(signal, BVALUES)
    ours = (((model(B, fitted.s0, fitted.f, fitted.d, fitted.dstar) - signal) ** 2).sum(1) / signal[:, 0] ** 2).numpy()
    scipy_costs = _scipy_costs(signal)
    best = np.minimum(scipy_costs.min(1), ours)
    reached = lambda cost: np.mean(cost <= best * (1 + 1e-3))  # noqa: E731
    assert reached(ours) >= reached(scipy_costs[:, 0]) - 0.02


@pytest.mark.parametrize("fit", SEGMENTED + FULL, ids=["torch-segmented", "numba-segmented", "torch-full", "numba-full"])
def test_noise_free_signals_are_recovered(fit):
    n = 64
    generator = torch.Generator().manual_seed(5)
    d = 0.6e-3 + 1.6e-3 * torch.rand(n, generator=generator, dtype=torch.float64)
    f = 0.05 + 0.3 * torch.rand(n, generator=generator, dtype=torch.float64)
    dstar = torch.full((n,), 0.08, dtype=torch.float64)  # decayed by b = 200: the segmented fit is exact too
    fitted = fit(model(B, torch.full((n,), 500.0, dtype=torch.float64), f, d, dstar), BVALUES)
    torch.testing.assert_close(fitted.d, d, rtol=2e-3, atol=0)
    torch.testing.assert_close(fitted.f, f, rtol=2e-2, atol=0)
    torch.testing.assert_close(fitted.dstar, dstar, rtol=5e-2, atol=0)
    assert (fitted.r2 > 0.9999).all()


@pytest.mark.parametrize("fit", SEGMENTED + FULL, ids=["torch-segmented", "numba-segmented", "torch-full", "numba-full"])
def test_bounds_hold_and_degenerate_voxels_are_flagged_not_crashed(fit):
    signal = synthetic_voxels(2000, BVALUES, snr=5, seed=1).signal
    signal[:10] = 0.0  # background
    signal[10:20, 0] = float("nan")  # corrupt reference
    signal[20:30] = -5.0  # negative after a bad scaling
    signal[30:40] = 700.0  # no decay at all: D = 0, f = 0
    signal[40:50, 1:] = 0.0  # signal gone after b = 0: f = 1
    fitted = fit(signal, BVALUES)
    invalid = torch.zeros(len(signal), dtype=torch.bool)
    invalid[:30] = True
    assert ((fitted.flags & FLAG_INVALID_SIGNAL) != 0).equal(invalid)
    for name in ("s0", "f", "d", "dstar", "r2"):
        value = getattr(fitted, name)
        assert torch.isfinite(value).all()
        assert (value[invalid] == 0).all()
    for name, (low, high) in BOUNDS.items():
        value = getattr(fitted, name)[~invalid]
        assert (value >= low).all() and (value <= high).all()
    assert (fitted.dstar >= fitted.d).all()
    assert ((fitted.flags[30:50] & FLAG_AT_BOUND) != 0).all()
    torch.testing.assert_close(fitted.d[30:40], torch.zeros(10, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("fit", SEGMENTED + FULL, ids=["torch-segmented", "numba-segmented", "torch-full", "numba-full"])
def test_cpu_results_are_deterministic(fit):
    signal = synthetic_voxels(5000, BVALUES, snr=30, seed=2).signal.float()
    first, second = fit(signal, BVALUES), fit(signal.clone(), BVALUES)
    for name in ("s0", "f", "d", "dstar", "r2", "flags"):
        assert torch.equal(getattr(first, name), getattr(second, name))


@pytest.mark.parametrize("fit_full", FULL, ids=ENGINE_NAMES)
def test_the_input_signal_is_not_modified(fit_full):
    signal = synthetic_voxels(100, BVALUES, snr=30).signal
    signal[0, 0] = float("nan")
    before = signal.clone()
    fit_full(signal, BVALUES)
    assert torch.equal(signal.nan_to_num(-1), before.nan_to_num(-1))


def test_adc_of_a_mono_exponential_signal():
    adc = torch.tensor([0.8e-3, 1.2e-3, 2.0e-3], dtype=torch.float64)
    signal = 700.0 * torch.exp(-B[None] * adc[:, None])
    torch.testing.assert_close(fit_adc(signal, BVALUES), adc, rtol=1e-9, atol=0)
    np.testing.assert_allclose(fit_cpu(signal.numpy(), BVALUES)["ADC"], adc.numpy(), rtol=1e-9, atol=0)


@pytest.mark.parametrize("snr", [20, 50])
def test_the_two_engines_agree_voxel_by_voxel(snr):
    """The CPU engine stops each voxel at its own convergence, the torch engine in batches (a few
    voxels take an extra step), so a rare voxel on a flat cost surface may end elsewhere; the rest
    agree far below the fits' own errors (median D error 1.7e-4 at SNR 20, f 0.05, D* 0.02)."""
    signal = synthetic_voxels(20000, BVALUES, snr=snr, seed=7).signal
    for torch_fit, numba_fit in (SEGMENTED, FULL):
        ours, theirs = numba_fit(signal, BVALUES), torch_fit(signal, BVALUES)
        for name, tolerance in (("d", 1e-5), ("f", 5e-3), ("dstar", 5e-3), ("s0", 5.0), ("r2", 1e-3)):
            difference = (getattr(ours, name) - getattr(theirs, name)).abs()
            assert difference.quantile(0.99) < tolerance, (torch_fit.__name__, name)
        assert (ours.flags == theirs.flags).float().mean() > 0.995
    assert ((fit_cpu(signal.numpy(), BVALUES)["flags"] & FLAG_NOT_CONVERGED) != 0).mean() < 0.001


def test_the_cpu_engine_gives_the_same_maps_on_any_number_of_threads():
    signal = synthetic_voxels(30000, BVALUES, snr=30, seed=4).signal.numpy()
    one, three = fit_cpu(signal, BVALUES, threads=1), fit_cpu(signal, BVALUES, threads=3)
    for name in one:
        np.testing.assert_array_equal(one[name], three[name])


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_bad_inputs_are_refused_by_name(engine):
    signal = synthetic_voxels(4, BVALUES, snr=50).signal
    segmented, full = (fit_segmented, fit_full) if engine == "torch" else (_numba("segmented"), _numba("full"))
    with pytest.raises(InputError, match="at least 4 b-values"):
        full(signal[:, :3], BVALUES[:3])
    with pytest.raises(InputError, match="at least two b-values ≥ 200"):
        segmented(signal[:, :6], BVALUES[:6])
    with pytest.raises(InputError, match=r"signal: expected \(voxels, 9 b-values\)"):
        full(signal[:, :8], BVALUES)
    with pytest.raises(InputError, match="duplicate b-values"):
        full(signal, (0, 10, 10, 40, 80, 200, 400, 600, 1000))
    if engine == "torch":
        with pytest.raises(InputError, match="at least 4 b-values"):
            fit_adc(signal[:, :3], BVALUES[:3])
