"""Reading and writing images with SimpleITK, with the checks a user needs.

Conventions used everywhere in HEROVision:

* Every image is a ``SimpleITK.Image`` with **three spatial dimensions**: 2-D ultrasound is
  promoted to a one-slice volume (z spacing 1 mm), so geometry code has a single path.
* A multi-frame series (IVIM b-values, CEUS frames) is a *vector* image: one component per frame.
  Its frame labels (b-values, times) travel beside it, never inside it.
* Writing is atomic: a file is written under a temporary name in its folder and renamed, so an
  interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

#: File name endings SimpleITK understands that HEROVision reads and writes.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def compound_suffix(path) -> str:
    """'.nii.gz' for 'x.nii.gz' (``Path.suffix`` would say '.gz')."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def _require_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    return path


def _sitk_read(path: Path) -> sitk.Image:
    try:
        if path.is_dir():
            return read_dicom_volume(path)
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(path, f"cannot be read as an image ({first_line.strip()})") from None


def read_dicom_volume(folder) -> sitk.Image:
    """Read the single DICOM series in ``folder`` as one volume (slices sorted by position)."""
    folder = Path(folder)
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(folder, "no DICOM series found in this folder")
    if len(series) > 1:
        raise InputError(folder, f"{len(series)} DICOM series found; point to a folder holding one")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def join_along_new_axis(images) -> sitk.Image:
    """Stack same-grid images along one more axis at 0 with spacing 1 and the geometry kept."""
    images = list(images)
    joined = sitk.JoinSeries(images)
    dimension = images[0].GetDimension()
    direction = np.eye(dimension + 1)
    direction[:dimension, :dimension] = np.asarray(images[0].GetDirection()).reshape(dimension, dimension)
    joined.SetOrigin((*images[0].GetOrigin(), 0.0))
    joined.SetSpacing((*images[0].GetSpacing(), 1.0))
    joined.SetDirection(direction.ravel().tolist())
    return joined


def promote_to_3d(image: sitk.Image) -> sitk.Image:
    """A 2-D image as a one-slice volume at z = 0 with 1 mm slice spacing; 3-D images unchanged."""
    return image if image.GetDimension() == 3 else join_along_new_axis([image])


def check_finite(image: sitk.Image, source) -> None:
    """Refuse images with NaN or infinite voxels: a fit or a network would spread them silently."""
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise InputError(source, f"{bad} voxel value(s) are NaN or infinite")


def read_image(path, *, label: bool = False) -> sitk.Image:
    """Read one scalar image (2-D or 3-D; 2-D is promoted to a one-slice volume).

    ``label=True`` reads a label map: values must be non-negative integers.
    """
    path = _require_file(path)
    image = _sitk_read(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a scalar image, found {image.GetNumberOfComponentsPerPixel()} "
                               "components per voxel")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() not in (2, 3):
        raise InputError(path, f"expected a 2-D or 3-D image, found {image.GetDimension()}-D "
                               f"of size {image.GetSize()}")
    image = promote_to_3d(image)
    check_finite(image, path)
    if label:
        image = _as_label_map(image, path)
    else:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def _as_label_map(image: sitk.Image, path) -> sitk.Image:
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise InputError(path, "a label map must hold whole numbers (0 = background, 1, 2, … = tumours)")
    if values.min() < 0 or values.max() > 255:
        raise InputError(path, f"label values must lie in 0..255, found {values.min()}..{values.max()}")
    return sitk.Cast(image, sitk.sitkUInt8)


def read_multiframe(path) -> sitk.Image:
    """Read a multi-frame series (4-D file, vector NRRD, or 3-D+frames) as a vector volume.

    Returns a vector image with one component per frame and three spatial dimensions (a 2-D cine
    stored as (x, y, 1, t) becomes a one-slice volume).
    """
    path = _require_file(path)
    image = _sitk_read(path)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if image.GetDimension() not in (2, 3):
            raise InputError(path, f"expected a 2-D or 3-D vector image, found {image.GetDimension()}-D")
        vector = promote_to_3d(image)
    elif image.GetDimension() == 4:
        vector = frames_to_vector([image[:, :, :, t] for t in range(image.GetSize()[3])])
    else:
        raise InputError(path, f"expected a 4-D image (x, y, z, frames), found {image.GetDimension()}-D "
                               f"of size {image.GetSize()}")
    check_finite(vector, path)
    return sitk.Cast(vector, sitk.sitkVectorFloat32)


def frames_to_vector(frames) -> sitk.Image:
    """Stack same-grid scalar volumes as the components of one vector volume."""
    return sitk.Compose([promote_to_3d(sitk.Cast(f, sitk.sitkFloat32)) for f in frames])


def vector_frame(vector: sitk.Image, index: int) -> sitk.Image:
    """One component of a vector volume as a scalar volume (same geometry)."""
    return sitk.VectorIndexSelectionCast(vector, index, sitk.sitkFloat32)


def vector_to_frames(vector: sitk.Image) -> list[sitk.Image]:
    """The components of a vector volume as scalar volumes (same geometry)."""
    return [vector_frame(vector, c) for c in range(vector.GetNumberOfComponentsPerPixel())]


def frame_array(vector: sitk.Image) -> np.ndarray:
    """Voxel values of a vector volume as a (frames, z, y, x) float32 array (a copy)."""
    return np.moveaxis(sitk.GetArrayFromImage(vector), -1, 0).astype(np.float32, copy=False)


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=compound_suffix(path), dir=path.parent)
    os.close(handle)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual mode
    return Path(name)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_image(image: sitk.Image, path, *, compress: bool = True) -> Path:
    """Write an image atomically. A one-slice volume is written as it is (3-D)."""
    path = Path(path)
    partial = _atomic_target(path)
    try:
        sitk.WriteImage(image, str(partial), compress)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_multiframe(vector: sitk.Image, path) -> Path:
    """Write a vector volume as a 4-D file (x, y, z, frame), the layout of PHANTOM.md §4."""
    return write_image(join_along_new_axis(vector_to_frames(vector)), path)


def write_text_atomic(text: str, path) -> Path:
    """Write a small text file (b-values, frame times, CSV) atomically."""
    path = Path(path)
    partial = _atomic_target(path)
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@contextmanager
def staged_outputs(folder):
    """A staging folder inside ``folder`` whose files move into ``folder`` only if the block ends
    without error: a set of outputs (maps and their table) appears whole or not at all."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))
    try:
        yield stage
        for path in sorted(stage.iterdir()):
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
