"""Reading and writing images with SimpleITK, with the checks a user needs.

Conventions used everywhere in HEROVision:

* Every image is a ``SimpleITK.Image`` with **three spatial dimensions**: 2-D ultrasound is
  promoted to a one-slice volume (z spacing 1 mm), so geometry code has a single path.
* A multi-frame series (IVIM b-values, CEUS frames) is a *vector* image: one component per frame.
  Its frame labels (b-values, times) travel beside it, never inside it.
* Reading is faithful or refuses: NIfTI goes through nibabel, which reads exactly the bytes the
  header declares (SimpleITK's reader fills a truncated file with zeros and turns NaN into 0); every
  format is then checked for NaN/infinite voxels, a spacing that is not a positive number, a
  direction matrix that is not a rotation (shear), and a DICOM folder that mixes patients, studies or
  series. The message names the file and the fault.
* Writing is atomic: a file is written under a temporary name in its folder and renamed, so an
  interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import shutil
import struct
import tempfile
import threading
import zlib
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
            from .dicom_folder import read_dicom_folder

            image = read_dicom_folder(path).image
        elif compound_suffix(path) in (".nii", ".nii.gz"):
            image = _read_nifti(path)
        else:
            if compound_suffix(path) in (".mha", ".mhd"):
                _check_metaimage_header(path)
            image = sitk.ReadImage(str(path))
            _check_raw_data_length(path, image)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(path, f"cannot be read as an image: truncated, damaged or not an image "
                               f"({first_line.strip()})") from None
    check_geometry(image, path)
    return image


def check_geometry(image: sitk.Image, source) -> None:
    """Refuse an empty grid, a spacing that is not a positive finite number and a direction matrix
    that is not a rotation (a sheared or degenerate header), naming the image."""
    if 0 in image.GetSize():
        raise InputError(source, f"the image grid is empty (size {image.GetSize()})")
    spacing = np.asarray(image.GetSpacing())
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(source, f"voxel spacing must be positive, found {tuple(spacing.tolist())} mm")
    dimension = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    if not (np.all(np.isfinite(direction)) and np.allclose(direction.T @ direction, np.eye(dimension), atol=1e-4)):
        raise InputError(source, "the image's axes are not perpendicular unit vectors (a sheared or degenerate "
                                 "orientation in its header); resample it onto a regular grid first")


def _check_metaimage_header(path: Path) -> None:
    """What ITK's MetaImage reader would misread (or crash on) is refused first: a voxel size that is
    not positive (read as a flipped axis, then blamed on the ROI), a dimension that is not a small
    positive whole number (a negative one crashes the reader), grid sizes that are not positive
    whole numbers, one per dimension (extra ones are silently dropped), and a byte order that is
    neither True nor False (read as swapped bytes)."""
    dimensions = None
    with open(path, "rb") as handle:
        for raw_line in handle:
            key, _, value = raw_line.decode("latin-1").partition("=")
            key, value = key.strip(), value.strip()
            if key in ("ElementSpacing", "ElementSize"):
                try:
                    sizes = [float(v) for v in value.split()]
                except ValueError:
                    sizes = [math.nan]
                if not all(math.isfinite(s) and s > 0 for s in sizes):
                    raise InputError(path, f"voxel size in the header must be positive, found {value!r}")
            elif key == "NDims":
                if not (value.isdigit() and 1 <= int(value) <= 8):
                    raise InputError(path, f"NDims in the header must be a whole number from 1 to 8, found {value!r}")
                dimensions = int(value)
            elif key == "DimSize":
                sizes = value.split()
                if not all(size.isdigit() and int(size) > 0 for size in sizes) or (
                        dimensions is not None and len(sizes) != dimensions):
                    raise InputError(path, f"DimSize in the header must be {dimensions or 'NDims'} positive whole "
                                           f"numbers, found {value!r}")
            elif key in ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"):
                if value.lower() not in ("true", "false"):
                    raise InputError(path, f"{key} in the header must be True or False, found {value!r}")
            elif key == "ElementDataFile":
                return


def _raw_data_offset(path: Path) -> int | None:
    """Where the voxels of an uncompressed NRRD or MetaImage start in its own file; None when they
    are compressed or in another file (their reader then checks their length)."""
    data = _header_bytes(path)
    if compound_suffix(path) == ".nrrd":
        header, separator, _ = data.partition(b"\n\n")
        fields = dict(line.split(b":", 1) for line in header.split(b"\n")[1:] if b":" in line and not line.startswith(b"#"))
        fields = {key.strip().lower(): value.strip().lower() for key, value in fields.items()}
        local = not ({b"data file", b"datafile"} & set(fields))
        return len(header) + len(separator) if separator and local and fields.get(b"encoding") == b"raw" else None
    if compound_suffix(path) == ".mha":
        header, separator, _ = data.partition(b"ElementDataFile = LOCAL\n")
        return len(header) + len(separator) if separator and b"CompressedData = True" not in header else None
    return None


def _header_bytes(path: Path, chunk: int = 65536) -> bytes:
    """The start of ``path`` up to the end of a NRRD or MetaImage header (or the whole file when it
    has none): the voxels after it, often hundreds of megabytes, are not read again."""
    with open(path, "rb") as handle:
        data = b""
        while block := handle.read(chunk):
            data += block
            if b"\n\n" in data or b"ElementDataFile = LOCAL\n" in data:
                break
    return data


def _check_raw_data_length(path: Path, image: sitk.Image) -> None:
    """Voxels beyond what the header declares mean the header misdescribes them (a wrong type or grid
    would be read silently from the first bytes): refused, as for NIfTI."""
    offset = _raw_data_offset(path)
    if offset is None:
        return
    declared = offset + image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * \
        sitk.GetArrayViewFromImage(image).itemsize
    size = path.stat().st_size
    if size > declared:
        raise InputError(path, f"longer than its header declares ({size} bytes; the header declares {declared})")


def _nifti_bytes(path: Path) -> bytes:
    """The whole (uncompressed) file; a cut or damaged gzip stream is refused."""
    try:
        if compound_suffix(path) == ".nii.gz":
            with gzip.open(path) as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise InputError(path, f"cannot be read as an image: its compressed data are truncated or damaged ({error})") from None


def _read_nifti(path: Path) -> sitk.Image:
    """A NIfTI-1/2 file read by nibabel, exactly as its header declares, with ITK's geometry
    (orientation from the same header, as SimpleITK would give it)."""
    import nibabel

    raw = _nifti_bytes(path)
    if len(raw) < 4:
        raise InputError(path, "cannot be read as an image: empty, or shorter than a NIfTI header")
    header_size = {struct.unpack("<i", raw[:4])[0], struct.unpack(">i", raw[:4])[0]}
    kind = nibabel.Nifti2Image if 540 in header_size else nibabel.Nifti1Image
    try:
        with _nibabel_silent():  # its log lines would precede our one-line refusal
            _check_nifti_header(kind.header_class.from_fileobj(io.BytesIO(raw), check=False), path)  # as written
            nifti = kind.from_bytes(raw)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 — nibabel raises several types for a bad header
        raise InputError(path, f"not a readable NIfTI header ({error})") from None
    declared = int(nifti.dataobj.offset) + int(np.prod(nifti.shape)) * nifti.header.get_data_dtype().itemsize
    if len(raw) != declared:
        fault = "truncated: shorter than" if len(raw) < declared else "longer than"
        raise InputError(path, f"{fault} its header declares ({len(raw)} bytes; the header declares {declared})")
    data = np.asanyarray(nifti.dataobj)
    if data.dtype.kind == "f":
        _refuse_non_finite(data, path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    if len(nifti.shape) > 4 or reader.GetNumberOfComponents() != 1:
        return reader.Execute()  # vector intents: SimpleITK's own layout (values already checked)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T).astype(data.dtype.newbyteorder("="), copy=False),
                                   isVector=False)
    if image.GetSize() != reader.GetSize():
        raise InputError(path, f"grid {reader.GetSize()} of the header differs from the data's {image.GetSize()}")
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    return image


#: nibabel's log level is the process's: one reader at a time sets and restores it (prediction reads
#: the IVIM series on a second thread), or two could leave it silenced for good.
_NIBABEL_LOG_LEVEL = threading.Lock()


@contextmanager
def _nibabel_silent():
    """nibabel's header checks log what they find before raising it; the refusal says it once."""
    from nibabel.imageglobals import logger

    with _NIBABEL_LOG_LEVEL:
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            logger.setLevel(level)


def _check_nifti_header(header, path: Path) -> None:
    """What SimpleITK (and nibabel's own checks) would silently mend: a zero or non-finite voxel size
    (read as 1 mm) and a sheared orientation matrix (replaced by the other one)."""
    spatial = min(int(header["dim"][0]), 3)
    sizes = np.asarray(header["pixdim"][1:1 + spatial], dtype=float)
    if not (np.all(np.isfinite(sizes)) and np.all(sizes > 0)):
        raise InputError(path, f"voxel size in the header must be positive, found {tuple(sizes.tolist())} mm")
    forms = [header.get_sform(coded=True), header.get_qform(coded=True)]
    for affine, code in forms:
        if code:
            axes = np.asarray(affine, dtype=float)[:3, :3]
            lengths = np.linalg.norm(axes, axis=0)
            if not np.all(np.isfinite(axes)) or np.any(lengths == 0):
                raise InputError(path, "the orientation matrix in the header is degenerate")
            unit = axes / lengths
            if not np.allclose(unit.T @ unit, np.eye(3), atol=1e-4):
                raise InputError(path, "the image's axes are not perpendicular (a sheared orientation in its "
                                       "header); resample it onto a regular grid first")


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
        _refuse_non_finite(values, source)


def _refuse_non_finite(values: np.ndarray, source) -> None:
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
        image = _to_float32(image, sitk.sitkFloat32, path)
    return image


def _to_float32(image: sitk.Image, pixel_type, path) -> sitk.Image:
    """The image as 32-bit floats; refused where a value does not fit (a wrong scaling factor in a
    header reads as huge values, which the conversion would turn into infinity)."""
    converted = sitk.Cast(image, pixel_type)
    bad = int(np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(converted))))
    if bad:
        raise InputError(path, f"{bad} voxel value(s) beyond the range of 32-bit floats (±3.4e38): "
                               "is the header's intensity scaling right?")
    return converted


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
    check_finite(image, path)
    if image.GetNumberOfComponentsPerPixel() > 1:
        if image.GetDimension() not in (2, 3):
            raise InputError(path, f"expected a 2-D or 3-D vector image, found {image.GetDimension()}-D")
        vector = promote_to_3d(image)
    elif image.GetDimension() == 4:
        vector = frames_to_vector([image[:, :, :, t] for t in range(image.GetSize()[3])])
    else:
        raise InputError(path, f"expected a 4-D image (x, y, z, frames), found {image.GetDimension()}-D "
                               f"of size {image.GetSize()}")
    return _to_float32(vector, sitk.sitkVectorFloat32, path)


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


def atomic_target(path: Path) -> Path:
    """A new, uniquely named file beside ``path`` to write into and then rename onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=compound_suffix(path), dir=path.parent)
    os.close(handle)
    os.chmod(name, 0o666 & ~user_umask())  # mkstemp makes 0600; outputs get the user's usual mode
    return Path(name)


def user_umask() -> int:
    """The process's file-creation mask (read without changing it for longer than a call)."""
    current = os.umask(0)
    os.umask(current)
    return current


def write_image(image: sitk.Image, path, *, compress: bool = True) -> Path:
    """Write an image atomically. A one-slice volume is written as it is (3-D)."""
    path = Path(path)
    partial = atomic_target(path)
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
    partial = atomic_target(path)
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
