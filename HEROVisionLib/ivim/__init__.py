"""Layer ivim: voxel-wise IVIM fitting (torch, CPU or CUDA), parametric maps and ROI statistics."""

from .fit import FLAG_AT_BOUND, FLAG_INVALID_SIGNAL, FLAG_NOT_CONVERGED, IVIMFit, fit_adc, fit_full, fit_segmented
from .maps import MAP_NAMES, METHODS, fit_series, fit_voxels
from .statistics import roi_statistics

__all__ = ["FLAG_AT_BOUND", "FLAG_INVALID_SIGNAL", "FLAG_NOT_CONVERGED", "IVIMFit", "MAP_NAMES", "METHODS",
           "fit_adc", "fit_full", "fit_segmented", "fit_series", "fit_voxels", "roi_statistics"]
