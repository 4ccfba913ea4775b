"""IVIM parametric maps of a diffusion series: chunked voxel-wise fits written back on its grid.

Only voxels inside the mask (all voxels without one) are fitted; the maps are 0 elsewhere. The
``ivim`` command, given no mask, fits only the body (:func:`body_mask`): the air around it holds
no signal to fit. Voxels are fitted in chunks of ``chunk_size``, so that memory stays bounded
whatever the volume and progress shows chunk by chunk.

The CPU runs the numba engine (:mod:`.cpu_fit`), a GPU the torch one (:mod:`.fit`): the same
algorithm, each where it is fastest. ``auto`` takes CUDA when there is one, else the CPU (Apple's
MPS only when asked for by name).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..devices import cpu_threads, cuda_possible, resolve_device
from ..io.diffusion import DiffusionSeries
from ..io.geometry import resample_roi_to
from .fit_settings import check_method

#: Map names, in the order they are written: parameters, then ADC, fit quality and flags.
MAP_NAMES = ("S0", "f", "D", "Dstar", "ADC", "R2", "flags")
#: Voxels fitted at once: on CPU enough to keep its threads busy, on a GPU enough to fill it.
DEFAULT_CHUNK = {"cpu": 262144, "cuda": 2097152}


def fit_voxels(signal: np.ndarray, bvalues, method: str = "full", device="auto",
               chunk_size: int | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Fit (N, B) signals chunk by chunk; returns one (N,) float32 array per map (flags uint8)."""
    check_method(method)
    device = _fit_device(device)
    fit_chunk = _cpu_chunk_fit(method) if device == "cpu" else _torch_chunk_fit(method, device)
    chunk_size = chunk_size or DEFAULT_CHUNK.get(getattr(device, "type", device), DEFAULT_CHUNK["cpu"])
    n = len(signal)
    maps = {name: np.zeros(n, dtype=np.uint8 if name == "flags" else np.float32) for name in MAP_NAMES}
    from tqdm import tqdm

    with tqdm(total=n, desc=f"IVIM {method} fit", unit="voxel", unit_scale=True, disable=not progress) as bar:
        for start in range(0, n, chunk_size):
            chunk = signal[start:start + chunk_size]
            for name, value in fit_chunk(chunk, bvalues).items():
                maps[name][start:start + len(chunk)] = value
            bar.update(len(chunk))
    return maps


def _fit_device(name):
    """"cpu" for the numba engine, else the torch device of the torch engine."""
    if name == "cpu" or (name == "auto" and not cuda_possible()):
        return "cpu"  # torch not even loaded
    device = resolve_device(name)
    if device.type == "cpu" or (name == "auto" and device.type == "mps"):
        return "cpu"
    return device


def _cpu_chunk_fit(method):
    from .cpu_fit import fit_cpu

    return lambda chunk, bvalues: fit_cpu(chunk, bvalues, method, threads=cpu_threads())


def _torch_chunk_fit(method, device):
    import torch

    from .fit import fit_adc, fit_full, fit_segmented

    fit = {"segmented": fit_segmented, "full": fit_full}[method]

    def fit_chunk(chunk, bvalues):
        signal = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)
        result = fit(signal, bvalues)
        values = {"S0": result.s0, "f": result.f, "D": result.d, "Dstar": result.dstar,
                  "ADC": fit_adc(signal, bvalues), "R2": result.r2, "flags": result.flags}
        return {name: value.cpu().numpy() for name, value in values.items()}

    return fit_chunk


#: The body's edge in the lowest-b volume: signal above this share of its 99th percentile. Air holds
#: only noise (a few per cent of tissue at clinical SNR); the darkest organs at b = 0 keep far more.
BODY_THRESHOLD = 0.05


def body_mask(series: DiffusionSeries) -> tuple[sitk.Image | None, str]:
    """The voxels worth fitting when no mask is given: the body of the lowest-b volume (signal above
    :data:`BODY_THRESHOLD` of its 99th percentile, specks of noise dropped, holes filled so vessels
    and ducts stay in); None when that is every voxel. With a sentence saying what was done."""
    lowest = int(np.argmin(series.bvalues))
    b = series.bvalues[lowest]
    volume = sitk.VectorIndexSelectionCast(series.image, lowest, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(volume)
    threshold = BODY_THRESHOLD * float(np.percentile(values, 99))
    mask = sitk.GetImageFromArray((values > threshold).astype(np.uint8))
    mask.CopyInformation(volume)
    # Pieces of at least 1 % of the largest: the body (and limbs), not specks of noise in the air.
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    sizes = np.bincount(sitk.GetArrayViewFromImage(pieces).ravel())[1:]
    kept_labels = int(np.sum(sizes >= 0.01 * sizes.max())) if len(sizes) else 0
    mask = sitk.Cast((pieces > 0) & (pieces <= kept_labels), sitk.sitkUInt8)
    mask = sitk.BinaryFillhole(mask, fullyConnected=False, foregroundValue=1)
    kept = int(sitk.GetArrayViewFromImage(mask).sum())
    if kept == values.size:
        return None, f"every voxel fitted (no background in the b = {b:g} volume)"
    return mask, (f"{kept} of {values.size} voxels fitted: the body in the b = {b:g} volume (signal above "
                  f"{threshold:.4g}, {100 * BODY_THRESHOLD:.0f} % of its 99th percentile, without specks, holes filled); "
                  "give --mask to choose the voxels")


def fit_series(series: DiffusionSeries, mask: sitk.Image | None = None, method: str = "full", device="auto",
               chunk_size: int | None = None, progress: bool = False, mask_source="mask") -> dict[str, sitk.Image]:
    """Maps (name → image on the series grid) of the voxels inside ``mask`` (any label).

    The mask may be on another grid: it is brought onto the series grid through physical space,
    and refused when empty or outside the series.
    """
    values = sitk.GetArrayViewFromImage(series.image)  # (z, y, x, B)
    if mask is None:
        inside = np.ones(values.shape[:3], dtype=bool)
    else:
        mask = resample_roi_to(mask, series.image, mask_source, series.source)
        inside = sitk.GetArrayViewFromImage(mask) != 0
    fitted = fit_voxels(values[inside], series.bvalues, method, device, chunk_size, progress)
    images = {}
    for name, voxel_values in fitted.items():
        volume = np.zeros(inside.shape, dtype=voxel_values.dtype)
        volume[inside] = voxel_values
        image = sitk.GetImageFromArray(volume)
        image.CopyInformation(series.image)
        images[name] = image
    return images
