"""The CPU engine of IVIM fitting: the algorithm of :mod:`.fit`, compiled with numba and run voxel by
voxel, each voxel's whole fit in registers, on a few threads.

The torch engine advances whole chunks of voxels together — right for a GPU, but on a CPU each of
its steps streams (b-values × voxels) arrays through memory, and the fit ran at about 0.4 million
voxels/s on two cores. Here a voxel stops as soon as it has converged and nothing leaves the
cache: above a million voxels/s on the same cores, with the same results (the tests compare the
two engines voxel by voxel).

numba compiles the kernel on its first use after an install (a few seconds) and keeps the machine
code in its cache beside this file (or in the user's cache folder where that is read-only); later
processes load it in a fraction of a second. The kernels release the GIL, so plain Python threads
run them in parallel without numba's own thread pools (which do not survive a fork).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .fit_settings import (BOUND_TOLERANCE, COST_TOLERANCE, D_BOUNDS, DSTAR_BOUNDS, F_BOUNDS,
                           FLAG_AT_BOUND, FLAG_INVALID_SIGNAL, FLAG_NOT_CONVERGED, INITIAL_DAMPING, MAX_DAMPING,
                           MAX_ITERATIONS, MIN_DAMPING, S0_RELATIVE_BOUNDS, SCALE, SEGMENTED_THRESHOLD, TINY,
                           check_bvalues, check_method, check_segmented_bvalues, check_signal_shape, dstar_grid)

#: Maps the kernel writes, in this order (S0 in the input's units).
FITTED_MAPS = ("S0", "f", "D", "Dstar", "ADC", "R2")
#: Fewer voxels than this are fitted on the calling thread: starting threads would cost more.
_VOXELS_PER_THREAD = 4096
# Reassociation lets LLVM vectorise the sums over b-values and the D* grid; no flag that assumes
# away NaN or infinity (the kernel tests for them).
_FAST = {"reassoc", "contract", "nsz", "arcp"}
_BOUNDS = np.array([S0_RELATIVE_BOUNDS, F_BOUNDS, D_BOUNDS, DSTAR_BOUNDS])
_LOWER, _UPPER = _BOUNDS[:, 0] * SCALE, _BOUNDS[:, 1] * SCALE


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the kernel now — an install step, so that a user's
    first fit does not wait for it."""
    fit_cpu(np.array([[1.0, 0.8, 0.6, 0.5]]), [0.0, 100.0, 400.0, 800.0])


def fit_cpu(signal: np.ndarray, bvalues, method: str = "full", threads: int = 1,
            threshold: float = SEGMENTED_THRESHOLD, max_iterations: int = MAX_ITERATIONS) -> dict[str, np.ndarray]:
    """Fit (N, B) signals; returns one (N,) float64 array per map of :data:`FITTED_MAPS` and ``flags``
    (uint8). ``method``: ``segmented`` or ``full`` (see :mod:`.fit`). The input is not modified."""
    check_method(method)
    b = check_bvalues(bvalues)
    check_signal_shape(np.shape(signal), b)
    check_segmented_bvalues(b, threshold)
    n = len(signal)
    values = np.zeros((n, len(FITTED_MAPS)))  # rows: every thread's slice is contiguous (one compiled kernel)
    flags = np.zeros(n, dtype=np.uint8)
    grid = dstar_grid()
    basis = np.exp(-np.outer(b, grid))  # (b-values, grid)
    iterations = max_iterations if method == "full" else -1  # −1: the segmented fit, no refinement

    energy = (basis ** 2).sum(0)

    def run(start, stop):  # float64 rows: one compiled kernel for every input type
        rows = np.ascontiguousarray(signal[start:stop], dtype=np.float64)
        _fit_voxels(rows, b, float(threshold), iterations, grid, basis, energy, _LOWER, _UPPER, values[start:stop],
                    flags[start:stop])

    threads = max(1, min(threads, n // _VOXELS_PER_THREAD))
    edges = np.linspace(0, n, threads + 1).astype(int)
    if threads == 1:
        run(0, n)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, edges[:-1], edges[1:]))
    return {**dict(zip(FITTED_MAPS, values.T.copy())), "flags": flags}


_kernel = numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FAST)
_inlined = numba.njit(nogil=True, cache=True, error_model="numpy", fastmath=_FAST, inline="always")


@_kernel
def _fit_voxels(signal, b, threshold, iterations, grid, basis, basis_energy, lower, upper, values, flags):
    """Fit each row of ``signal`` into the same row of ``values`` (FITTED_MAPS) and ``flags``."""
    n, count = signal.shape
    lowest = b.min()
    y, log_y, target, costs = np.empty(count), np.empty(count), np.empty(count), np.empty(len(grid))
    p = np.empty(4)
    # the LM's arrays, allocated once: (gradient, JᵀJ upper triangle) of the current point, the trial
    # point with its own, and the damped solve's
    scratch = (np.empty(4), np.empty(10), np.empty(4), np.empty(4), np.empty(10), np.empty(4, dtype=np.bool_),
               np.empty((4, 4)), np.empty((4, 4)), np.empty(4))
    for i in range(n):
        reference, lowest_count = 0.0, 0
        for j in range(count):
            value = signal[i, j]
            y[j] = value if value > 0.0 and np.isfinite(value) else 0.0
            if b[j] == lowest:
                reference += y[j]
                lowest_count += 1
        reference /= lowest_count
        if not reference > 0.0:
            flags[i] = FLAG_INVALID_SIGNAL  # parameters stay 0
            continue
        for j in range(count):
            y[j] /= reference
            log_y[j] = math.log(max(y[j], TINY))
        p[0], p[1], p[2], p[3] = _segmented(b, y, log_y, threshold, grid, basis, basis_energy, target, costs)
        if iterations >= 0:
            converged, residual = _levenberg_marquardt(b, y, p, iterations, lower, upper, scratch)
        else:
            converged, residual = True, _residual(b, y, p)
        s0, f, d, dstar = p[0], p[1], p[2], p[3]
        values[i, 0] = s0 * reference
        values[i, 1], values[i, 2], values[i, 3] = f, d, dstar
        values[i, 4] = max(-_log_linear_fit(b, y, log_y, lowest)[1], 0.0)  # ADC over every b-value
        values[i, 5] = _r_squared(y, residual)
        at_bound = (_on_bound(s0, S0_RELATIVE_BOUNDS) or _on_bound(f, F_BOUNDS) or _on_bound(d, D_BOUNDS)
                    or _on_bound(dstar, DSTAR_BOUNDS))
        flags[i] = (FLAG_AT_BOUND if at_bound else 0) | (0 if converged else FLAG_NOT_CONVERGED)


@_kernel
def _log_linear_fit(b, y, log_y, threshold):
    """(intercept, slope) of log y against b over b ≥ threshold, weights y² (var log S ≈ σ²/S²)."""
    sw = sx = sy = sxx = sxy = 0.0
    for j in range(len(b)):
        if b[j] >= threshold:
            w = y[j] * y[j]
            sw += w
            sx += w * b[j]
            sy += w * log_y[j]
            sxx += w * b[j] * b[j]
            sxy += w * b[j] * log_y[j]
    slope = (sw * sxy - sx * sy) / max(sw * sxx - sx * sx, 1e-30)
    return (sy - slope * sx) / max(sw, 1e-30), slope


@_kernel
def _segmented(b, y, log_y, threshold, grid, basis, basis_energy, target, costs):
    """(S0, f, D, D*) of the segmented fit of one normalised signal (see :mod:`.fit`)."""
    intercept, slope = _log_linear_fit(b, y, log_y, threshold)
    d = min(max(-slope, D_BOUNDS[0]), D_BOUNDS[1])
    s0, zeros = 0.0, 0
    for j in range(len(b)):
        if b[j] == 0.0:
            s0 += y[j]
            zeros += 1
    s0 = s0 / zeros if zeros else 1.0
    f = min(max(1.0 - math.exp(intercept) / max(s0, TINY), F_BOUNDS[0]), F_BOUNDS[1])
    # D* minimising Σ_b (f·e^(−b·D*) − t_b)², t = y − (1 − f)·e^(−b·D): cost / f = f·Σe^(−2b·D*) − 2·t·e^(−b·D*)
    for j in range(len(b)):
        target[j] = y[j] - (1.0 - f) * math.exp(-b[j] * d)
    for g in range(len(grid)):  # b-value by b-value along the grid: contiguous, vectorised
        costs[g] = f * basis_energy[g]
    for j in range(len(b)):
        for g in range(len(grid)):
            costs[g] -= 2.0 * target[j] * basis[j, g]
    best = np.argmin(costs)
    best = min(max(best, 1), len(grid) - 2)
    below, at, above = costs[best - 1], costs[best], costs[best + 1]
    curvature = below - 2.0 * at + above
    offset = min(max(0.5 * (below - above) / curvature, -1.0), 1.0) if curvature > 0 else 0.0
    dstar = grid[best] * math.exp(offset * math.log(grid[1] / grid[0]))
    return s0, f, d, max(min(max(dstar, DSTAR_BOUNDS[0]), DSTAR_BOUNDS[1]), d)


@_kernel
def _levenberg_marquardt(b, y, p, iterations, lower, upper, scratch):
    """Projected LM of :mod:`.fit` on one voxel, in place on natural parameters ``p``; (converged?,
    its residual sum of squares)."""
    gradient, hessian, trial, trial_gradient, trial_hessian, free, a, factor, forward = scratch
    for k in range(4):
        p[k] *= SCALE[k]
    _project(p, lower, upper)
    cost = _normal_equations(b, y, p, gradient, hessian)
    damping = INITIAL_DAMPING
    finished = False
    for _ in range(iterations):
        _damped_step(p, gradient, hessian, damping, lower, upper, trial, free, a, factor, forward)
        _project(trial, lower, upper)
        trial_cost = _normal_equations(b, y, trial, trial_gradient, trial_hessian)
        if trial_cost < cost:
            finished = cost - trial_cost <= COST_TOLERANCE * cost
            p[:], gradient[:], hessian[:] = trial, trial_gradient, trial_hessian
            cost = trial_cost
            damping = max(damping * 0.3, MIN_DAMPING)
        else:
            damping = min(damping * 10.0, MAX_DAMPING)
        if finished or damping >= MAX_DAMPING:
            finished = True
            break
    for k in range(4):  # unscaling may round past a bound
        p[k] = min(max(p[k] / SCALE[k], lower[k] / SCALE[k]), upper[k] / SCALE[k])
    return finished, cost


@_kernel
def _project(p, lower, upper):
    for k in range(4):
        p[k] = min(max(p[k], lower[k]), upper[k])
    p[3] = max(p[3], p[2] * (SCALE[3] / SCALE[2]))  # D* ≥ D


@_inlined
def _normal_equations(b, y, p, gradient, hessian):
    """Residual cost, gradient Jᵀr and JᵀJ's upper triangle (row by row) at scaled ``p``; written
    out term by term, as the compiler keeps scalars in registers and not a small array."""
    s0, f, d, dstar = p[0], p[1], p[2] / SCALE[2], p[3] / SCALE[3]
    factor_d, factor_dstar = -s0 * (1.0 - f) / SCALE[2], -s0 * f / SCALE[3]
    cost = g0 = g1 = g2 = g3 = 0.0
    h00 = h01 = h02 = h03 = h11 = h12 = h13 = h22 = h23 = h33 = 0.0
    for j in range(len(b)):
        slow, fast = math.exp(-b[j] * d), math.exp(-b[j] * dstar)
        shape = slow + f * (fast - slow)
        residual = s0 * shape - y[j]
        cost += residual * residual
        j0, j1, j2, j3 = shape, (fast - slow) * s0, slow * b[j] * factor_d, fast * b[j] * factor_dstar
        g0 += j0 * residual
        g1 += j1 * residual
        g2 += j2 * residual
        g3 += j3 * residual
        h00 += j0 * j0
        h01 += j0 * j1
        h02 += j0 * j2
        h03 += j0 * j3
        h11 += j1 * j1
        h12 += j1 * j2
        h13 += j1 * j3
        h22 += j2 * j2
        h23 += j2 * j3
        h33 += j3 * j3
    gradient[0], gradient[1], gradient[2], gradient[3] = g0, g1, g2, g3
    hessian[0], hessian[1], hessian[2], hessian[3], hessian[4] = h00, h01, h02, h03, h11
    hessian[5], hessian[6], hessian[7], hessian[8], hessian[9] = h12, h13, h22, h23, h33
    return cost


@_inlined
def _damped_step(p, gradient, hessian, damping, lower, upper, out, free, a, factor, forward):
    """``out`` = p + δ, (H + λ·diag H)·δ = −g over the free parameters (a parameter at a bound that
    the gradient pushes further out stays), by a 4 × 4 Cholesky; the last four arguments are
    scratch space."""
    for k in range(4):
        free[k] = not ((p[k] <= lower[k] and gradient[k] > 0) or (p[k] >= upper[k] and gradient[k] < 0))
    a[:] = 0.0
    factor[:] = 0.0
    entry = 0
    for r in range(4):
        for c in range(r, 4):
            if free[r] and free[c]:
                a[r, c] = a[c, r] = hessian[entry] * (1.0 + damping) + 1e-12 if r == c else hessian[entry]
            elif r == c:
                a[r, r] = 1.0
            entry += 1
    for c in range(4):
        total = a[c, c]
        for k in range(c):
            total -= factor[c, k] * factor[c, k]
        factor[c, c] = math.sqrt(max(total, 1e-30))
        for r in range(c + 1, 4):
            total = a[c, r]
            for k in range(c):
                total -= factor[r, k] * factor[c, k]
            factor[r, c] = total / factor[c, c]
    for r in range(4):
        total = -gradient[r] if free[r] else 0.0
        for k in range(r):
            total -= factor[r, k] * forward[k]
        forward[r] = total / factor[r, r]
    for r in range(3, -1, -1):
        total = forward[r]
        for k in range(r + 1, 4):
            total -= factor[k, r] * out[k]
        out[r] = total / factor[r, r]
    for k in range(4):
        out[k] += p[k]


@_kernel
def _residual(b, y, p):
    """Residual sum of squares of natural parameters ``p`` on the normalised signal."""
    total = 0.0
    for j in range(len(b)):
        model = p[0] * ((1.0 - p[1]) * math.exp(-b[j] * p[2]) + p[1] * math.exp(-b[j] * p[3]))
        total += (model - y[j]) ** 2
    return total


@_kernel
def _r_squared(y, residual):
    """The fit's R² (0 for a flat signal)."""
    mean = y.mean()
    total = 0.0
    for j in range(len(y)):
        total += (y[j] - mean) ** 2
    return 1.0 - residual / total if total > 0 else 0.0


@_kernel
def _on_bound(value, bounds):
    tolerance = BOUND_TOLERANCE * (bounds[1] - bounds[0])
    return value <= bounds[0] + tolerance or value >= bounds[1] - tolerance
