"""``herovision report``: the per-patient report a clinician reads, as PDF (two A4 pages) or PNG.

Page 1: the patient, inputs used and missing, the summary and recommendation in words (with its
firmness from test-time augmentation), each input's tumour slice with its attention map, and the
IVIM parametric maps of the tumour. Page 2: the patient's predicted PFS curve on the Kaplan–Meier
curves of the training cohort's risk groups (TA and SR), both predicted curves together, and the
nomogram points. The intended-use warning heads and closes the report.

It is drawn from a prediction (from the files ``herovision predict`` writes — ``results.json``,
``advice.json``, overlays and maps — or, in Slicer, from memory), the case's images and the model
packages' recorded training-cohort curves — nothing is re-predicted, so a report takes about a second.
"""

from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import HEROVisionError, InputError
from ..io.clinical import ARMS
from ..io.case import Case
from ..io.ceus import select_phase_frames
from ..io.geometry import same_grid
from ..io.images import atomic_target, read_image, vector_frame
from ..io.output_folder import refuse_overlap
from ..models.model_set import survival_probability
from ..plots import pyplot

WARNING = ("RESEARCH USE ONLY — not for clinical decisions. The bundled models are demonstration models "
           "trained on a synthetic phantom cohort.")
PANELS = (("t2wi", "T2WI", "attention_ta_t2wi", "TA attention"), ("dwi", "DWI", "attention_ta_dwi", "TA attention"),
          ("us", "US", "attention_ta_us", "TA attention"), ("ceus", "CEUS arterial", "attention_ta_ceus", "TA attention"),
          ("ivim", "IVIM b = 0", "attention_er_maps", "ER Grad-CAM"))
MAPS = (("ivim_D", "D (10⁻³ mm²/s)", 1e3), ("ivim_f", "f", 1.0), ("ivim_Dstar", "D* (10⁻³ mm²/s)", 1e3),
        ("ivim_ADC", "ADC (10⁻³ mm²/s)", 1e3))
A4 = (8.27, 11.69)
PDF_FONT_TYPE = 3  # matplotlib's Type 3 fonts keep a text layer (searchable) and skip TrueType subsetting
PNG_DPI = 110
REPORT_CREATOR = "HEROVision report"  # in the file's metadata: a later report may replace it


def render_report(prediction_folder, out, models=None, case_folder=None) -> Path:
    """Write the report of a case's prediction folder to ``out`` (``.pdf`` or ``.png``)."""
    prediction_folder = Path(prediction_folder)
    result = _read_json(prediction_folder / "results.json", "case_id")
    advice = (_read_json(prediction_folder / "advice.json", "category")
              if (prediction_folder / "advice.json").is_file() else None)
    folder = Path(case_folder) if case_folder else Path(result.get("case_folder") or "")
    if not str(folder) or not folder.is_dir():
        raise InputError(prediction_folder / "results.json",
                         f"the case's images are not at {str(folder)!r}: give the case folder (--case)")
    check_report_destination(out, inputs=(folder, models))
    shown = {overlay for *_, overlay, _ in PANELS} | {name for name, *_ in MAPS}
    images = {path.stem: read_image(path) for path in prediction_folder.glob("*.nrrd") if path.stem in shown}
    try:
        return write_report(result, advice, Case(folder), images, out, models)
    except (KeyError, TypeError, AttributeError) as error:  # a results.json edited by hand, or of another tool
        raise InputError(prediction_folder / "results.json",
                         f"is not a complete HEROVision prediction ({type(error).__name__}: {error})") from None


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a report HEROVision wrote (its PDF Creator or PNG Software field)."""
    if path.suffix.lower() == ".png":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                return image.info.get("Software") == REPORT_CREATOR
        except (OSError, UnidentifiedImageError):
            return False
    return f"({REPORT_CREATOR})".encode() in path.read_bytes()


def check_report_destination(out, inputs=()) -> None:
    """A report goes to a new file, or replaces a report HEROVision wrote; never an input or a file
    inside one."""
    out = Path(out)
    if out.suffix.lower() not in (".pdf", ".png"):
        raise InputError(out, "the report must be a .pdf or a .png file")
    target = out.expanduser().resolve()
    refuse_overlap(target, inputs, out)
    if target.exists() and not (target.is_file() and not out.is_symlink() and _is_report(target)):
        raise InputError(out, "exists and is not a report HEROVision wrote: give a new file name")


def write_report(result: dict, advice: dict | None, case, images: dict, out, models=None) -> Path:
    """Write the report to ``out`` (``.pdf`` or ``.png``, atomically) from a prediction's JSON data
    (``PredictionResult.to_json``), its advice (``TreatmentAdvice.to_dict``) or None, the case it was
    made from (a folder or in-memory case) and its overlay and map images by name."""
    out = Path(out)
    check_report_destination(out, inputs=(models,))
    plt = pyplot()
    plt.rcParams["pdf.fonttype"] = PDF_FONT_TYPE
    partial = atomic_target(out)
    with _cyclic_gc_paused():
        pages = [_first_page(plt, result, advice, case, images), _second_page(plt, result, models)]
        try:
            if out.suffix.lower() == ".pdf":
                from matplotlib.backends.backend_pdf import PdfPages

                with PdfPages(partial, metadata={"Title": f"HEROVision report {result['case_id']}",
                                                 "Creator": REPORT_CREATOR}) as pdf:
                    for page in pages:
                        pdf.savefig(page)
            else:
                _stacked_png(plt, pages, partial)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
            for page in pages:
                plt.close(page)
    return out


@contextmanager
def _cyclic_gc_paused():
    """Drawing two pages allocates objects by the hundred thousand; each time that triggers Python's
    cyclic collector, it walks every object of the process (torch, MONAI, or all of Slicer): a sixth to
    a quarter of the report's time (`bench/report_bench.py`). The pages are closed at the end, and the
    collector then runs as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_json(path: Path, key: str) -> dict:
    """A JSON object `herovision predict` wrote, recognised by ``key``."""
    if not path.is_file():
        raise InputError(path, "not found: give a folder written by `herovision predict`")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f"not valid JSON ({error})") from None
    if not isinstance(content, dict) or key not in content:
        raise InputError(path, f"is not what `herovision predict` writes (a JSON object with a {key})")
    return content


def _stacked_png(plt, pages, path: Path) -> None:
    """The pages one above the other in one PNG (drawn once, encoded once)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    arrays = []
    for page in pages:
        page.set_dpi(PNG_DPI)
        canvas = FigureCanvasAgg(page)
        canvas.draw()
        arrays.append(np.asarray(canvas.buffer_rgba()))
    plt.imsave(path, np.concatenate(arrays, axis=0), format="png", metadata={"Software": REPORT_CREATOR},
               pil_kwargs={"compress_level": 1})  # a larger file, encoded ×5 faster


def _header(page, result: dict, title: str) -> None:
    page.text(0.05, 0.975, f"HEROVision — {title}: case {result['case_id']}", fontsize=14, weight="bold", va="top")
    page.text(0.05, 0.952, f"{date.today().isoformat()} · models: {', '.join(result['model_versions'].values())} · "
                           f"device {result['device']}", fontsize=7.5, va="top", color="dimgrey")
    page.text(0.5, 0.93, WARNING, fontsize=8, ha="center", va="top", color="darkred", weight="bold",
              bbox=dict(boxstyle="round", facecolor="mistyrose", edgecolor="darkred"), wrap=True)


def _fmt(value, pattern="{:.2f}") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def _summary_lines(result: dict, advice: dict | None) -> list[str]:
    lines = []
    for key, name in (("ta", "Thermal ablation (HEROVision-TA)"), ("sr", "Repeat resection (HEROVision-SR)")):
        survival = result["survival"].get(key)
        if not survival:
            lines.append(f"{name}: not predicted")
            continue
        pfs = survival["pfs"]
        line = (f"{name}: {survival['risk_group']} risk by its own cutoff (score {survival['risk_score']:+.2f}); PFS 1/2/3 y "
                f"{_fmt(pfs.get('12'))} / {_fmt(pfs.get('24'))} / {_fmt(pfs.get('36'))}")
        nomogram = survival.get("nomogram")
        if nomogram:
            line += (f"; nomogram {nomogram['total_points']:.0f} points, {nomogram['risk_group']} risk, "
                     f"2-y PFS {_fmt(nomogram['pfs'].get('24'))}")
        lines.append(line)
    lines.append(f"Early recurrence after resection: {_fmt(result['er_probability'], '{:.0%}')} (IVIM deep), "
                 f"{_fmt(result['er_probability_combined'], '{:.0%}')} (with size and D)")
    medians = result.get("ivim_medians", {})
    lines.append(f"Tumour: {_fmt(result['tumor_size_cm'], '{:.1f}')} cm, {_fmt(result['tumor_volume_ml'], '{:.1f}')} ml; "
                 f"IVIM D {_fmt(medians.get('D', math.nan) * 1e3)}·10⁻³ mm²/s, f {_fmt(medians.get('f'), '{:.3f}')}, "
                 f"D* {_fmt(medians.get('Dstar', math.nan) * 1e3, '{:.1f}')}·10⁻³ mm²/s")
    if result.get("staging"):  # absent from predictions made before staging
        lines.append("Guideline stages: " + " · ".join(f"{system} {text}" for system, text in result["staging"].items()))
    lines.append(f"Inputs used: {', '.join(m.upper() for m in result['inputs_used']) or 'none'}")
    for modality, reason in result["inputs_missing"].items():
        lines.append(f"Not used: {modality.upper()} — {reason}")
    for line in result.get("out_of_distribution", []):  # absent from predictions made before the check
        lines.append(f"Unlike the training acquisitions: {line}")
    if advice:
        basis = advice["basis"]
        if "threshold_2y" in advice:  # cross-stratification's common scale
            basis += (f"; 2-year PFS TA {advice['pfs_2y']['TA']:.0%}, SR {advice['pfs_2y']['SR']:.0%}, high risk below "
                      f"{advice['threshold_2y']:.0%} under either")
        lines.append(f"Recommendation ({basis}): {advice['words']}")
    return lines


def _wrap(text: str, width: int = 120) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, subsequent_indent="    "))


def _first_page(plt, result: dict, advice: dict | None, case, images: dict):
    page = plt.figure(figsize=A4)
    _header(page, result, "patient report")
    page.text(0.05, 0.895, "Summary", fontsize=11, weight="bold", va="top")
    page.text(0.05, 0.875, "\n".join(_wrap(line) for line in _summary_lines(result, advice)), fontsize=7.8,
              va="top", linespacing=1.5)
    page.text(0.05, 0.635, "Tumour and attention maps", fontsize=11, weight="bold", va="top")
    available = set(case.available)
    for index, (modality, label, overlay, overlay_label) in enumerate(PANELS):
        axis = page.add_axes([0.03 + index * 0.19, 0.43, 0.18, 0.15])
        axis.set_axis_off()
        axis.set_title(f"{label}\n{overlay_label}", fontsize=7.5)
        try:
            if modality not in available:
                raise InputError(modality, "not available")
            background, roi = _background(case, modality)
        except HEROVisionError as error:  # one unreadable input leaves its panel empty, not the report unwritten
            axis.text(0.5, 0.5, _wrap(error.problem if isinstance(error, InputError) else str(error), 28),
                      ha="center", va="center", fontsize=6.5, transform=axis.transAxes)
            continue
        _draw_slice(axis, background, roi, images.get(overlay))
    page.text(0.05, 0.39, "IVIM parametric maps of the tumour VOI", fontsize=11, weight="bold", va="top")
    if "ivim" in available and "ivim_D" in images:
        roi = case.load_roi("ivim")
        for index, (name, label, scale) in enumerate(MAPS):
            axis = page.add_axes([0.04 + index * 0.24, 0.16, 0.2, 0.2])
            axis.set_axis_off()
            axis.set_title(label, fontsize=8)
            shown = _draw_slice(axis, images[name], roi, None, scale=scale, zoom_to_roi=True)
            page.colorbar(shown, ax=axis, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    page.text(0.05, 0.08, _wrap("Attention maps show where each network looked (TA: attention rollout; ER: Grad-CAM "
                                "for the predicted class); red outline: the tumour ROI. Parametric maps are shown "
                                "inside the tumour ROI, on its largest slice.", 130), fontsize=7, color="dimgrey", va="top")
    page.text(0.5, 0.02, WARNING, fontsize=7, ha="center", color="darkred")
    return page


def _background(case, modality: str) -> tuple[sitk.Image, sitk.Image]:
    if modality == "ivim":
        image = vector_frame(case.load_ivim().image, 0)
    elif modality == "ceus":
        series = case.load_image("ceus")
        arterial = select_phase_frames(case.load_ceus_times(series), source=case.frame_times_source)["arterial"]
        image = vector_frame(series, arterial)
    else:
        image = case.load_image(modality)
    return image, case.load_roi(modality, image)


def _tumour_slice(roi: np.ndarray) -> int:
    areas = (roi == 1).reshape(roi.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas))


def _draw_slice(axis, image: sitk.Image, roi: sitk.Image, heat: sitk.Image | None, scale: float = 1.0,
                zoom_to_roi: bool = False):
    """The axial slice with the most tumour: image in grey (or colour for maps), heat on top, ROI outline.
    ROI and heat are resampled onto the image's grid in physical space, so they land where they belong
    whatever grid they were saved on."""
    pixels = np.atleast_3d(sitk.GetArrayViewFromImage(image).astype(np.float32) * scale)
    if pixels.ndim == 3 and image.GetDimension() == 2:
        pixels = pixels.transpose(2, 0, 1)  # a 2-D image is one slice
    labels = sitk.GetArrayFromImage(sitk.Resample(roi, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    labels = labels.reshape(pixels.shape)
    if heat is not None and not same_grid(heat, image):
        heat = sitk.Resample(heat, image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    k = _tumour_slice(labels)
    plane, mask = pixels[k], labels[k] == 1
    if zoom_to_roi and mask.any():
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        margin = 6
        window = (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
                  slice(max(columns[0] - margin, 0), columns[-1] + margin + 1))
        plane, mask = plane[window], mask[window]
        inside = plane[mask]
        shown = axis.imshow(np.where(mask, plane, np.nan), cmap="viridis",
                            vmin=np.percentile(inside, 2), vmax=np.percentile(inside, 98))
    else:
        low, high = np.percentile(plane, [1, 99.5])
        shown = axis.imshow(plane, cmap="gray", vmin=low, vmax=high if high > low else low + 1)
        if heat is not None:
            heat_plane = sitk.GetArrayFromImage(heat).reshape(pixels.shape)[k]
            axis.imshow(np.ma.masked_less(heat_plane, 0.05), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    if mask.any():
        axis.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
    return shown


def _second_page(plt, result: dict, models):
    from ..models.model_set import PACKAGE_NAMES, bundled_models_folder
    from ..models.package import verify_package

    page = plt.figure(figsize=A4)
    _header(page, result, "survival")
    folder = Path(models) if models else bundled_models_folder()
    curves = {}
    for key in ARMS:
        try:
            curves[key] = verify_package(folder / PACKAGE_NAMES[key])["herovision"].get("training_curves")
        except InputError:
            curves[key] = None
    for index, (key, name) in enumerate((("ta", "thermal ablation"), ("sr", "repeat resection"))):
        axis = page.add_axes([0.1 + index * 0.45, 0.6, 0.37, 0.26])
        axis.set_title(f"Under {name}: training cohort and this patient", fontsize=9)
        survival = result["survival"].get(key)
        recorded = curves.get(key)
        if recorded:
            months = recorded["months"]
            for group, colour in (("low", "tab:blue"), ("high", "tab:red")):
                if f"kaplan_meier_{group}" in recorded:
                    axis.step(months, recorded[f"kaplan_meier_{group}"], where="post", color=colour,
                              label=f"training {group} risk (n = {recorded[f'patients_{group}']})")
        if survival:
            months, pfs = _patient_curve(survival, recorded)
            axis.plot(months, pfs, color="black", linestyle="--", linewidth=2,
                      label=f"this patient ({survival['risk_group']} risk)")
        if not recorded:
            axis.text(0.5, 0.1, "training curves not recorded in this package", transform=axis.transAxes,
                      ha="center", fontsize=7, color="dimgrey")
        axis.set(xlim=(0, 60), ylim=(0, 1.02), xlabel="months", ylabel="progression-free survival")
        axis.legend(fontsize=6.5, loc="lower left")
    axis = page.add_axes([0.1, 0.3, 0.37, 0.22])
    axis.set_title("Predicted PFS: thermal ablation vs resection", fontsize=9)
    for key, label, colour in (("ta", "thermal ablation", "tab:orange"), ("sr", "repeat resection", "tab:purple")):
        survival = result["survival"].get(key)
        if survival:
            axis.plot(*_patient_curve(survival, curves.get(key)), color=colour, linewidth=2, label=label)
            nomogram = survival.get("nomogram")
            if nomogram:
                axis.plot([12, 24, 36], [nomogram["pfs"][m] for m in ("12", "24", "36")], "o", color=colour,
                          label=f"{label}, nomogram")
    axis.set(xlim=(0, 60), ylim=(0, 1.02), xlabel="months", ylabel="progression-free survival")
    axis.legend(fontsize=6.5, loc="lower left")
    axis = page.add_axes([0.62, 0.3, 0.33, 0.22])
    axis.set_title("Nomogram points", fontsize=9)
    _nomogram_bars(axis, result)
    page.text(0.5, 0.02, WARNING, fontsize=7, ha="center", color="darkred")
    return page


def _patient_curve(survival: dict, recorded: dict | None):
    """exp(−H₀(t)·e^score) over the recorded baseline, else through the three horizons."""
    if recorded:
        months = np.asarray(recorded["months"], dtype=float)
        return months, survival_probability(survival["risk_score"], recorded["baseline_cumulative_hazard"])[0]
    months = [0, 12, 24, 36]
    return months, [1.0] + [survival["pfs"][str(m)] for m in months[1:]]


def _nomogram_bars(axis, result: dict) -> None:
    rows = []
    for key in ARMS:
        nomogram = (result["survival"].get(key) or {}).get("nomogram")
        if nomogram:
            rows += [(f"{key.upper()}: {name}", points) for name, points in nomogram["points"].items()]
            rows.append((f"{key.upper()}: total", nomogram["total_points"]))
    if not rows:
        axis.text(0.5, 0.5, "no nomogram: the packages have none,\nor the clinical record is incomplete",
                  ha="center", va="center", fontsize=7, transform=axis.transAxes)
        axis.set_axis_off()
        return
    labels, values = zip(*rows)
    axis.barh(range(len(rows)), values, color=["tab:grey" if "total" in label else "tab:blue" for label in labels])
    axis.set_yticks(range(len(rows)), labels, fontsize=6.5)
    axis.invert_yaxis()
    axis.set_xlabel("points", fontsize=8)
