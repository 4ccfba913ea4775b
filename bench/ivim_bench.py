"""IVIM fitting benchmark: our batched fits against dipy's IvimModel and a per-voxel scipy fit.

All methods fit the same synthetic voxels (D ∈ [0.5, 2.5]e-3, f ∈ [0.05, 0.4], D* ∈ [0.01, 0.1]
mm²/s, S0 1000, Rician noise, the phantom's nine b-values); the slow reference fitters see the
first few hundred of them. Prints voxels/s (ours: best of three runs), speed ratios against the references
and the full fit's against its target (10⁶ voxels/s on the CPU), and median absolute errors of D, f,
D* — ours also on exactly the voxels scipy fitted, for a like-for-like accuracy ratio. On the CPU
the torch engine's full fit (the GPU's engine) is timed too. Needs dipy (benchmark only:
``pip install dipy``).

    python bench/ivim_bench.py [--voxels 262144] [--scipy-voxels 1000] [--dipy-voxels 300]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.optimize import least_squares

from HEROVisionLib.devices import resolve_device
from HEROVisionLib.ivim import fit_voxels
from HEROVisionLib.ivim.fit import fit_full
from HEROVisionLib.ivim.simulate import synthetic_voxels

BVALUES = (0.0, 10, 20, 40, 80, 200, 400, 600, 1000)
GENERIC_START = (1.0, 0.1, 1e-3, 0.01)  # (S0, f, D, D*) as the OSIPI collection's fitters start
BOUNDS = ([0.7, 0, 0, 5e-3], [1.3, 1, 5e-3, 0.2])
TARGET_VOXELS_PER_SECOND = {"cpu": 1e6, "cuda": 5e7}


def scipy_fit(signal: np.ndarray) -> dict[str, np.ndarray]:
    """Bounded trust-region least squares per voxel on S/S(b=0), the collection's usual recipe."""
    b = np.asarray(BVALUES)
    out = np.zeros((len(signal), 4))
    for k, row in enumerate(signal):
        y = row / row[0]

        def residual(p, y=y):
            return p[0] * ((1 - p[1]) * np.exp(-b * p[2]) + p[1] * np.exp(-b * p[3])) - y

        out[k] = least_squares(residual, GENERIC_START, bounds=BOUNDS).x
    return {"f": out[:, 1], "D": out[:, 2], "Dstar": out[:, 3]}


def dipy_fit(signal: np.ndarray) -> dict[str, np.ndarray]:
    """dipy's IvimModel with its default settings (fit_method 'trr')."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.ivim import IvimModel

    bvals = np.asarray(BVALUES)
    bvecs = np.zeros((len(bvals), 3))
    bvecs[bvals > 0, 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = IvimModel(gradient_table(bvals, bvecs=bvecs, b0_threshold=0)).fit(signal)
    return {"f": np.asarray(fitted.perfusion_fraction), "D": np.asarray(fitted.D), "Dstar": np.asarray(fitted.D_star)}


def timed(function, *args, repeats=1):
    """The result and the best wall time of ``repeats`` runs (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return result, min(times)


def median_errors(fitted, truth, n=None) -> tuple[float, float, float]:
    n = len(fitted["D"]) if n is None else n
    return tuple(float(np.median(np.abs(np.asarray(fitted[name])[:n] - truth[name][:n]))) for name in ("D", "f", "Dstar"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=262144)
    parser.add_argument("--scipy-voxels", type=int, default=1000)
    parser.add_argument("--dipy-voxels", type=int, default=300)
    parser.add_argument("--snr", type=float, nargs="+", default=[20, 50, 100])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-dipy", action="store_true", help="skip dipy (where it is not installed)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"{args.voxels} voxels (scipy {args.scipy_voxels}, dipy {args.dipy_voxels})")
    header = f"{'SNR':>4} {'method':<10} {'voxels/s':>12} {'×scipy':>9} {'×dipy':>9} {'D err':>9} {'f err':>8} {'D* err':>8}"
    for snr in args.snr:
        voxels = synthetic_voxels(args.voxels, BVALUES, snr, seed=int(snr))
        signal = voxels.signal.float().numpy()
        truth = {"D": voxels.d.numpy(), "f": voxels.f.numpy(), "Dstar": voxels.dstar.numpy()}
        fit_voxels(signal[:1000], BVALUES, "full", device)  # warm-up (first calls allocate)
        results = {}
        for method in ("segmented", "full"):
            results[method] = timed(fit_voxels, signal, BVALUES, method, device, repeats=3)
        if device.type == "cpu":
            fitted, seconds = timed(fit_full, torch.from_numpy(signal), BVALUES, repeats=3)
            results["full/torch"] = {"D": fitted.d.numpy(), "f": fitted.f.numpy(), "Dstar": fitted.dstar.numpy()}, seconds
        results["scipy"] = timed(scipy_fit, voxels.signal[:args.scipy_voxels].numpy())
        if not args.no_dipy:
            results["dipy"] = timed(dipy_fit, voxels.signal[:args.dipy_voxels].numpy())
        rate = {name: len(fitted["D"]) / seconds for name, (fitted, seconds) in results.items()}
        rate.setdefault("dipy", float("nan"))
        print("\n" + header)
        for name, (fitted, _) in results.items():
            errors = median_errors(fitted, truth)
            print(f"{snr:>4.0f} {name:<10} {rate[name]:>12,.0f} {rate[name] / rate['scipy']:>9,.0f} "
                  f"{rate[name] / rate['dipy']:>9,.0f} {errors[0]:>9.3g} {errors[1]:>8.4f} {errors[2]:>8.4f}")
        scipy_errors = median_errors(results["scipy"][0], truth)
        target = TARGET_VOXELS_PER_SECOND.get(device.type)
        if target:
            print(f"     full fit {rate['full']:,.0f} voxels/s = {rate['full'] / target:.2f} × the target {target:,.0f}")
        for method in ("segmented", "full"):
            same = median_errors(results[method][0], truth, args.scipy_voxels)
            ratios = ", ".join(f"{p} {o / s:.3f}" for p, o, s in zip(("D", "f", "D*"), same, scipy_errors))
            print(f"     {method} ÷ scipy, median abs error on scipy's {args.scipy_voxels} voxels: {ratios}")


if __name__ == "__main__":
    main()
