"""Layer ivim: voxel-wise IVIM fitting (numba on the CPU, torch on a GPU), parametric maps and ROI statistics."""

from .fit_settings import FLAG_AT_BOUND, FLAG_INVALID_SIGNAL, FLAG_NOT_CONVERGED, METHODS
from .maps import MAP_NAMES, fit_series, fit_voxels
from .statistics import roi_statistics

__all__ = ["FLAG_AT_BOUND", "FLAG_INVALID_SIGNAL", "FLAG_NOT_CONVERGED", "MAP_NAMES", "METHODS", "fit_series",
           "fit_voxels", "roi_statistics"]
