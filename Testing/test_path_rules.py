"""Property tests (hypothesis) of the rules that keep HEROVision from touching what it does not own
and from reading a damaged file as a real one: whatever the case id, output path or damage, the
outcome is either a clear InputError or a correct result — never a path outside, never a
traceback, never a silently different image."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import check_case_id
from HEROVisionLib.io.images import read_image
from HEROVisionLib.io.output_folder import MARKER, claim_output_folder, release_if_empty, remove_within

SEGMENTS = st.sampled_from(["..", ".", "in", "out", "x", "in/sub", "link"])


@given(st.text(max_size=40))
@settings(max_examples=400)
def test_an_accepted_case_id_always_names_a_folder_directly_inside(case_id):
    base = Path("/cohort")
    try:
        accepted = check_case_id(case_id, "cohort.csv")
    except InputError as error:
        assert "is not a plain name" in str(error)
        return
    assert accepted == case_id
    joined = Path(os.path.normpath(base / accepted))
    assert joined.parent == base and joined.name == accepted
    assert not any(ord(c) < 32 or c in "/\\:" for c in accepted)


@pytest.mark.parametrize("case_id", ["A0001", "B12", "site-3_case.7", "P 12", "x+y"])
def test_plain_names_are_case_ids(case_id):
    assert check_case_id(case_id, "cohort.csv") == case_id


def _snapshot(folder: Path) -> dict:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder")
            for p in sorted(folder.rglob("*")) if not p.is_symlink()}


@given(st.lists(SEGMENTS, min_size=1, max_size=5), st.sampled_from(["batch", "predict"]))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_a_claimed_output_never_overlaps_the_input_nor_changes_it(segments, command):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch, "1", "2", "3", "4", "5")  # five '..' stay inside the scratch folder
        source = root / "in"
        (source / "sub").mkdir(parents=True)
        (source / "image.nii").write_bytes(b"input")
        (source / "sub" / "roi.nii").write_bytes(b"roi")
        (root / "link").symlink_to(source, target_is_directory=True)
        before = _snapshot(source)
        target = root.joinpath(*segments)
        try:
            claimed = claim_output_folder(target, command, inputs=(source,))
        except InputError:
            assert _snapshot(source) == before
            return
        resolved_source = source.resolve()
        assert claimed.path != resolved_source
        assert resolved_source not in claimed.path.parents and claimed.path not in resolved_source.parents
        assert (claimed.path / MARKER).is_file()
        release_if_empty(claimed)
        assert _snapshot(source) == before


@given(st.lists(SEGMENTS, min_size=1, max_size=4))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_removal_never_reaches_outside_the_claimed_folder(segments):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        claimed = claim_output_folder(root / "out", "batch")
        (root / "in" / "sub").mkdir(parents=True)
        (root / "in" / "image.nii").write_bytes(b"input")
        (root / "out" / "x").mkdir()
        (root / "out" / "link").symlink_to(root / "in", target_is_directory=True)
        before = _snapshot(root / "in")
        target = claimed.path.joinpath(*segments)
        try:
            remove_within(target, claimed)
        except InputError as error:
            assert "refusing to delete" in str(error)
        assert _snapshot(root / "in") == before
        assert claimed.path.is_dir()


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    """A small volume written as NIfTI, gzipped NIfTI, NRRD and MetaImage."""
    folder = tmp_path_factory.mktemp("formats")
    array = np.random.default_rng(3).uniform(10, 100, (5, 6, 7)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    paths = {}
    for suffix in (".nii", ".nii.gz", ".nrrd", ".mha"):
        paths[suffix] = folder / f"image{suffix}"
        sitk.WriteImage(image, str(paths[suffix]), suffix in (".nrrd", ".mha"))
    return array, paths


@given(suffix=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha"]), fraction=st.floats(0.0, 0.999))
@settings(max_examples=120, deadline=None)
def test_a_file_cut_anywhere_is_refused_or_read_whole(small_images, suffix, fraction):
    """Refused, naming the file — or, when only a compressed stream's checksum trailer is lost and
    every voxel is still there, read exactly as written. Never zeros in place of the missing part."""
    array, paths = small_images
    data = paths[suffix].read_bytes()
    with tempfile.TemporaryDirectory() as scratch:
        cut = Path(scratch) / paths[suffix].name
        cut.write_bytes(data[: int(len(data) * fraction)])
        try:
            image = read_image(cut)
        except InputError as error:
            assert str(error).startswith(str(cut) + ": ")
            return
        assert np.array_equal(sitk.GetArrayViewFromImage(image), array)


@given(position=st.integers(0, 347), value=st.integers(0, 255))
@settings(max_examples=200, deadline=None)
def test_a_nifti_header_byte_changed_is_read_right_or_refused(small_images, position, value):
    """Any one header byte changed: a clear error or a finite image, never a traceback; a change in
    the free-text description leaves the image as written."""
    array, paths = small_images
    data = bytearray(paths[".nii"].read_bytes())
    data[position] = value
    with tempfile.TemporaryDirectory() as scratch:
        changed = Path(scratch) / "image.nii"
        changed.write_bytes(bytes(data))
        try:
            image = read_image(changed)
        except InputError:
            return
        values = sitk.GetArrayViewFromImage(image)
        assert np.isfinite(values).all()
        if position in range(148, 228):  # descrip: 80 bytes of free text
            assert np.array_equal(values, array) and image.GetSpacing() == pytest.approx((0.7, 0.8, 2.5))
