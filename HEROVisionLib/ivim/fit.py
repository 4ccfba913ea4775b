"""Voxel-wise IVIM fitting in torch: every voxel of a chunk advances at once, on a GPU (or any torch device).

Model: ``S(b) = S0·((1−f)·exp(−b·D) + f·exp(−b·D*))``. Signals are divided by each voxel's
lowest-b signal before fitting, so one set of bounds and tolerances fits every scanner scale; S0 is
reported back in the input's units.

* :func:`fit_segmented` — the consensus segmented fit: D and S0' by weighted (w = S²) log-linear
  least squares on b ≥ threshold, f = 1 − S0'/S(0), then D* by a bounded 1-D least-squares search
  with D and f fixed.
* :func:`fit_full` — bounded Levenberg–Marquardt on (S0, f, D, D*) started from the segmented
  fit: analytic Jacobian, Marquardt damping, parameters at a bound leave the step (active set).
* :func:`fit_adc` — mono-exponential ADC by log-linear least squares over all b-values.

Bounds, flags and stopping rules are those of :mod:`.fit_settings`, shared with the CPU engine
(:mod:`.cpu_fit`), which runs the same algorithm voxel by voxel; this one serves GPUs, where
whole chunks of voxels advance together.

Zero, negative and non-finite signals are read as 0 (logs use a tiny floor, and log-linear weights
S² make near-noise-floor signals count little); a voxel whose lowest-b signal is not positive
cannot be fitted: its parameters are 0 and it is flagged ``FLAG_INVALID_SIGNAL``.

Public functions take signals as (voxels, b-values); inside, arrays are (b-values, voxels) so that
every element-wise operation runs along long contiguous rows — several times faster than
reducing over a short last axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .fit_settings import (BOUND_TOLERANCE, COST_TOLERANCE, D_BOUNDS, DSTAR_BOUNDS, DSTAR_GRID, F_BOUNDS,
                           FLAG_AT_BOUND, FLAG_INVALID_SIGNAL, FLAG_NOT_CONVERGED, INITIAL_DAMPING, MAX_DAMPING,
                           MAX_ITERATIONS, MIN_DAMPING, S0_RELATIVE_BOUNDS, SCALE, SEGMENTED_THRESHOLD, TINY,
                           check_bvalues, check_segmented_bvalues, check_signal_shape, dstar_grid)

_UPPER_TRIANGLE = [(i, j) for i in range(4) for j in range(i, 4)]
_RETIRE_FRACTION = 0.1  # compact the batch once this share of it has finished


@dataclass
class IVIMFit:
    """Per-voxel results, tensors of shape (N,): parameters (S0 in the input's units), the fit's R²
    on the normalised signal, and the flag bits."""

    s0: torch.Tensor
    f: torch.Tensor
    d: torch.Tensor
    dstar: torch.Tensor
    r2: torch.Tensor
    flags: torch.Tensor


def _prepare(signal: torch.Tensor, bvalues):
    """(b as a (B, 1) column, normalised signal (B, N) ≥ 0, reference signal (N,), valid (N,)).

    The reference is each voxel's mean signal at the lowest b; voxels where it is not positive are
    invalid and get reference 1.
    """
    b = check_bvalues(bvalues)
    check_signal_shape(signal.shape, b)
    b = torch.as_tensor(b).to(signal)[:, None]
    signal = torch.nan_to_num(signal.T, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    reference = signal[b[:, 0] == b.min()].mean(0)
    valid = reference > 0
    reference = torch.where(valid, reference, torch.ones_like(reference))
    return b, signal / reference, reference, valid


def model(b: torch.Tensor, s0, f, d, dstar) -> torch.Tensor:
    """The IVIM signal, (N, B), for b-values (B,) and parameters (N,)."""
    b = b[None, :]
    return s0[:, None] * ((1 - f)[:, None] * torch.exp(-b * d[:, None]) + f[:, None] * torch.exp(-b * dstar[:, None]))


def _log_linear_decay(b: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(intercept, decay rate) of log y against b per voxel, weights y² (var log S ≈ σ²/S²)."""
    w = y ** 2
    log_y = torch.log(y.clamp_min(TINY))
    sw, sx, sy = w.sum(0), (w * b).sum(0), (w * log_y).sum(0)
    sxx, sxy = (w * b * b).sum(0), (w * b * log_y).sum(0)
    slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx).clamp_min(1e-30)
    return (sy - slope * sx) / sw.clamp_min(1e-30), -slope


def fit_adc(signal: torch.Tensor, bvalues) -> torch.Tensor:
    """ADC (mm²/s) by log-linear least squares over all b-values; 0 where there is no signal."""
    b, y, _, valid = _prepare(signal, bvalues)
    _, rate = _log_linear_decay(b, y)
    return torch.where(valid, rate.clamp_min(0.0), torch.zeros_like(rate))


def _dstar_search(b, y, f, d):
    """D* minimising Σ_b (f·e^(−b·D*) − t_b)², t = y − (1 − f)·e^(−b·D), for D* ∈ [max(5e-3, D), 0.2].

    All voxels are scored on one log-spaced grid with a single matrix product (the cost divided by
    f is f·Σe^(−2b·D*) − 2·t·e^(−b·D*), linear in (t, f)); a parabola through the best grid point
    and its neighbours refines it to well below the grid step.
    """
    grid = torch.as_tensor(dstar_grid(), dtype=y.dtype, device=y.device)
    basis = torch.exp(-grid[:, None] * b[:, 0])  # (G, B)
    scorer = torch.cat([-2 * basis, (basis ** 2).sum(1, keepdim=True)], 1)  # (G, B + 1)
    target = y - (1 - f) * torch.exp(-b * d)
    cost = torch.cat([target, f[None]]).T @ scorer.T  # (N, G): argmin along rows is fast
    best = cost.argmin(1).clamp(1, DSTAR_GRID - 2)
    below, at, above = cost.gather(1, best[:, None] + torch.arange(-1, 2, device=y.device)).T
    curvature = below - 2 * at + above
    offset = torch.where(curvature > 0, 0.5 * (below - above) / curvature, torch.zeros_like(at)).clamp(-1, 1)
    step = math.log(DSTAR_BOUNDS[1] / DSTAR_BOUNDS[0]) / (DSTAR_GRID - 1)
    dstar = grid[best] * torch.exp(offset * step)
    return torch.maximum(dstar.clamp(*DSTAR_BOUNDS), d)  # D ≤ 5e-3 = the grid's start, so D* ≥ D


def _segmented_normalised(b, y, threshold):
    """Segmented fit of normalised signals (B, N): (S0/reference, f, D, D*), each (N,)."""
    check_segmented_bvalues(b[:, 0].cpu().numpy(), threshold)
    high = b[:, 0] >= threshold
    intercept, rate = _log_linear_decay(b[high], y[high])
    d = rate.clamp(*D_BOUNDS)
    s0 = y[b[:, 0] == 0].mean(0) if b.min() == 0 else torch.ones_like(d)
    f = (1 - torch.exp(intercept) / s0.clamp_min(TINY)).clamp(*F_BOUNDS)
    return s0, f, d, _dstar_search(b, y, f, d)


def fit_segmented(signal: torch.Tensor, bvalues, threshold: float = SEGMENTED_THRESHOLD) -> IVIMFit:
    """The consensus segmented fit (see module docstring). ``signal``: (N, B)."""
    b, y, reference, valid = _prepare(signal, bvalues)
    params = torch.stack(_segmented_normalised(b, y, threshold))
    return _result(b, y, reference, valid, params, converged=None)


def fit_full(signal: torch.Tensor, bvalues, threshold: float = SEGMENTED_THRESHOLD, max_iterations: int = MAX_ITERATIONS) -> IVIMFit:
    """Bounded least squares of all four parameters, from the segmented fit. ``signal``: (N, B)."""
    b, y, reference, valid = _prepare(signal, bvalues)
    start = torch.stack(_segmented_normalised(b, y, threshold))
    params, converged = _levenberg_marquardt(b, y, start, max_iterations)
    return _result(b, y, reference, valid, params, converged)


class _ScaledModel:
    """The IVIM model of normalised signals in the LM's scaled parameters p = (S0, f, D·1e3, D*·1e1)."""

    def __init__(self, b, dtype_like):
        scale = torch.tensor(SCALE, dtype=dtype_like.dtype, device=dtype_like.device)
        self.scale = scale[:, None]
        self.b_d, self.b_dstar = b / scale[2], b / scale[3]
        bounds = (S0_RELATIVE_BOUNDS, F_BOUNDS, D_BOUNDS, DSTAR_BOUNDS)
        self.natural_lower = torch.tensor([low for low, _ in bounds], dtype=torch.float64).to(scale)[:, None]
        self.natural_upper = torch.tensor([high for _, high in bounds], dtype=torch.float64).to(scale)[:, None]
        self.lower, self.upper = self.natural_lower * self.scale, self.natural_upper * self.scale

    def unscale(self, p):
        """Natural parameters, exactly within their bounds (unscaling may round past them)."""
        return torch.minimum(torch.maximum(p / self.scale, self.natural_lower), self.natural_upper)

    def project(self, p):
        p = torch.minimum(torch.maximum(p, self.lower), self.upper)
        p[3] = torch.maximum(p[3], p[2] * (self.scale[3] / self.scale[2]))  # D* ≥ D
        return p

    def exponentials(self, p):
        return torch.exp(-self.b_d * p[2]), torch.exp(-self.b_dstar * p[3])

    def normal_equations(self, p, y):
        """Residual cost (N,), gradient Jᵀr (4, N) and JᵀJ's upper triangle (10, N), row by row."""
        s0, f = p[0], p[1]
        slow, fast = self.exponentials(p)
        difference = fast - slow
        shape = slow + f * difference
        residual = s0 * shape - y
        # Jacobian columns as (B, N) rows times per-voxel factors, applied after the b-sums (cheaper).
        rows = (shape, difference, slow * self.b_d, fast * self.b_dstar)
        factors = torch.stack((torch.ones_like(s0), s0, -s0 * (1 - f), -s0 * f))
        gradient = factors * torch.stack([(row * residual).sum(0) for row in rows])
        hessian = torch.stack([factors[i] * factors[j] * (rows[i] * rows[j]).sum(0) for i, j in _UPPER_TRIANGLE])
        return (residual ** 2).sum(0), gradient, hessian


def _levenberg_marquardt(b, y, start, max_iterations):
    """Projected LM (active set at the bounds); returns ((4, N) parameters, converged (N,)).

    A voxel is finished when an accepted step lowers its cost by less than ``COST_TOLERANCE``
    (relative) or its damping saturates; finished voxels leave the batch so the work shrinks as
    the fit converges.
    """
    scaled = _ScaledModel(b, y)
    p = scaled.project(start * scaled.scale)
    result = p.clone()
    converged = torch.zeros(y.shape[1], dtype=torch.bool, device=y.device)
    index = torch.arange(y.shape[1], device=y.device)
    damping = torch.full_like(p[0], INITIAL_DAMPING)
    finished = torch.zeros_like(converged)
    cost, gradient, hessian = scaled.normal_equations(p, y)
    for _ in range(max_iterations):
        free = ~(((p <= scaled.lower) & (gradient > 0)) | ((p >= scaled.upper) & (gradient < 0)))
        trial = scaled.project(p + _solve_damped(hessian, -gradient, damping, free))
        # The trial's normal equations cost one evaluation and serve the next step if it is taken.
        trial_cost, trial_gradient, trial_hessian = scaled.normal_equations(trial, y)
        better = trial_cost < cost
        finished |= (better & (cost - trial_cost <= COST_TOLERANCE * cost))
        p, gradient, hessian = (torch.where(better, new, old) for new, old in
                                ((trial, p), (trial_gradient, gradient), (trial_hessian, hessian)))
        cost = torch.where(better, trial_cost, cost)
        damping = torch.where(better, damping * 0.3, damping * 10).clamp(MIN_DAMPING, MAX_DAMPING)
        finished |= damping >= MAX_DAMPING
        if finished.sum() > _RETIRE_FRACTION * len(index):  # write the finished out, go on with the rest
            done, keep = finished.nonzero()[:, 0], (~finished).nonzero()[:, 0]
            result[:, index[done]] = p[:, done]
            converged[index[done]] = True
            index, damping, finished, cost = index[keep], damping[keep], finished[keep], cost[keep]
            y, p, gradient, hessian = (value.index_select(1, keep) for value in (y, p, gradient, hessian))
            if not len(index):
                break
    result[:, index] = p
    converged[index] = finished
    return scaled.unscale(result), converged


def _solve_damped(hessian, rhs, damping, free):
    """Solve (H + λ·diag H)·δ = rhs per voxel for the free parameters (δ = 0 for the others).

    A 4 × 4 Cholesky written out element-wise: for millions of tiny systems this is many times
    faster than batched LAPACK calls.
    """
    n = len(rhs)
    a = {}
    for (i, j), entry in zip(_UPPER_TRIANGLE, hessian):
        both = free[i] & free[j]
        if i == j:
            a[i, j] = torch.where(both, entry * (1 + damping) + 1e-12, torch.ones_like(entry))
        else:
            a[i, j] = torch.where(both, entry, torch.zeros_like(entry))
    rhs = torch.where(free, rhs, torch.zeros_like(rhs))
    lower = {}
    for j in range(n):
        lower[j, j] = torch.sqrt((a[j, j] - sum(lower[j, k] ** 2 for k in range(j))).clamp_min(1e-30))
        for i in range(j + 1, n):
            lower[i, j] = (a[j, i] - sum(lower[i, k] * lower[j, k] for k in range(j))) / lower[j, j]
    forward = []
    for i in range(n):
        forward.append((rhs[i] - sum(lower[i, k] * forward[k] for k in range(i))) / lower[i, i])
    solution = [None] * n
    for i in reversed(range(n)):
        solution[i] = (forward[i] - sum(lower[k, i] * solution[k] for k in range(i + 1, n))) / lower[i, i]
    return torch.stack(solution)


def _result(b, y, reference, valid, params, converged) -> IVIMFit:
    """Parameters in the input's units, R², flags; invalid voxels get zeros and their flag."""
    s0, f, d, dstar = params
    residual = s0 * ((1 - f) * torch.exp(-b * d) + f * torch.exp(-b * dstar)) - y
    total = ((y - y.mean(0)) ** 2).sum(0)
    r2 = torch.where(total > 0, 1 - (residual ** 2).sum(0) / total.clamp_min(1e-30), torch.zeros_like(total))
    at_bound = (_on_bound(s0, S0_RELATIVE_BOUNDS) | _on_bound(f, F_BOUNDS) | _on_bound(d, D_BOUNDS)
                | _on_bound(dstar, DSTAR_BOUNDS))
    flags = at_bound.to(torch.uint8) * FLAG_AT_BOUND
    if converged is not None:
        flags |= (~converged).to(torch.uint8) * FLAG_NOT_CONVERGED
    flags = torch.where(valid, flags, torch.full_like(flags, FLAG_INVALID_SIGNAL))
    zero = torch.zeros_like(s0)
    keep = lambda value: torch.where(valid, value, zero)  # noqa: E731
    return IVIMFit(keep(s0 * reference), keep(f), keep(d), keep(dstar), keep(r2), flags)


def _on_bound(value, bounds, relative=BOUND_TOLERANCE):
    low, high = bounds
    tolerance = relative * (high - low)
    return (value <= low + tolerance) | (value >= high - tolerance)
