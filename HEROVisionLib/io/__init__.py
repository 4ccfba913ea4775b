"""Layer io: images, diffusion series, case/cohort layout, CEUS phases, physical-space geometry,
measures, output folders."""

from .case import COHORT_COLUMNS, MODALITIES, Case, Cohort
from .ceus import CEUS_PHASES, select_phase_frames
from .diffusion import DiffusionSeries, read_diffusion_series, write_diffusion_series
from .geometry import resample_roi_to, same_grid
from .images import read_image, read_multiframe, write_image, write_multiframe
from .measure import largest_axial_diameter_cm, volume_ml

__all__ = ["COHORT_COLUMNS", "MODALITIES", "Case", "Cohort", "CEUS_PHASES", "select_phase_frames", "DiffusionSeries", "read_diffusion_series", "write_diffusion_series",
           "resample_roi_to", "same_grid", "read_image", "read_multiframe", "write_image", "write_multiframe",
           "largest_axial_diameter_cm", "volume_ml"]
