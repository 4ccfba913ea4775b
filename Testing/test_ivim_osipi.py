"""External acceptance: the OSIPI IVIM code collection's unit-test signals under its own rules
(Testing/fixtures/osipi/README.md)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from HEROVisionLib.ivim.cpu_fit import fit_cpu
from HEROVisionLib.ivim.fit import fit_full

FIXTURES = Path(__file__).parent / "fixtures" / "osipi"
NOISY = "generic_DL.json"
RTOL = {"f": 0.1, "D": 0.1, "Dp": 0.1}
ATOL = {"f": 0.2, "D": 5e-4, "Dp": 0.1}
NOISY_RTOL = {"f": 0.2, "D": 0.3, "Dp": 0.4}
NOISY_ATOL = {"f": 0.2, "D": 8e-4, "Dp": 0.08}


def _tissues(path):
    data = json.loads(path.read_text())
    bvalues = data.pop("config")["bvalues"]
    return bvalues, {name: tissue for name, tissue in data.items() if tissue["f"] != 1}  # f = 1: degenerate


def _failures(bvalues, tissues, rtol, atol, fitted):
    failures = {}
    for k, (name, truth) in enumerate(tissues.items()):
        got = {"f": fitted.f[k].item(), "D": fitted.d[k].item(), "Dp": fitted.dstar[k].item()}
        checked = ["f"] + (["D"] if truth["f"] < 0.8 else []) + (["Dp"] if truth["f"] > 0.03 else [])
        wrong = [p for p in checked if abs(got[p] - truth[p]) > atol[p] + rtol[p] * abs(truth[p])]
        if wrong:
            failures[name] = {p: (truth[p], got[p]) for p in wrong}
    return failures


def _fit(bvalues, tissues, engine):
    """The full fit of the tissues' signals (normalised by their first b-value) by one engine:
    an object with per-tissue tensors f, d, dstar."""
    signal = torch.tensor([tissue["data"] for tissue in tissues.values()], dtype=torch.float64)
    signal = signal / signal[:, :1]
    if engine == "torch":
        return fit_full(signal, bvalues)
    maps = fit_cpu(signal.numpy(), bvalues, "full")
    return SimpleNamespace(f=torch.from_numpy(maps["f"]), d=torch.from_numpy(maps["D"]), dstar=torch.from_numpy(maps["Dstar"]))


ENGINES = ["torch", "numba"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", sorted(p for p in FIXTURES.glob("*.json") if p.name != NOISY), ids=lambda p: p.stem)
def test_full_fit_passes_the_osipi_rules(path, engine):
    bvalues, tissues = _tissues(path)
    assert _failures(bvalues, tissues, RTOL, ATOL, _fit(bvalues, tissues, engine)) == {}


def _least_squares_optimum(bvalues, data):
    """scipy's bounded fit started at the truth's neighbourhood and at a generic guess: the better."""
    b, y = np.asarray(bvalues), np.asarray(data) / data[0]

    def residual(p):
        return p[0] * ((1 - p[1]) * np.exp(-b * p[2]) + p[1] * np.exp(-b * p[3])) - y

    fits = [least_squares(residual, start, bounds=([0.7, 0, 0, 5e-3], [1.3, 1, 5e-3, 0.2]))
            for start in ([1, 0.1, 1e-3, 0.01], [1, 0.1, 1e-3, 0.05])]
    return min(fits, key=lambda fit: fit.cost).x


@pytest.mark.parametrize("engine", ENGINES)
def test_full_fit_on_the_noisy_signals_passes_where_least_squares_can(engine):
    """On σ = 0.04 signals a tissue may fail the rule because its least-squares optimum itself lies
    outside the tolerance (pancreas: D* = 0.01 drawn, the optimum is ≈ 0.14 from any start).
    Those tissues are excused only if scipy's optimum fails too — and then ours must agree with it."""
    bvalues, tissues = _tissues(FIXTURES / NOISY)
    fitted = _fit(bvalues, tissues, engine)
    failures = _failures(bvalues, tissues, NOISY_RTOL, NOISY_ATOL, fitted)
    names = list(tissues)
    for name in failures:
        s0, f, d, dstar = _least_squares_optimum(bvalues, tissues[name]["data"])
        k = names.index(name)
        reference = {"f": f, "D": d, "Dp": dstar}
        for parameter, (truth, got) in failures[name].items():
            assert abs(reference[parameter] - truth) > NOISY_ATOL[parameter] + NOISY_RTOL[parameter] * abs(truth)
        assert abs(fitted.f[k].item() - f) < 0.01 and abs(fitted.d[k].item() - d) < 5e-5
    assert len(failures) <= 1
