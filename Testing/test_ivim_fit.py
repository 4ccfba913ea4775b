"""IVIM fitting: the segmented fit reaches the consensus method's accuracy; ADC is exact on
mono-exponential signals; bad b-value sets are refused."""

import pytest
import torch

from HEROVisionLib.errors import InputError
from HEROVisionLib.ivim import fit_adc, fit_segmented
from HEROVisionLib.ivim.fit import model

BVALUES = torch.tensor([0, 10, 20, 40, 80, 200, 400, 600, 1000.0], dtype=torch.float64)


def _voxels(n, snr, seed=0):
    """Rician-noise signals over D ∈ [0.5, 2.5]e-3, f ∈ [0.05, 0.4], D* ∈ [0.01, 0.1] mm²/s."""
    generator = torch.Generator().manual_seed(seed)
    uniform = lambda low, high: low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
    d, f, dstar = uniform(0.5e-3, 2.5e-3), uniform(0.05, 0.4), uniform(0.01, 0.1)
    clean = model(BVALUES, torch.full((n,), 1000.0, dtype=torch.float64), f, d, dstar)
    sigma = 1000.0 / snr
    noisy = torch.hypot(clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64),
                        sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64))
    return noisy, d, f, dstar


def test_segmented_fit_matches_the_consensus_accuracy_at_snr_50():
    """Reference: the OSIPI consensus segmented fit (TF_reference) reaches, on this b-value set and
    parameter range at SNR 50, median absolute errors of about D 8.2e-5, f 0.028, D* 0.0128."""
    signal, d, f, dstar = _voxels(20000, snr=50)
    fitted = fit_segmented(signal.float(), BVALUES)
    assert (fitted.d - d).abs().median() < 8.2e-5 * 1.05
    assert (fitted.f - f).abs().median() < 0.028 * 1.05
    assert (fitted.dstar - dstar).abs().median() < 0.0128 * 1.05
    assert fitted.s0.sub(1000).abs().median() < 20


def test_segmented_fit_is_exact_without_noise_when_dstar_has_decayed():
    n = 64
    d = torch.linspace(0.6e-3, 2.0e-3, n, dtype=torch.float64)
    f = torch.linspace(0.05, 0.3, n, dtype=torch.float64)
    dstar = torch.full((n,), 0.08, dtype=torch.float64)
    signal = model(BVALUES, torch.full((n,), 500.0, dtype=torch.float64), f, d, dstar)
    fitted = fit_segmented(signal, BVALUES)
    torch.testing.assert_close(fitted.d, d, rtol=2e-3, atol=0)
    torch.testing.assert_close(fitted.f, f, rtol=2e-2, atol=0)
    torch.testing.assert_close(fitted.dstar, dstar, rtol=5e-2, atol=0)


def test_parameters_respect_bounds_and_never_nan():
    signal, *_ = _voxels(2000, snr=5, seed=1)
    signal[:10] = 0.0
    signal[10:20, 3] = float("nan")
    signal[20:30] = -5.0
    fitted = fit_segmented(signal, BVALUES)
    for value, (low, high) in ((fitted.d, (0, 5e-3)), (fitted.f, (0, 1)), (fitted.dstar, (5e-3, 0.2))):
        assert torch.isfinite(value).all()
        assert (value >= low).all() and (value <= high).all()
    assert (fitted.dstar >= fitted.d).all()


def test_adc_of_a_mono_exponential_signal():
    adc = torch.tensor([0.8e-3, 1.2e-3, 2.0e-3], dtype=torch.float64)
    signal = 700.0 * torch.exp(-BVALUES[None] * adc[:, None])
    torch.testing.assert_close(fit_adc(signal, BVALUES), adc, rtol=1e-9, atol=0)


def test_bad_bvalue_sets_are_refused():
    signal, *_ = _voxels(4, snr=50)
    with pytest.raises(InputError, match="at least 4 b-values"):
        fit_adc(signal[:, :3], BVALUES[:3])
    with pytest.raises(InputError, match="at least two b-values ≥ 200"):
        fit_segmented(signal[:, :6], BVALUES[:6])
