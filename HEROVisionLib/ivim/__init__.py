"""Layer 2: voxel-wise IVIM fitting (torch, CPU or CUDA)."""

from .fit import IVIMParameters, fit_adc, fit_segmented

__all__ = ["IVIMParameters", "fit_adc", "fit_segmented"]
