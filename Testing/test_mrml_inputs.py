"""What the Predict panel reads from a real MRML scene before predicting: b-values from nodes and
sequences, CEUS phases from a time sequence, a VOI carried between series, VOI size as drawn, the
problems listed before Predict, and a prediction that runs in the background and can be cancelled."""

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test dependencies")

from HEROVisionLib.errors import Cancelled, InputError  # noqa: E402
from HEROVisionLib.io.case import Case, Cohort  # noqa: E402
from HEROVisionLib.io.geometry import resample_labels  # noqa: E402
from HEROVisionLib.io.measure import volume_ml  # noqa: E402
from HEROVisionLib.slicer.nodes import image_from_volume_node, label_image_from_segment, scene_inputs_from_case  # noqa: E402
from HEROVisionLib.slicer.panel_inputs import (bvalues_from_nodes, carry_segment, ceus_phase_volumes_from_sequence,  # noqa: E402
                                       input_problems, parse_bvalues, segment_measures, sequence_bvalues,
                                       sequence_volumes)

BVALUES = [0, 10, 20, 40, 80, 200, 400, 600, 1000]


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture
def loaded(phantom_cohort, scene):
    return scene_inputs_from_case(scene, Case(phantom_cohort / "A0003"))


def _sequence(scene, volumes, index_name, values, unit=""):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{index_name} sequence")
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(unit)
    for node, value in zip(volumes, values):
        sequence.SetDataNodeAtValue(node, f"{value:g}")
    return sequence


def test_bvalues_come_from_the_volumes_or_a_bvalue_sequence_and_typed_ones_are_checked(scene, loaded):
    assert bvalues_from_nodes(loaded.ivim_volumes) == BVALUES
    loaded.ivim_volumes[4].RemoveAttribute("DiffusionBValue")
    assert bvalues_from_nodes(loaded.ivim_volumes) is None  # the panel asks for them
    sequence = _sequence(scene, loaded.ivim_volumes, "b-value", BVALUES, "s/mm2")
    volumes = sequence_volumes(sequence)
    assert len(volumes) == 9 and sequence_bvalues(sequence) == BVALUES
    assert np.array_equal(slicer.util.arrayFromVolume(volumes[8]), slicer.util.arrayFromVolume(loaded.ivim_volumes[8]))
    assert parse_bvalues("0, 10;20 40\n80") == [0, 10, 20, 40, 80]
    with pytest.raises(InputError, match="'0, ten' is not a list of numbers"):
        parse_bvalues("0, ten")


def test_ceus_phases_are_picked_from_a_time_sequence(phantom_cohort, scene, loaded):
    case = Case(phantom_cohort / "A0003")
    times = case.load_ceus_times()
    from HEROVisionLib.io.images import vector_to_frames
    from HEROVisionLib.slicer.nodes import volume_node_from_image

    frames = [volume_node_from_image(scene, f, f"frame {k}") for k, f in enumerate(vector_to_frames(case.load_image("ceus")))]
    sequence = _sequence(scene, frames, "time", times, "s")
    phases = ceus_phase_volumes_from_sequence(sequence)
    # the same frames the folder case's phase selection takes: the phase volumes loaded from the case
    assert [slicer.util.arrayFromVolume(n).tobytes() for n in phases] == \
        [slicer.util.arrayFromVolume(n).tobytes() for n in loaded.ceus_phase_volumes]
    late_only = _sequence(scene, frames[-2:], "time", times[-2:], "s")
    with pytest.raises(InputError, match="no frame in the arterial phase"):
        ceus_phase_volumes_from_sequence(late_only)


def test_a_voi_drawn_on_t2wi_is_carried_onto_the_ivim_grid_as_an_editable_segment(phantom_cohort, scene, loaded):
    case = Case(phantom_cohort / "A0003")
    segmentation = loaded.segmentation.GetSegmentation()
    t2wi_segment, ivim_b0 = loaded.segments["t2wi"], loaded.ivim_volumes[0]
    drawn_before = label_image_from_segment(scene, loaded.segmentation, t2wi_segment, loaded.volumes["t2wi"])
    count = segmentation.GetNumberOfSegments()
    carried = carry_segment(scene, loaded.segmentation, t2wi_segment, loaded.volumes["t2wi"], ivim_b0,
                            "tumour from T2WI on IVIM")
    assert segmentation.GetNumberOfSegments() == count + 1
    on_ivim = label_image_from_segment(scene, loaded.segmentation, carried, ivim_b0)
    # independent path: the case's T2WI ROI resampled onto the IVIM grid by the I/O layer
    expected = resample_labels(sitk.Cast(case.load_roi("t2wi") == 1, sitk.sitkUInt8), image_from_volume_node(ivim_b0))
    agreement = np.mean(sitk.GetArrayViewFromImage(on_ivim) == sitk.GetArrayViewFromImage(expected))
    assert agreement > 0.999
    assert volume_ml(on_ivim) == pytest.approx(volume_ml(drawn_before), rel=0.2)  # 0.5 → 2×2×5 mm voxels
    # the drawn VOI is untouched; carrying again replaces the earlier copy
    after = label_image_from_segment(scene, loaded.segmentation, t2wi_segment, loaded.volumes["t2wi"])
    assert np.array_equal(sitk.GetArrayViewFromImage(after), sitk.GetArrayViewFromImage(drawn_before))
    carry_segment(scene, loaded.segmentation, t2wi_segment, loaded.volumes["t2wi"], ivim_b0, "tumour from T2WI on IVIM")
    assert segmentation.GetNumberOfSegments() == count + 1


def test_a_voi_outside_the_target_series_is_refused_and_adds_nothing(phantom_cohort, scene, loaded):
    from HEROVisionLib.slicer.nodes import volume_node_from_image

    far = sitk.Image(image_from_volume_node(loaded.ivim_volumes[0]))
    far.SetOrigin([c + 500.0 for c in far.GetOrigin()])
    far_node = volume_node_from_image(scene, far, "elsewhere")
    segments, nodes = loaded.segmentation.GetSegmentation().GetNumberOfSegments(), scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="lies outside elsewhere"):
        carry_segment(scene, loaded.segmentation, loaded.segments["t2wi"], loaded.volumes["t2wi"], far_node, "lost")
    assert loaded.segmentation.GetSegmentation().GetNumberOfSegments() == segments
    assert scene.GetNumberOfNodes() == nodes


def test_voi_size_and_volume_as_drawn_match_the_case_record(phantom_cohort, scene, loaded):
    size_cm, volume = segment_measures(scene, loaded.segmentation, loaded.segments["t2wi"], loaded.volumes["t2wi"])
    # cohort.csv's tumor_size_cm is the phantom's own measurement of the T2WI ROI's largest axial diameter
    recorded = Cohort(phantom_cohort).table.set_index("case_id").loc["A0003", "tumor_size_cm"]
    assert size_cm == pytest.approx(recorded, abs=0.05)  # recorded to 0.1 cm
    roi = Case(phantom_cohort / "A0003").load_roi("t2wi") == 1
    assert volume == pytest.approx(float(sitk.GetArrayViewFromImage(roi).sum()) * np.prod(roi.GetSpacing()) / 1000)


def test_problems_are_listed_before_predict_without_touching_the_scene(scene, loaded):
    assert input_problems(scene, loaded) == []
    count = scene.GetNumberOfNodes()
    loaded.bvalues = BVALUES[:-1]
    loaded.segments.pop("dwi")
    loaded.segments["us"] = loaded.segmentation.GetSegmentation().AddEmptySegment("nothing drawn")
    problems = input_problems(scene, loaded)
    assert any("8 b-values for 9 volumes" in p for p in problems)
    assert "DWI: choose the tumour segment" in problems
    assert any(p.startswith("US: ") and "segment is empty on the grid of A0003 US" in p for p in problems)
    assert scene.GetNumberOfNodes() == count
    loaded.segmentation = None
    assert input_problems(scene, loaded) == ["choose the segmentation that holds the tumour VOI"]


def test_clinical_values_typed_in_the_panel_reach_the_case(scene, loaded):
    from HEROVisionLib.io.case import parse_clinical_values
    from HEROVisionLib.slicer.nodes import case_from_scene

    loaded.clinical = parse_clinical_values("afp_high=1, portal_hypertension = 0")
    assert case_from_scene(scene, loaded).clinical == {"afp_high": "1", "portal_hypertension": "0"}


@pytest.fixture(scope="module")
def placeholder_models(untrained_models):
    from HEROVisionLib.predict import load_models

    return load_models(untrained_models, "cpu")


def test_a_background_prediction_gives_the_same_result_and_can_be_cancelled(phantom_cohort, placeholder_models):
    from HEROVisionLib.predict import BackgroundPrediction, predict_case

    case = Case(phantom_cohort / "A0003")
    stages = []
    direct = predict_case(case, placeholder_models, "cpu", progress=lambda stage, done: stages.append((stage, done)))
    assert [s for s, _ in stages] == ["survival inputs", "survival models", "IVIM"]
    assert [d for _, d in stages] == sorted(d for _, d in stages) and stages[0][1] == 0 and stages[-1][1] < 1

    running = BackgroundPrediction(case, placeholder_models, "cpu")
    result = running.result(timeout=300)
    assert running.done() and running.fraction == 1.0
    assert {k: v for k, v in result.row().items() if k != "seconds"} == \
        {k: v for k, v in direct.row().items() if k != "seconds"}

    def stop_before_ivim(stage, done):
        if stage == "IVIM":
            raise Cancelled("prediction cancelled")

    with pytest.raises(Cancelled):
        predict_case(case, placeholder_models, "cpu", progress=stop_before_ivim)
    cancelled = BackgroundPrediction(case, placeholder_models, "cpu")
    cancelled.cancel()
    with pytest.raises(Cancelled):
        cancelled.result(timeout=300)
