"""Training-time augmentation suited to each modality (MONAI transforms, seeded).

All images of one modality share a spatial transform within a batch (they are slices or phases of
one acquisition; one draw per batch and modality keeps augmentation cheap on a CPU — the draws
still differ from batch to batch and epoch to epoch). The draws cover what differs between centres
(phantom profile R spans it): MR (T2WI, DWI): small rotations, scaling and shifts, left-right flips
(prognosis does not depend on handedness), gamma contrast, Gaussian blur (another in-plane
resolution or slice thickness) and Gaussian noise (another SNR). Ultrasound (US, CEUS): the same
geometry without flips of the depth axis (the beam comes from the top), gain changes (intensity
scaling), blur (another pixel size) and multiplicative speckle-like noise. IVIM crops (3-D): flips
along all axes; the b-value crops also a global intensity scale, blur strongest along the slice
axis (3–6 mm slices on the 1.5 mm crop) and noise of an SNR down to 20; parametric maps are only
flipped (their values are physical quantities).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (Compose, RandAdjustContrast, RandAffine, RandFlip, RandGaussianNoise,
                              RandGaussianSmooth, RandScaleIntensity, RandStdShiftIntensity)

_GEOMETRY = dict(prob=0.8, rotate_range=math.radians(10), scale_range=0.1, translate_range=6, padding_mode="zeros")
_BLUR = dict(prob=0.3, sigma_x=(0.0, 1.0), sigma_y=(0.0, 1.0))  # pixels of the crop


def modality_augmentation(modality: str, image_size: int) -> Compose:
    """The transform of one modality's (k, image_size, image_size) image stack (the size lets the
    affine reuse its sampling grid from draw to draw)."""
    geometry = RandAffine(**_GEOMETRY, spatial_size=(image_size, image_size), cache_grid=True)
    if modality in ("t2wi", "dwi"):
        steps = [RandFlip(prob=0.5, spatial_axis=1), geometry,
                 RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)), RandGaussianSmooth(**_BLUR),
                 RandGaussianNoise(prob=0.3, std=0.03)]
    else:
        steps = [RandFlip(prob=0.5, spatial_axis=1), geometry, RandScaleIntensity(prob=0.5, factors=0.15),
                 RandGaussianSmooth(**_BLUR), RandStdShiftIntensity(prob=0.3, factors=0.05)]
    return Compose(steps)


@contextmanager
def _pixels_only():
    """MONAI transforms without their metadata bookkeeping: only the pixels are used here, and the
    bookkeeping cost a fifth of the advice's re-scorings."""
    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def augment_survival_batch(images: dict[str, torch.Tensor], transforms: dict[str, Compose]) -> dict[str, torch.Tensor]:
    """Augment a batch ``{modality: (N, k, H, W)}`` (one draw per modality); values stay in [0, 1].
    The batch itself is left as it was (MONAI's intensity transforms work in place)."""
    augmented = {}
    with _pixels_only():
        for modality, batch in images.items():
            n, k, height, width = batch.shape
            stacked = torch.as_tensor(transforms[modality](batch.float().reshape(n * k, height, width).clone()))
            augmented[modality] = stacked.as_subclass(torch.Tensor).reshape(n, k, height, width).clamp(0, 1)
    return augmented


def _flips() -> list[RandFlip]:
    return [RandFlip(prob=0.5, spatial_axis=axis) for axis in range(3)]


def augment_ivim_pair(bvalues: torch.Tensor, maps: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One case's b-value and map crops with the same random flips (two transform chains seeded
    alike, the flips first, so their flip draws coincide), the b-values also scaled, blurred and
    noised. Crops are (channels, z, y, x): the first spatial axis is the slice direction."""
    bvalue_transform = Compose(_flips() + [
        RandScaleIntensity(prob=0.5, factors=0.1),
        RandGaussianSmooth(prob=0.3, sigma_x=(0.0, 1.0), sigma_y=(0.0, 0.4), sigma_z=(0.0, 0.4)),
        RandGaussianNoise(prob=0.3, std=0.03)])
    map_transform = Compose(_flips())
    bvalue_transform.set_random_state(seed)
    map_transform.set_random_state(seed)
    return (torch.as_tensor(bvalue_transform(bvalues.float())).as_subclass(torch.Tensor),
            torch.as_tensor(map_transform(maps.float())).as_subclass(torch.Tensor))
