"""The six staging systems at and either side of every boundary of their sources' tables, and a
staging that lacks an input is "not computable", naming it."""

import pytest

from HEROVisionLib.staging import STAGES, hklc_tumour_status, stage_patient

#: A patient within every system's earliest stage; each case below changes what it names.
BASE = dict(tumor_number=1, tumor_size_cm=1.5, vascular_invasion=0, extrahepatic_spread=0, ecog=0, child_pugh_score=5,
            afp_high=0)


def _stage(system, **changes):
    return stage_patient({**BASE, **changes})[system]


@pytest.mark.parametrize("changes, expected", [
    ({}, "IA"), ({"tumor_size_cm": 2.0}, "IA"), ({"tumor_size_cm": 2.1}, "IB"), ({"tumor_size_cm": 9.0}, "IB"),
    ({"tumor_number": 2, "tumor_size_cm": 1.0}, "II"), ({"tumor_number": 3, "tumor_size_cm": 5.0}, "II"),
    ({"tumor_number": 2, "tumor_size_cm": 5.1}, "IIIA"), ({"vascular_invasion": 1}, "IIIB"),
    ({"tumor_number": 3, "tumor_size_cm": 8, "vascular_invasion": 1}, "IIIB"), ({"extrahepatic_spread": 1}, "IVB"),
    ({"extrahepatic_spread": 1, "vascular_invasion": 1}, "IVB"),
    ({"ecog": 3, "child_pugh_score": 12}, "IA"),  # AJCC reads the tumour only
])
def test_ajcc_8th(changes, expected):
    assert _stage("AJCC", **changes).stage == expected


@pytest.mark.parametrize("changes, expected", [
    ({}, "0"), ({"tumor_size_cm": 2.0}, "0"), ({"tumor_size_cm": 2.1}, "A"), ({"tumor_size_cm": 12.0}, "A"),
    ({"tumor_number": 3, "tumor_size_cm": 3.0}, "A"), ({"tumor_number": 3, "tumor_size_cm": 3.1}, "B"),
    ({"tumor_number": 4, "tumor_size_cm": 1.0}, "B"), ({"child_pugh_score": 9}, "0"), ({"child_pugh_score": 10}, "D"),
    ({"ecog": 1}, "C"), ({"ecog": 2}, "C"), ({"ecog": 3}, "D"), ({"vascular_invasion": 1}, "C"),
    ({"extrahepatic_spread": 1}, "C"), ({"extrahepatic_spread": 1, "child_pugh_score": 10}, "D"),
])
def test_bclc_2022(changes, expected):
    assert _stage("BCLC", **changes).stage == expected


@pytest.mark.parametrize("changes, expected", [
    ({}, "Ia"), ({"tumor_size_cm": 5.0}, "Ia"), ({"tumor_size_cm": 5.1}, "Ib"),
    ({"tumor_number": 2, "tumor_size_cm": 3.0}, "Ib"), ({"tumor_number": 3, "tumor_size_cm": 3.1}, "IIa"),
    ({"tumor_number": 4, "tumor_size_cm": 1.0}, "IIb"), ({"vascular_invasion": 1}, "IIIa"),
    ({"extrahepatic_spread": 1}, "IIIb"), ({"extrahepatic_spread": 1, "vascular_invasion": 1}, "IIIb"),
    ({"ecog": 2, "child_pugh_score": 9}, "Ia"), ({"ecog": 3}, "IV"), ({"child_pugh_score": 10}, "IV"),
])
def test_cnlc_2022(changes, expected):
    assert _stage("CNLC", **changes).stage == expected


@pytest.mark.parametrize("number, size, invasion, expected", [
    (1, 5.0, False, "early"), (3, 5.0, False, "early"), (4, 5.0, False, "intermediate"),
    (1, 5.0, True, "intermediate"), (1, 5.1, False, "intermediate"), (3, 5.1, False, "intermediate"),
    (4, 5.1, False, "locally advanced"), (1, 5.1, True, "locally advanced"),
])
def test_hklc_tumour_status(number, size, invasion, expected):
    assert hklc_tumour_status(number, size, invasion) == expected


@pytest.mark.parametrize("changes, expected", [
    ({}, "I"), ({"ecog": 1}, "I"), ({"child_pugh_score": 6}, "I"),
    ({"tumor_number": 4}, "IIa"), ({"tumor_size_cm": 5.1}, "IIa"), ({"vascular_invasion": 1}, "IIb"),
    ({"tumor_number": 4, "tumor_size_cm": 5.1}, "IIIa"), ({"tumor_size_cm": 5.1, "vascular_invasion": 1}, "IIIb"),
    ({"extrahepatic_spread": 1}, "IVa"),
    ({"child_pugh_score": 7}, "IIb"), ({"child_pugh_score": 9, "tumor_number": 4}, "IIIb"),
    ({"child_pugh_score": 7, "tumor_number": 4, "tumor_size_cm": 5.1}, "IVb"),
    ({"child_pugh_score": 7, "extrahepatic_spread": 1}, "IVb"),
    ({"ecog": 2}, "IVb"), ({"ecog": 4, "child_pugh_score": 9, "tumor_size_cm": 8}, "IVb"),
    ({"ecog": 2, "extrahepatic_spread": 1}, "Vb"),
    ({"child_pugh_score": 10}, "Va"), ({"child_pugh_score": 10, "ecog": 3}, "Va"),
    ({"child_pugh_score": 10, "tumor_number": 4}, "Vb"), ({"child_pugh_score": 15, "extrahepatic_spread": 1}, "Vb"),
])
def test_hklc(changes, expected):
    assert _stage("HKLC", **changes).stage == expected


@pytest.mark.parametrize("changes, expected", [
    ({}, "0"), ({"tumor_size_cm": 2.0}, "0"), ({"tumor_size_cm": 2.1}, "A"), ({"tumor_size_cm": 5.0}, "A"),
    ({"tumor_size_cm": 5.1}, "B1"), ({"tumor_number": 2, "tumor_size_cm": 3.0}, "A"),
    ({"tumor_number": 3, "tumor_size_cm": 3.1}, "B1"), ({"tumor_number": 3, "tumor_size_cm": 5.0}, "B1"),
    ({"tumor_number": 2, "tumor_size_cm": 5.1}, "B2"), ({"tumor_number": 4, "tumor_size_cm": 5.0}, "B2"),
    ({"tumor_number": 4, "tumor_size_cm": 5.1}, "B3"), ({"vascular_invasion": 1}, "B3"),
    ({"extrahepatic_spread": 1, "vascular_invasion": 1}, "C"),
])
def test_italica_tumour_stage(changes, expected):
    assert _stage("ITA.LI.CA", **changes).stage == expected


@pytest.mark.parametrize("changes, expected", [
    ({}, 0), ({"tumor_size_cm": 3.0}, 1), ({"tumor_size_cm": 6.0}, 2), ({"tumor_number": 4}, 3),
    ({"vascular_invasion": 1}, 4), ({"extrahepatic_spread": 1}, 6),
    ({"ecog": 1}, 1), ({"ecog": 2}, 1), ({"ecog": 3}, 3), ({"ecog": 4}, 3),
    ({"child_pugh_score": 6}, 1), ({"child_pugh_score": 7}, 2), ({"child_pugh_score": 8}, 3),
    ({"child_pugh_score": 12}, 3),
    ({"afp_high": 1, "afp_ng_ml": 1000}, 0), ({"afp_high": 1, "afp_ng_ml": 1000.5}, 1),
    ({"extrahepatic_spread": 1, "ecog": 4, "child_pugh_score": 15, "afp_ng_ml": 5000}, 13),
])
def test_italica_prognostic_score(changes, expected):
    staged = _stage("ITA.LI.CA", **changes)
    assert staged.score == expected and staged.ordinal == expected


@pytest.mark.parametrize("changes, expected", [
    ({}, "I"), ({"tumor_size_cm": 2.1}, "II"), ({"tumor_number": 2}, "II"), ({"vascular_invasion": 1}, "II"),
    ({"tumor_number": 2, "tumor_size_cm": 2.1}, "III"), ({"tumor_size_cm": 2.1, "vascular_invasion": 1}, "III"),
    ({"tumor_number": 2, "tumor_size_cm": 2.1, "vascular_invasion": 1}, "IVA"), ({"extrahepatic_spread": 1}, "IVB"),
])
def test_modified_uicc(changes, expected):
    assert _stage("mUICC", **changes).stage == expected


def test_every_system_is_staged_and_ordered_least_advanced_first():
    staged = stage_patient(BASE)
    assert set(staged) == set(STAGES) and all(stage.ordinal == 0 for stage in staged.values())
    worst = stage_patient({**BASE, "tumor_number": 5, "tumor_size_cm": 9, "vascular_invasion": 1,
                           "extrahepatic_spread": 1, "ecog": 4, "child_pugh_score": 15, "afp_ng_ml": 3000})
    assert {name: stage.stage for name, stage in worst.items()} == {
        "AJCC": "IVB", "BCLC": "D", "CNLC": "IV", "HKLC": "Vb", "ITA.LI.CA": "C", "mUICC": "IVB"}


def test_a_missing_input_makes_a_system_not_computable_naming_it():
    staged = stage_patient({**BASE, "ecog": "", "child_pugh_score": None})
    assert staged["AJCC"].stage == "IA" and staged["mUICC"].stage == "I"  # they need neither
    for system in ("BCLC", "CNLC", "HKLC"):
        assert staged[system].stage is None and staged[system].missing == ("ecog", "child_pugh_score")
        assert staged[system].ordinal is None and "not computable (no ecog, child_pugh_score)" in str(staged[system])
    high_afp = _stage("ITA.LI.CA", afp_high=1)  # ≥ 200 ng/mL: above 1000 or not is unknown
    assert high_afp.stage == "0" and high_afp.score is None and high_afp.missing == ("afp_ng_ml",)
    assert _stage("AJCC", tumor_size_cm=float("nan")).missing == ("tumor_size_cm",)
