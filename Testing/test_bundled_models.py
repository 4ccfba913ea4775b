"""The bundled demonstration models: present, verified, trained by the recorded commands, labelled
as demonstration models trained on synthetic data, with their test metrics on the card."""

import numpy as np
import pytest

from HEROVisionLib.errors import InputError
from HEROVisionLib.io.case import Cohort
from HEROVisionLib.predict import bundled_models_folder, load_models, predict_case
from HEROVisionLib.models.model_set import PACKAGE_NAMES


@pytest.fixture(scope="module")
def bundled():
    return load_models(bundled_models_folder(), "cpu")


def test_every_bundled_package_is_verified_trained_and_labelled(bundled):
    for key, package in bundled.items():
        block = package.herovision
        assert package.name == PACKAGE_NAMES[key] and package.trained
        assert block["training_cohort"]["synthetic"] is True
        assert block["training"]["command"].startswith("herovision train --task")
        test = block["metrics"]["test"]
        assert test["command"].startswith("herovision evaluate") and test["cohort"] != block["training_cohort"]["cohort"]
        assert ("oracle_c_index" if block["kind"] == "survival" else "oracle_auc") in test
        card = (package.path / "docs" / "README.md").read_text(encoding="utf-8")
        assert "Demonstration model" in card and "not on patients" in card and "Validation metrics" in card
    # what the Slicer panel lists: each package, how it was trained, its intended-use text
    for line, (_, package) in zip(bundled.describe(), bundled.items()):
        assert line.startswith(f"{package.name} {package.version} (trained on a synthetic phantom cohort) — ")
        assert line.endswith(package.metadata["intended_use"]) and "not for clinical use" in line.lower()


def test_the_bundled_models_predict_a_phantom_case(bundled, phantom_cohort):
    case = Cohort(phantom_cohort).case("A0002")  # with its clinical record: the nomograms apply
    result = predict_case(case, bundled, "cpu")
    assert result.models_trained and not any("untrained" in w for w in result.warnings)
    assert "demonstration models trained on synthetic phantom data: not for clinical use" in result.warnings
    row = result.row()
    assert row["ta_risk_group"] in ("high", "low") and 0 < result.er_probability < 1
    for key in ("ta", "sr"):
        assert row[f"{key}_nomogram_risk_group"] in ("high", "low") and 0 < row[f"{key}_nomogram_pfs_2y"] < 1
    assert not any("nomogram not computed" in w for w in result.warnings)
    assert row["nomogram_pfs_2y_threshold"] == bundled.common_pfs_threshold(nomogram=True)
    assert row["pfs_2y_threshold"] == bundled.common_pfs_threshold(nomogram=False)
    from HEROVisionLib.predict.case_prediction import clinical_values, nomogram_log_hazard_se
    from HEROVisionLib.clinical.treatment import MODEL_DRAWS, advise

    advice = advise(case, result, bundled, case.clinical["treatment"], draws=8)
    assert advice.basis == "nomogram" and advice.pfs_2y["TA"] == pytest.approx(row["ta_nomogram_pfs_2y"])
    # the bundled nomograms carry their estimation error, so the advice is re-scored within it too
    assert advice.model_draws == MODEL_DRAWS and advice.to_dict()["model_draws"] == MODEL_DRAWS
    for key in ("ta", "sr"):
        se = nomogram_log_hazard_se(getattr(bundled, key), result.survival[key].risk_score,
                                    clinical_values(result, case))
        assert 0 < se < 1  # log H(24 months | x): finite, and far from uninformative for these training arms


def test_re_scored_nomogram_survival_is_the_nomogram_of_each_score(bundled):
    """The advice re-scores a patient in one pass; each value must be what the nomogram gives that score."""
    from HEROVisionLib.predict.case_prediction import nomogram_result, nomogram_survival

    clinical = {"age": 61, "sex_male": 1, "cirrhosis": 1, "ctp_b": 0, "portal_hypertension": 1, "tumor_number": 2,
                "tumor_size_cm": 3.4, "perivascular": 1, "subcapsular": 0, "afp_high": 1, "alt_high": 0, "ast_high": 1,
                "inr_high": 0, "cea_high": 0, "ca19_9_high": 1, "pni_low": 0}  # every factor a nomogram may select
    scores = np.array([-1.2, -0.3, 0.0, 0.8, 1.9])
    for package in (bundled.ta, bundled.sr):
        expected = [nomogram_result(package, score, clinical).pfs[24] for score in scores]
        assert nomogram_survival(package, scores, clinical) == pytest.approx(expected, rel=1e-12)
        with pytest.raises(InputError, match="unknown"):
            nomogram_survival(package, scores, {})


def test_the_bundled_survival_models_carry_a_nomogram_and_the_training_curves(bundled):
    for package in (bundled.ta, bundled.sr):
        block = package.herovision
        assert "risk_score" in block["nomogram"]["coefficients"] and "unavailable" not in block["nomogram"]
        curves = block["training_curves"]
        assert curves["patients_low"] + curves["patients_high"] == block["training_cohort"]["training_cases"]


def test_cross_stratification_reads_both_nomograms_on_one_threshold_between_their_own_cutoffs(bundled):
    from HEROVisionLib.models.nomogram import Nomogram

    own, weights = [], []
    for package in (bundled.ta, bundled.sr):
        block = package.herovision["nomogram"]
        nomogram = Nomogram.from_dict(block)
        on_cutoff = (block["risk_cutoff"] - nomogram.lowest_contribution.sum()) / nomogram.points_scale  # total points
        own.append(nomogram.survival([on_cutoff])[24.0].iloc[0])  # 2-year PFS of a patient on the cutoff
        weights.append(package.herovision["training_cohort"]["cases"])
    threshold = bundled.common_pfs_threshold(nomogram=True)
    assert threshold == pytest.approx(np.average(own, weights=weights), rel=1e-12)
    assert min(own) < threshold < max(own)


def test_the_bundled_survival_models_carry_their_comparators_and_the_staging_comparison(bundled):
    """The clinical model and the stage + score models fitted on the training cohort, and the test
    cohort's comparison with the six staging systems on the card."""
    from HEROVisionLib.staging import SYSTEMS

    for package in (bundled.ta, bundled.sr):
        block = package.herovision
        assert block["clinical_model"]["coefficients"] and "risk_score" not in block["clinical_model"]["coefficients"]
        assert set(block["staging_models"]) == set(SYSTEMS)
        comparison = block["metrics"]["test"]["comparison"]
        assert {package.name, "Clinical model", *SYSTEMS} <= {row["predictor"] for row in comparison["table"]}
        card = (package.path / "docs" / "README.md").read_text(encoding="utf-8")
        assert "## Compared with the clinical model and the staging systems" in card
