"""Layer 1: images, diffusion series, case/cohort layout, physical-space geometry, crops, measures."""

from .case import COHORT_COLUMNS, MODALITIES, Case, Cohort
from .crops import CEUS_PHASES, Crop, select_phase_frames, slice_crops, voi_crop
from .diffusion import DiffusionSeries, read_diffusion_series, write_diffusion_series
from .geometry import resample_roi_to, same_grid
from .images import read_image, read_multiframe, write_image, write_multiframe
from .measure import largest_axial_diameter_cm, volume_ml

__all__ = ["COHORT_COLUMNS", "MODALITIES", "Case", "Cohort", "CEUS_PHASES", "Crop", "select_phase_frames",
           "slice_crops", "voi_crop", "DiffusionSeries", "read_diffusion_series", "write_diffusion_series",
           "resample_roi_to", "same_grid", "read_image", "read_multiframe", "write_image", "write_multiframe",
           "largest_axial_diameter_cm", "volume_ml"]
