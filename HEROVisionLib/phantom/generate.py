"""Generate phantom cases and cohorts (PHANTOM.md) and write them in the §4 layout.

Case *i* of a cohort with seed *s* draws everything from ``numpy.random.default_rng([s, i])`` in
the order latents → outcomes → anatomy → random fields → images, so it is identical whether made
alone or within a cohort, and the same patient under any acquisition profile. The staging fields of
spec v1.1 (§6) come from a generator of their own, ``[s, i, 11]``, and a randomised acquisition
(profile R) from ``[s, i, 12]``, so neither moves a v1 draw. A case folder is
written under a temporary name and renamed when complete: an interrupted run leaves no
half-written case, and a re-run skips the cases already there.
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.case import COHORT_COLUMNS
from ..io.diffusion import DiffusionSeries, write_diffusion_series
from ..io.images import frames_to_vector, write_image, write_multiframe, write_text_atomic
from ..io.measure import largest_axial_diameter_cm
from ..io.output_folder import OutputFolder, claim_output_folder, remove_within
from .anatomy import draw_anatomy, draw_fields
from .latents import Outcome, Patient, StagingFields, draw_outcome, draw_patient, draw_staging_fields
from .profiles import PROFILE_A, PROFILE_NAMES, Grid, Profile, profile_for
from .render import PatientRenderer, hand_contour, rician, speckle

TRUTH_COLUMNS = ("case_id", "lp_TA", "lp_SR", "T_TA", "T_SR", "best_treatment", "diameter_cm", "margin",
                 "heterogeneity", "tumor_D", "tumor_f", "tumor_Dstar", "washout", "liver_D", "liver_f",
                 "liver_Dstar", "censor_months")


def case_id(profile: Profile, index: int) -> str:
    return f"{profile.name}{index:04d}"


@dataclass
class PhantomCase:
    """One generated patient: its variables, outcome and images (in memory)."""

    case_id: str
    profile: Profile
    patient: Patient
    outcome: Outcome
    images: dict[str, sitk.Image]  # file name → image (ROIs included)
    bvalues: tuple[float, ...]
    staging: StagingFields

    def cohort_row(self) -> dict:
        p, o = self.patient, self.outcome
        size = round(largest_axial_diameter_cm(self.images["t2wi_roi"], 1, f"{self.case_id}/t2wi_roi"), 1)
        row = {name: getattr(p, name) for name in COHORT_COLUMNS if hasattr(p, name)}
        row.update(asdict(self.staging))
        row.update(case_id=self.case_id, center=self.profile.name, tumor_size_cm=size, treatment=o.treatment,
                   pfs_months=round(o.pfs_months, 3), pfs_event=o.pfs_event, er_2y=o.er_2y)
        return {name: row[name] for name in COHORT_COLUMNS}

    def truth_row(self) -> dict:
        p, o = self.patient, self.outcome
        row = {"case_id": self.case_id, "lp_TA": o.lp_TA, "lp_SR": o.lp_SR, "T_TA": o.T_TA, "T_SR": o.T_SR,
               "best_treatment": o.best_treatment, "censor_months": o.censor_months}
        row.update({name: getattr(p, name) for name in TRUTH_COLUMNS if hasattr(p, name)})
        return {name: row[name] for name in TRUTH_COLUMNS}


def _image(array_zyx: np.ndarray, grid: Grid, dtype=np.float32) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx, dtype=dtype))
    image.SetOrigin(grid.origin)
    image.SetSpacing(grid.spacing)
    image.SetDirection(grid.direction)
    return image


def _plane(array_yx: np.ndarray, spacing, dtype=np.float32) -> sitk.Image:
    """A 2-D image (US) with origin (0, 0) and identity direction."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_yx, dtype=dtype))
    image.SetSpacing(spacing)
    return image


def draw_case_variables(seed: int, index: int) -> tuple[np.random.Generator, Patient, Outcome]:
    """The case's generator after its latents and outcome were drawn (§1–2, no images)."""
    if index < 1:
        raise InputError("index", f"case indices start at 1, got {index}")
    rng = np.random.default_rng([seed, index])
    patient = draw_patient(rng)
    return rng, patient, draw_outcome(patient, rng)


def generate_case(seed: int, index: int, profile: Profile | str = "A") -> PhantomCase:
    """Case ``index`` (1-based) of the cohort with ``seed`` under ``profile``."""
    profile = profile_for(profile, seed, index) if isinstance(profile, str) else profile
    rng, patient, outcome = draw_case_variables(seed, index)
    anatomy = draw_anatomy(rng, patient, PROFILE_A.ivim)  # one patient, one place, whatever the profile
    field_f, field_g = draw_fields(rng, anatomy)
    renderer = PatientRenderer(patient, anatomy, field_f, field_g)

    sigma_mr = 1000.0 / profile.snr_ivim  # liver S0 / SNR, shared by IVIM and DWI
    # DWI shares the IVIM grid and signal equation: one rendering, then independent noise draws.
    mr_clean, ivim_tumours = renderer.ivim(profile.ivim, (*profile.bvalues, profile.dwi_bvalue))
    ivim = profile.gain_mr * rician(mr_clean[:-1], sigma_mr, rng)
    dwi = profile.gain_mr * rician(mr_clean[-1], sigma_mr, rng)
    t2_clean, t2_tumours = renderer.t2wi(profile.t2wi)
    t2wi = profile.gain_mr * rician(t2_clean, 300.0 / profile.snr_t2wi, rng)
    us_fractions, us_points = renderer.us_tissues(profile)
    echo = renderer.echo_amplitude(us_fractions, us_points)
    us = profile.gain_us * echo * speckle(echo.shape, rng)
    ceus_clean = renderer.ceus_frames(us_fractions, us_points, echo, profile.ceus_times_s)
    ceus = np.stack([profile.gain_us * frame * speckle(frame.shape, rng) for frame in ceus_clean])
    us_tumours = us_fractions["tumour"][:, None]  # (T, 1, y, x): one-slice volume

    rois = {name: hand_contour(fractions, rng) for name, fractions in
            (("ivim", ivim_tumours), ("t2wi", t2_tumours), ("dwi", ivim_tumours),
             ("us", us_tumours), ("ceus", us_tumours))}

    us_slice = Grid((*profile.us_size, 1), (*profile.us_spacing, 1.0))
    images = {
        "ivim": frames_to_vector([_image(volume, profile.ivim) for volume in ivim]),
        "ivim_roi": _image(rois["ivim"], profile.ivim, np.uint8),
        "t2wi": _image(t2wi, profile.t2wi),
        "t2wi_roi": _image(rois["t2wi"], profile.t2wi, np.uint8),
        "dwi": _image(dwi, profile.ivim),
        "dwi_roi": _image(rois["dwi"], profile.ivim, np.uint8),
        "us": _plane(us, profile.us_spacing),
        "us_roi": _plane(rois["us"][0], profile.us_spacing, np.uint8),
        "ceus": frames_to_vector([_image(frame[None], us_slice) for frame in ceus]),
        "ceus_roi": _image(rois["ceus"], us_slice, np.uint8),
    }
    staging = draw_staging_fields(np.random.default_rng([seed, index, 11]), patient)
    return PhantomCase(case_id(profile, index), profile, patient, outcome, images, profile.bvalues, staging)


def write_case(case: PhantomCase, cohort_folder: OutputFolder | Path | str) -> Path:
    """Write a case folder atomically (temporary folder, then rename) into a cohort folder claimed
    for ``herovision phantom`` (claimed here when given as a path)."""
    owner = cohort_folder if isinstance(cohort_folder, OutputFolder) else claim_output_folder(cohort_folder, "phantom")
    final = owner.path / case.case_id
    partial = owner.path / f".{case.case_id}.partial"
    remove_within(partial, owner)
    partial.mkdir()
    images = case.images
    write_diffusion_series(DiffusionSeries(images["ivim"], case.bvalues, case.case_id), partial / "ivim.nii.gz")
    for name in ("ivim_roi", "t2wi", "t2wi_roi", "dwi", "dwi_roi", "ceus_roi"):
        write_image(images[name], partial / f"{name}.nii.gz")
    for name in ("us", "us_roi"):
        write_image(images[name], partial / f"{name}.nrrd")
    write_multiframe(images["ceus"], partial / "ceus.nii.gz")
    write_text_atomic(" ".join(f"{t:g}" for t in case.profile.ceus_times_s) + "\n", partial / "ceus.times")
    remove_within(final, owner)
    os.replace(partial, final)
    return final


def _csv_text(rows: list[dict], columns) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _make_case(arguments) -> tuple[dict, dict]:
    seed, index, profile_name, out = arguments
    case = generate_case(seed, index, profile_name)
    write_case(case, out)
    return case.cohort_row(), case.truth_row()


def generate_cohort(n: int, seed: int, out, profile: str = "A", workers: int | None = None,
                    progress: bool = True) -> Path:
    """Generate cases 1..n into ``out`` with ``cohort.csv`` and ``truth.csv``; returns ``out``."""
    if profile not in PROFILE_NAMES:
        raise InputError("--profile", f"unknown acquisition profile {profile!r}; known: {', '.join(PROFILE_NAMES)}")
    if n < 1:
        raise InputError("--n", f"the cohort needs at least one case, got {n}")
    owner = claim_output_folder(out, "phantom")
    out = owner.path
    jobs = [(seed, i, profile, owner) for i in range(1, n + 1)]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    rows = []
    from tqdm import tqdm

    if workers == 1:
        results = map(_make_case, jobs)
        rows = list(tqdm(results, total=n, desc="phantom cases", unit="case", disable=not progress))
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_make_case, jobs, chunksize=1)
            rows = list(tqdm(results, total=n, desc="phantom cases", unit="case", disable=not progress))
    write_text_atomic(_csv_text([c for c, _ in rows], COHORT_COLUMNS), out / "cohort.csv")
    write_text_atomic(_csv_text([t for _, t in rows], TRUTH_COLUMNS), out / "truth.csv")
    return out
