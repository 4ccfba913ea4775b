"""What every IVIM fit shares, whichever engine runs it (torch on a GPU, numba on the CPU): the
model's bounds, the flag bits, the search grid and stopping rules, and the checks of b-values.

Bounds follow the OSIPI IVIM code collection: D ∈ [0, 5e-3], f ∈ [0, 1], D* ∈ [5e-3, 0.2] mm²/s,
D* ≥ D, S0 ∈ [0.7, 1.3] × the voxel's lowest-b signal. Kept free of torch so that a CPU fit need
not load it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

D_BOUNDS = (0.0, 5e-3)
F_BOUNDS = (0.0, 1.0)
DSTAR_BOUNDS = (5e-3, 0.2)
S0_RELATIVE_BOUNDS = (0.7, 1.3)
MIN_BVALUES = 4
#: The fits there are: the consensus segmented fit, and all four parameters by least squares from it.
METHODS = ("segmented", "full")
#: b-values (s/mm²) from which the segmented fit takes D: perfusion has decayed by then.
SEGMENTED_THRESHOLD = 200.0
MAX_ITERATIONS = 40

#: Flag-map bits (0 = a good fit).
FLAG_INVALID_SIGNAL = 1  # lowest-b signal not positive (or not finite): nothing to fit
FLAG_AT_BOUND = 2  # a parameter sits on its bound
FLAG_NOT_CONVERGED = 4  # the full fit still improved at its last iteration

TINY = 1e-6  # the floor of signals under a logarithm
DSTAR_GRID = 128  # log-spaced D* candidates of the 1-D search: steps of 2.9 %, refined by a parabola
#: The Levenberg–Marquardt works on parameters of order one: (S0, f, D·1e3, D*·1e1).
SCALE = (1.0, 1.0, 1e3, 1e1)
INITIAL_DAMPING, MIN_DAMPING, MAX_DAMPING = 1e-2, 1e-7, 1e6
COST_TOLERANCE = 1e-4  # relative cost decrease of an accepted step that ends a voxel's fit
BOUND_TOLERANCE = 1e-4  # a parameter within this share of its range from a bound is flagged on it


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError("--method", f"unknown IVIM fit method {method!r}; expected one of {', '.join(METHODS)}")


def check_bvalues(bvalues, source="b-values") -> np.ndarray:
    """The b-values as float64, refused unless there are enough of them, all different."""
    b = np.asarray(bvalues, dtype=np.float64)
    if b.ndim != 1 or len(b) < MIN_BVALUES:
        raise InputError(source, f"IVIM fitting needs at least {MIN_BVALUES} b-values, got {b.size}")
    if len(np.unique(b)) != len(b):
        raise InputError(source, "duplicate b-values")
    return b


def check_segmented_bvalues(b: np.ndarray, threshold: float) -> None:
    if int((b >= threshold).sum()) < 2:
        raise InputError("b-values", f"the segmented fit needs at least two b-values ≥ {threshold:g} s/mm²")


def check_signal_shape(shape, b: np.ndarray) -> None:
    if len(shape) != 2 or shape[1] != len(b):
        raise InputError("signal", f"expected (voxels, {len(b)} b-values), got shape {tuple(shape)}")


def dstar_grid() -> np.ndarray:
    """The D* candidates of the segmented fit's search, log-spaced over the bounds."""
    return np.logspace(np.log10(DSTAR_BOUNDS[0]), np.log10(DSTAR_BOUNDS[1]), DSTAR_GRID)
