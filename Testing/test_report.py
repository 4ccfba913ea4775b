"""The per-patient report: `herovision predict` then `herovision report` renders a PDF whose text layer
carries every panel's title and the intended-use warning, and a non-trivial PNG; bad requests are refused."""

import pytest
from pypdf import PdfReader

from HEROVisionLib.cli import main
from HEROVisionLib.errors import InputError
from HEROVisionLib.plots import pyplot
from HEROVisionLib.predict import write_untrained_models
from HEROVisionLib.clinical.report import render_report

TITLES = ("patient report: case A0003", "Summary", "Tumour and attention maps", "T2WI", "CEUS arterial",
          "IVIM parametric maps of the tumour VOI", "D (10", "ADC (10", "survival: case A0003",
          "Under thermal ablation: training cohort and this patient", "Under repeat resection",
          "Predicted PFS: thermal ablation vs resection", "Nomogram points", "RESEARCH USE ONLY")


@pytest.fixture(scope="module")
def prediction(phantom_cohort, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    models = write_untrained_models(folder / "models")
    assert main(["predict", str(phantom_cohort / "A0003"), "--out", str(folder / "A0003"), "--models", str(models),
                 "--device", "cpu"]) == 0
    return folder / "A0003", models


def test_the_pdf_has_two_pages_with_every_panel_title_in_its_text(prediction, tmp_path):
    folder, models = prediction
    assert (folder / "advice.json").is_file()  # both models ran: the recommendation and its firmness
    pdf = render_report(folder, tmp_path / "report.pdf", models)
    reader = PdfReader(pdf)
    assert len(reader.pages) == 2
    text = " ".join(page.extract_text() for page in reader.pages)
    missing = [title for title in TITLES if title not in text]
    assert not missing, missing
    assert "Recommendation (image risk score; 2-year PFS TA " in text and "Inputs used: IVIM, T2WI, DWI, US, CEUS" in text


def test_the_png_is_both_pages_and_not_blank(prediction, tmp_path):
    folder, models = prediction
    assert main(["report", str(folder), "--out", str(tmp_path / "report.png"), "--models", str(models)]) == 0
    image = pyplot().imread(tmp_path / "report.png")
    assert image.shape[0] > 2 * image.shape[1] > 1500  # two A4 pages stacked
    grey = image[..., :3].mean(axis=2)
    assert grey.std() > 0.1 and (grey < 0.2).mean() > 0.02  # images and text, not an empty page
    assert not list(tmp_path.glob(".*partial*"))


def test_an_unreadable_input_leaves_its_panel_empty_not_the_report_unwritten(prediction, phantom_cohort, tmp_path):
    import shutil

    folder, models = prediction
    case = shutil.copytree(phantom_cohort / "A0003", tmp_path / "A0003")
    (case / "us_roi.nrrd").write_text("not an image")  # present but unreadable
    (case / "dwi_roi.nii.gz").unlink()  # absent: DWI is not available
    pdf = render_report(folder, tmp_path / "report.pdf", models, case_folder=case)
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Tumour and attention maps" in text and "not available" in text and "unreadable" in text.lower()


def test_bad_requests_name_what_is_wrong(prediction, tmp_path):
    folder, models = prediction
    with pytest.raises(InputError, match="must be a .pdf or a .png"):
        render_report(folder, tmp_path / "report.docx", models)
    with pytest.raises(InputError, match="results.json: not found"):
        render_report(tmp_path, tmp_path / "report.pdf", models)
    with pytest.raises(InputError, match="give the case folder"):
        render_report(folder, tmp_path / "report.pdf", models, case_folder=tmp_path / "moved")
    assert not (tmp_path / "report.pdf").exists()


def test_a_heat_map_saved_on_another_grid_is_drawn_over_the_tumour_of_a_2d_image():
    """Overlays are placed in physical space: a coarser heat map still lights the tumour, not a corner."""
    import numpy as np
    import SimpleITK as sitk

    from HEROVisionLib.clinical.report import _draw_slice

    image = sitk.Image(64, 64, sitk.sitkFloat32)
    image.SetSpacing((0.5, 0.5))
    labels = np.zeros((64, 64), np.uint8)
    labels[20:30, 40:50] = 1  # rows 10–15 mm, columns 20–25 mm
    roi = sitk.GetImageFromArray(labels)
    roi.CopyInformation(image)
    coarse = np.zeros((32, 32), np.float32)
    coarse[10:15, 20:25] = 1.0  # the same place at 1 mm spacing
    heat = sitk.GetImageFromArray(coarse)
    heat.SetSpacing((1.0, 1.0))
    figure, axis = pyplot().subplots()
    _draw_slice(axis, image, roi, heat)
    drawn = np.ma.filled(axis.images[1].get_array(), 0)
    assert drawn.shape == (64, 64) and drawn[labels == 1].mean() > 0.8 and drawn[labels == 0].mean() < 0.05
    pyplot().close(figure)
