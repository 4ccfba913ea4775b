"""The IVIM model's inputs from a case folder, without torch (a process that only prepares them —
training's workers, or a command's helper started before torch is loaded — never pays its import).

The IVIM model reads the tumour VOI: the b-value series as a 64³ world-aligned crop, divided by the
mean b = 0 signal of the tumour and brought onto the model's own b-values (so a centre's b-value
scheme, like its gain and grid, changes what the network sees little beyond noise), and the
parametric maps ADC, D, D*, f fitted on the source grid over the crop's footprint, then cropped the
same way and scaled to order one.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import HEROVisionError, InputError
from ..io.case import Case
from ..io.diffusion import DiffusionSeries
from ..io.geometry import check_roi_contrast
from ..io.images import frames_to_vector, vector_frame
from ..io.measure import largest_axial_diameter_cm
from ..io.model_folders import recorded_block
from ..ivim import fit_series, roi_statistics
from .crops import Crop, on_crop_grid, voi_crop

#: How the IVIM model's crops are made; a package records the block it was trained with. The map
#: scales bring each parametric map to order one (mm²/s → 10⁻³ mm²/s, D* → 10⁻¹ mm²/s);
#: ``maps_roi_only`` zeroes the maps outside the tumour so the map branch sees the tumour alone
#: (its values, size and outline), while the b-value branch keeps the surrounding liver. ``bvalues``
#: are the b-value branch's channels, in order (s/mm²): a series is fed in that order, whatever the
#: order of its volumes; ``bvalue_resampling`` says how a series with another scheme is brought onto
#: them (:func:`bvalue_channels`).
IVIM_PREPROCESSING = {"crop_size": 64, "spacing_mm": 1.5, "ivim_method": "full",
                      "map_scales": {"ADC": 1e3, "D": 1e3, "Dstar": 1e1, "f": 1.0}, "maps_roi_only": True,
                      "bvalues": [0.0, 10.0, 20.0, 40.0, 80.0, 200.0, 400.0, 600.0, 1000.0],
                      "bvalue_resampling": "log-linear"}
#: What a series needs for its b-value channels to be resampled (:func:`bvalue_channels`).
MIN_RESAMPLED_BVALUES, MIN_TOP_BVALUE = 4, 500.0
#: Normalised signal below which a voxel is noise, not decay: the floor under logarithms.
_SIGNAL_FLOOR = 1e-3
#: Parametric-map channels of the IVIM map network (ViT-mDL), in order.
IVIM_MAP_CHANNELS = ("ADC", "D", "Dstar", "f")


@dataclass
class IVIMInputs:
    """The IVIM model's two crops as arrays, and what they were made from (geometry, maps, statistics)."""

    bvalues: np.ndarray  # (9, S, S, S) float32
    maps: np.ndarray  # (4, S, S, S) float32
    crop: Crop  # the b-value crop and the ROI on the crop grid
    source: sitk.Image  # the IVIM grid (a b = 0 frame), where the overlay lands
    source_maps: dict[str, sitk.Image]  # parametric maps on the IVIM grid (0 outside the VOI)
    statistics: object  # pandas DataFrame of roi_statistics
    roi: sitk.Image  # the tumour ROI on the IVIM grid
    roi_source: object
    bvalue_list: tuple[float, ...] = ()  # the series' b-values (s/mm²), in volume order

    @property
    def tumor_d(self) -> float:
        """Median D of the largest tumour (label 1): the combined model's clinical predictor."""
        rows = self.statistics[(self.statistics["label"] == 1) & (self.statistics["parameter"] == "D")]
        return float(rows["median"].iloc[0])

    @property
    def tumor_size_cm(self) -> float:
        """Largest axial diameter of label 1 on the IVIM grid, the combined model's other predictor
        (the same definition in training and prediction)."""
        return largest_axial_diameter_cm(self.roi, 1, self.roi_source)


def _footprint(reference: sitk.Image, crop_grid: sitk.Image) -> sitk.Image:
    """Voxels of ``reference`` whose centres lie inside the crop's box (the region to fit)."""
    ones = sitk.Image(crop_grid.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(crop_grid)
    return sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def bvalue_channels(signal: np.ndarray, bvalues, settings: dict, source) -> np.ndarray:
    """The model's b-value channels (``settings["bvalues"]``, in order) from a series' volumes
    ``signal`` (B, …), normalised to the tumour's b = 0 signal.

    A channel whose b-value the series has (within 1 %, or 1 s/mm²) is that volume as measured, so a
    series acquired with the model's own scheme is fed unchanged, whatever its volume order. With
    ``bvalue_resampling`` (``"log-linear"``) a channel the series lacks is interpolated voxel by
    voxel: mono-exponentially between the nearest measured b-values below and above it (exact for a
    single compartment), and beyond the largest along the decay of the last two (never rising). A
    series needs a b = 0 volume, at least :data:`MIN_RESAMPLED_BVALUES` b-values and a largest
    b-value of :data:`MIN_TOP_BVALUE` or more; packages without resampling (older ones) need
    exactly their b-values. Otherwise the series is refused: a network must not read one b-value
    as another."""
    expected = settings.get("bvalues")
    if expected is None:  # a package older than the record: volume order
        return signal
    measured = np.asarray(bvalues, dtype=np.float64)
    matches = [np.flatnonzero(np.abs(measured - wanted) <= max(1.0, 0.01 * wanted)) for wanted in expected]
    if all(len(match) == 1 for match in matches) and len(measured) == len(expected):
        return signal[[int(match[0]) for match in matches]]
    resampled = settings.get("bvalue_resampling") == "log-linear"
    fault = (f"b-values {[float(b) for b in measured]} are not the {len(expected)} the IVIM model was trained on "
             f"({[float(b) for b in expected]})")
    if not resampled:
        raise InputError(source, fault + ": no early-recurrence probability")
    if len(measured) < MIN_RESAMPLED_BVALUES or measured.min() > 1.0 or measured.max() < MIN_TOP_BVALUE:
        raise InputError(source, f"{fault} and cannot be resampled to them: that needs a b = 0 volume, at least "
                                 f"{MIN_RESAMPLED_BVALUES} b-values and one of {MIN_TOP_BVALUE:g} s/mm² or more: "
                                 "no early-recurrence probability")
    order = np.argsort(measured)
    measured, logs = measured[order], np.log(np.maximum(signal[order], _SIGNAL_FLOOR))
    channels = []
    for wanted, match in zip(expected, matches):
        if len(match):
            channels.append(signal[int(match[0])])
            continue
        above = int(np.searchsorted(measured, wanted))
        if above < len(measured):  # between two measured b-values
            weight = (wanted - measured[above - 1]) / (measured[above] - measured[above - 1])
            log_value = (1 - weight) * logs[above - 1] + weight * logs[above]
        else:  # beyond the largest: the last two's decay, continued
            rate = np.maximum((logs[-2] - logs[-1]) / (measured[-1] - measured[-2]), 0.0)
            log_value = logs[-1] - rate * (wanted - measured[-1])
        channels.append(np.exp(log_value).astype(signal.dtype))
    return np.stack(channels)


def ivim_inputs(case: Case, settings: dict = IVIM_PREPROCESSING, device="auto") -> IVIMInputs:
    """The IVIM model's two crops, made as ``settings`` (a package's preprocessing block) says, and the
    parametric maps and tumour statistics they come from. Packages older than ``maps_roi_only`` saw
    whole-crop maps, and still get them."""
    crop_size, spacing_mm = settings["crop_size"], settings["spacing_mm"]
    series: DiffusionSeries = case.load_ivim()
    b0_index = int(np.argmin(series.bvalues))
    b0 = vector_frame(series.image, b0_index)
    roi = case.load_roi("ivim", b0)
    check_roi_contrast(series.image, roi, series.source)
    crop = voi_crop(series.image, roi, size=crop_size, spacing_mm=spacing_mm, source=series.source,
                    roi_source=case.roi_path("ivim"))
    footprint = _footprint(b0, crop.image)
    if not sitk.GetArrayViewFromImage(footprint).any():
        raise InputError(series.source, "the tumour VOI holds no voxel of the IVIM series")
    maps = fit_series(series, footprint, method=settings["ivim_method"], device=device)
    statistics = roi_statistics(maps, roi, case.roi_path("ivim"))
    bvalue_crop = np.moveaxis(sitk.GetArrayFromImage(crop.image), -1, 0)  # (9, z, y, x)
    tumour = sitk.GetArrayViewFromImage(crop.roi) == 1
    tumour_b0 = float(bvalue_crop[b0_index][tumour].mean()) if tumour.any() else float(bvalue_crop[b0_index].max())
    if not tumour_b0 > 0:
        raise InputError(series.source, "no b = 0 signal in the tumour: cannot normalise the IVIM crop")
    inside = tumour if settings.get("maps_roi_only", False) else True
    stacked = frames_to_vector([maps[name] for name in IVIM_MAP_CHANNELS])  # one crop for all four maps
    map_crop = np.moveaxis(sitk.GetArrayFromImage(on_crop_grid(stacked, crop)), -1, 0)
    map_crops = [crop_of_map * settings["map_scales"][name] * inside
                 for crop_of_map, name in zip(map_crop, IVIM_MAP_CHANNELS)]
    channels = bvalue_channels(bvalue_crop / tumour_b0, series.bvalues, settings, series.source)
    return IVIMInputs(channels.astype(np.float32), np.stack(map_crops).astype(np.float32), crop, b0, maps, statistics, roi,
                      case.roi_path("ivim"), tuple(series.bvalues))


class IVIMInputsAhead:
    """A case's IVIM inputs made on the CPU in a process of its own, which a command forks before it
    loads torch: for the seconds that import takes the machine's other cores idle, and reading the
    series, fitting its maps and loading the fit's compiled kernel would otherwise follow it. The
    process makes them with the preprocessing block the IVIM package on disk records; :meth:`inputs`
    gives them only for that case and that block — otherwise, or when the process failed, it makes
    them itself. Never other inputs, only earlier ones.

    Forked, not spawned: a fresh interpreter would start (and tear down) one more Python, and the
    parent holds nothing yet that a fork could not copy. :meth:`possible` says where forking is safe."""

    def __init__(self, case_folder, models_folder=None):
        self.case_folder = Path(case_folder)  # as given: a refusal names the files as the command would
        context = multiprocessing.get_context("fork")
        self._made, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_make_ahead, args=(self.case_folder, models_folder, sender),
                                        name="herovision-ivim-inputs", daemon=True)
        self._process.start()
        sender.close()

    @staticmethod
    def possible() -> bool:
        """Whether this process may fork one now: on Linux (elsewhere system libraries forbid forking
        a process that has loaded them), before torch is loaded (its thread pools do not survive a fork)."""
        return sys.platform.startswith("linux") and "torch" not in sys.modules

    def inputs(self, case: Case, settings: dict, device="cpu") -> IVIMInputs:
        """What ``ivim_inputs(case, settings, device)`` gives (its refusal raised): the inputs made
        ahead when they were made for this case and block on the CPU, else made now."""
        try:
            made_with, outcome = self._made.recv()
        except (EOFError, OSError):  # the process ended without them
            made_with = outcome = None
        finally:
            self._made.close()
        cpu = getattr(device, "type", device) == "cpu"
        if made_with != settings or not cpu or Path(case.folder).resolve() != self.case_folder.resolve():
            return ivim_inputs(case, settings, device)
        if isinstance(outcome, HEROVisionError):
            raise outcome
        return outcome


def _make_ahead(case_folder: Path, models_folder, sender) -> None:
    """The process of :class:`IVIMInputsAhead`: sends (block, inputs or refusal), or nothing when the
    package's block cannot be read or making them failed otherwise (the command then makes them and
    says why). Ctrl-C is the command's to handle: it ends this process as it leaves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    block = recorded_block(models_folder, "er")
    settings = block.get("preprocessing") if block else None
    if not isinstance(settings, dict):
        return
    try:
        outcome = ivim_inputs(Case(case_folder), settings, "cpu")
    except HEROVisionError as refusal:
        outcome = refusal
    except Exception:  # noqa: BLE001 — not this process's to report: the command meets it again itself
        return
    sender.send((settings, outcome))
