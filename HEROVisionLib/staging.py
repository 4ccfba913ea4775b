"""The six guideline staging systems of hepatocellular carcinoma, as pure functions of a patient's
clinical record (the columns of PHANTOM.md §4 and §6): what a site compares HEROVision against.

Each function returns a :class:`Stage`: the stage, its rank in the system's order (0 = least
advanced; what a C-index reads), ITA.LI.CA's prognostic score, or "not computable" with the missing
fields named — a staging is never guessed. Inputs: ``tumor_number``; ``tumor_size_cm`` (the largest
tumour — every size rule below reads the largest, the others being smaller by definition);
``vascular_invasion`` (macrovascular: tumour thrombus or invasion of a portal or hepatic vein branch
seen on imaging); ``extrahepatic_spread`` (nodes or distant metastases); ``ecog`` (0–4);
``child_pugh_score`` (5–15: class A 5–6, B 7–9, C 10–15); ``afp_ng_ml`` or ``afp_high`` (≥ 200 ng/mL).

Readings chosen where the record is coarser than a source (each named in its function):

* Microvascular and bile-duct invasion are pathological findings, unknown before treatment; they
  are read as absent (AJCC T1b vs T2, LCSGJ's third criterion).
* Extrahepatic spread is read as distant metastasis (M1): nodes alone would be N1 M0, which the
  record does not separate (AJCC and LCSGJ stage IVB rather than IVA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

#: Each system's stages, least advanced first.
STAGES = {
    "AJCC": ("IA", "IB", "II", "IIIA", "IIIB", "IVA", "IVB"),
    "BCLC": ("0", "A", "B", "C", "D"),
    "CNLC": ("Ia", "Ib", "IIa", "IIb", "IIIa", "IIIb", "IV"),
    "HKLC": ("I", "IIa", "IIb", "IIIa", "IIIb", "IVa", "IVb", "Va", "Vb"),
    "ITA.LI.CA": ("0", "A", "B1", "B2", "B3", "C"),
    "mUICC": ("I", "II", "III", "IVA", "IVB"),
}


#: Systems that order patients by a prognostic score rather than by their stage.
SCORED_SYSTEMS = {"ITA.LI.CA"}


@dataclass(frozen=True)
class Stage:
    """One system's staging of one patient; ``stage`` None when not computable (``missing`` says why)."""

    system: str
    stage: str | None
    missing: tuple[str, ...] = ()
    score: int | None = None  # ITA.LI.CA's integrated prognostic score (0–13)

    @property
    def rank(self) -> int | None:
        """Position in the system's order (0 = least advanced), None when not computable."""
        return None if self.stage is None else STAGES[self.system].index(self.stage)

    @property
    def ordinal(self) -> int | None:
        """What orders patients by this system (None: not computable): ITA.LI.CA's score, the
        others' stage rank."""
        return self.score if self.system in SCORED_SYSTEMS else self.rank

    @property
    def text(self) -> str:
        """The stage as a reader sees it beside the system's name: "IIIA", "B1, score 4", or why not."""
        if self.stage is None:
            return f"not computable (no {', '.join(self.missing)})"
        if self.system not in SCORED_SYSTEMS:
            return self.stage
        return f"{self.stage}, " + (f"score {self.score}" if self.score is not None else
                                    f"score not computable (no {', '.join(self.missing)})")

    def __str__(self) -> str:
        return f"{self.system} {self.text}"


class _Missing(Exception):
    """Raised by a rule that lacks an input: the fields to name in its "not computable"."""

    def __init__(self, fields):
        self.fields = tuple(fields)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _values(record: Mapping, *names) -> list[float]:
    """The fields as numbers; raises :class:`_Missing` naming every blank or absent one."""
    values, missing = [], []
    for name in names:
        number = _number(record.get(name))
        if not math.isfinite(number):
            missing.append(name)
        values.append(number)
    if missing:
        raise _Missing(missing)
    return values


def _staged(system: str, rule: Callable[[Mapping], str | Stage]):
    def stage(record: Mapping) -> Stage:
        try:
            result = rule(record)
        except _Missing as missing:
            return Stage(system, None, missing.fields)
        return result if isinstance(result, Stage) else Stage(system, result)
    stage.__doc__, stage.__name__ = rule.__doc__, rule.__name__
    return stage


def _tumour(record: Mapping) -> tuple[int, float, bool, bool]:
    number, size, invasion, spread = _values(record, "tumor_number", "tumor_size_cm", "vascular_invasion",
                                             "extrahepatic_spread")
    return int(number), size, bool(invasion), bool(spread)


def ajcc(record: Mapping) -> str:
    """AJCC Cancer Staging Manual, 8th edition (2017), liver (hepatocellular carcinoma): T — T1a
    solitary ≤ 2 cm; T1b solitary > 2 cm without vascular invasion; T2 solitary > 2 cm with
    (microscopic) vascular invasion, or multiple, none > 5 cm; T3 multiple, at least one > 5 cm; T4
    involving a major branch of the portal or hepatic vein (here: ``vascular_invasion``); stage
    groups IA T1a, IB T1b, II T2, IIIA T3, IIIB T4 (N0 M0), IVA N1, IVB M1 (here:
    ``extrahepatic_spread``). Microvascular invasion is unknown before treatment: read as absent."""
    number, size, invasion, spread = _tumour(record)
    if spread:
        return "IVB"
    if invasion:
        return "IIIB"
    if number == 1:
        return "IA" if size <= 2 else "IB"
    return "II" if size <= 5 else "IIIA"


def bclc(record: Mapping) -> str:
    """BCLC 2022 update (Reig et al., J Hepatol 2022;76:681–693, Fig. 1): D — end-stage liver
    function or ECOG > 2; C — portal invasion and/or extrahepatic spread, or ECOG 1–2; with
    preserved liver function and ECOG 0: 0 — single ≤ 2 cm; A — single, or 2–3 nodules each ≤ 3 cm;
    B — multinodular beyond that. The 2022 figure gives no Child–Pugh cut-off for "preserved";
    read as the earlier editions' tables do: Child–Pugh A–B preserved, C (≥ 10) end-stage."""
    number, size, invasion, spread = _tumour(record)
    ecog, child_pugh = _values(record, "ecog", "child_pugh_score")
    if child_pugh >= 10 or ecog > 2:
        return "D"
    if invasion or spread or ecog >= 1:
        return "C"
    if number == 1:
        return "0" if size <= 2 else "A"
    return "A" if number <= 3 and size <= 3 else "B"


def cnlc(record: Mapping) -> str:
    """China Liver Cancer staging (Guidelines for the diagnosis and treatment of primary liver
    cancer, 2022 edition; unchanged from 2019, Zhou et al., Liver Cancer 2020;9:682–720, Fig. 1):
    IV — ECOG 3–4 or Child–Pugh C; with ECOG 0–2 and Child–Pugh A/B: IIIb extrahepatic metastasis;
    IIIa vascular invasion; Ia single ≤ 5 cm; Ib single > 5 cm, or 2–3 tumours ≤ 3 cm; IIa 2–3
    tumours, largest > 3 cm; IIb ≥ 4 tumours."""
    number, size, invasion, spread = _tumour(record)
    ecog, child_pugh = _values(record, "ecog", "child_pugh_score")
    if ecog >= 3 or child_pugh >= 10:
        return "IV"
    if spread:
        return "IIIb"
    if invasion:
        return "IIIa"
    if number == 1:
        return "Ia" if size <= 5 else "Ib"
    if number <= 3:
        return "Ib" if size <= 3 else "IIa"
    return "IIb"


def hklc_tumour_status(number: int, size: float, invasion: bool) -> str:
    """HKLC tumour status (Yau et al., Gastroenterology 2014;146:1691–1700): early — ≤ 5 cm, ≤ 3
    nodules, no intrahepatic venous invasion; intermediate — ≤ 5 cm with > 3 nodules or venous
    invasion, or > 5 cm with ≤ 3 nodules and none; locally advanced — > 5 cm with > 3 nodules or
    venous invasion (diffuse tumours, not in the record, are locally advanced too)."""
    if size <= 5:
        return "early" if number <= 3 and not invasion else "intermediate"
    return "intermediate" if number <= 3 and not invasion else "locally advanced"


def hklc(record: Mapping) -> str:
    """Hong Kong Liver Cancer staging (Yau et al., Gastroenterology 2014;146:1691–1700, Fig. 3), by
    ECOG, Child–Pugh class, :func:`hklc_tumour_status`, venous invasion and extrahepatic vascular
    invasion or metastasis (here: ``extrahepatic_spread``). ECOG 0–1, Child–Pugh A: I early; IIa
    intermediate without / IIb with venous invasion; IIIa locally advanced without / IIIb with it;
    IVa extrahepatic. ECOG 0–1, Child–Pugh B: IIb early; IIIb intermediate; IVb locally advanced or
    extrahepatic. ECOG 2–4, Child–Pugh A/B: IVb, Vb when extrahepatic. Child–Pugh C: Va early,
    Vb otherwise. The tumour-status definitions are the paper's; this grid is the one reviews
    reproduce from its figure, not checked here against the original — confirm it before relying
    on an HKLC stage at a site."""
    number, size, invasion, spread = _tumour(record)
    ecog, child_pugh = _values(record, "ecog", "child_pugh_score")
    status = hklc_tumour_status(number, size, invasion)
    if child_pugh >= 10:
        return "Va" if status == "early" and not spread else "Vb"
    if ecog >= 2:
        return "Vb" if spread else "IVb"
    if child_pugh >= 7:
        if spread or status == "locally advanced":
            return "IVb"
        return "IIb" if status == "early" else "IIIb"
    if spread:
        return "IVa"
    if status == "early":
        return "I"
    if status == "intermediate":
        return "IIb" if invasion else "IIa"
    return "IIIb" if invasion else "IIIa"


#: ITA.LI.CA prognostic-score points (Farinati et al., PLoS Med 2016;13:e1002006, Table 2).
ITALICA_STAGE_POINTS = {"0": 0, "A": 1, "B1": 2, "B2": 3, "B3": 4, "C": 6}
ITALICA_AFP_LIMIT = 1000.0  # ng/mL: one point above


def italica_stage(record: Mapping) -> str:
    """ITA.LI.CA tumour stage (Farinati et al., PLoS Med 2016, Table 1): 0 — single ≤ 2 cm; A —
    single 2–5 cm, or 2–3 nodules ≤ 3 cm; B1 — single > 5 cm, or 2–3 nodules 3–5 cm; B2 — 2–3
    nodules > 5 cm, or > 3 nodules ≤ 5 cm; B3 — > 3 nodules > 5 cm, or intrahepatic vascular
    invasion; C — extrahepatic spread."""
    number, size, invasion, spread = _tumour(record)
    if spread:
        return "C"
    if invasion:
        return "B3"
    if number == 1:
        return "0" if size <= 2 else "A" if size <= 5 else "B1"
    if number <= 3:
        return "A" if size <= 3 else "B1" if size <= 5 else "B2"
    return "B2" if size <= 5 else "B3"


def _italica_afp_points(record: Mapping) -> int:
    """1 when AFP > 1000 ng/mL: from ``afp_ng_ml``, or 0 when ``afp_high`` (≥ 200 ng/mL) is 0; a high
    AFP without its value leaves the score not computable."""
    afp = _number(record.get("afp_ng_ml"))
    if math.isfinite(afp):
        return int(afp > ITALICA_AFP_LIMIT)
    (afp_high,) = _values(record, "afp_high")
    if afp_high:
        raise _Missing(["afp_ng_ml"])
    return 0


def italica(record: Mapping) -> Stage:
    """ITA.LI.CA (Farinati et al., PLoS Med 2016;13:e1002006): the tumour stage
    (:func:`italica_stage`) and the integrated prognostic score, 0–13 — stage points
    (:data:`ITALICA_STAGE_POINTS`) + ECOG (0: 0, 1–2: 1, 3–4: 3) + Child–Pugh score (5: 0, 6: 1,
    7: 2, ≥ 8: 3) + AFP > 1000 ng/mL (1). The score, not the tumour stage, is what ranks patients;
    without it (a high AFP of unknown value) the stage is still given."""
    stage = italica_stage(record)
    ecog, child_pugh = _values(record, "ecog", "child_pugh_score")
    try:
        afp_points = _italica_afp_points(record)
    except _Missing as missing:
        return Stage("ITA.LI.CA", stage, missing.fields)
    ecog_points = 0 if ecog == 0 else 1 if ecog <= 2 else 3
    child_pugh_points = min(int(child_pugh) - 5, 3)
    return Stage("ITA.LI.CA", stage, score=ITALICA_STAGE_POINTS[stage] + ecog_points + child_pugh_points + afp_points)


def muicc(record: Mapping) -> str:
    """Modified UICC (5th) / Liver Cancer Study Group of Japan staging (Kinoshita et al., World J
    Hepatol 2015;7:406–424, Table 6): T by how many of three criteria hold — single tumour, ≤ 2 cm,
    no vascular or bile-duct invasion — T1 all three, T2 two, T3 one, T4 none; stage I T1, II T2,
    III T3, IVA T4 (or N1), IVB M1. Bile-duct and microvascular invasion unknown: read as absent."""
    number, size, invasion, spread = _tumour(record)
    if spread:
        return "IVB"
    met = (number == 1) + (size <= 2) + (not invasion)
    return {3: "I", 2: "II", 1: "III", 0: "IVA"}[met]


SYSTEMS: dict[str, Callable[[Mapping], Stage]] = {
    "AJCC": _staged("AJCC", ajcc), "BCLC": _staged("BCLC", bclc), "CNLC": _staged("CNLC", cnlc),
    "HKLC": _staged("HKLC", hklc), "ITA.LI.CA": _staged("ITA.LI.CA", italica), "mUICC": _staged("mUICC", muicc)}


def stage_patient(record: Mapping) -> dict[str, Stage]:
    """The patient's stage under each of the six systems."""
    return {name: stage(record) for name, stage in SYSTEMS.items()}


def staging_ordinals(records: pd.DataFrame) -> pd.DataFrame:
    """Each system's ordinal (:attr:`Stage.ordinal`) for every row of a clinical table, one column
    per system; NaN where a row cannot be staged."""
    rows = [{name: stage.ordinal for name, stage in stage_patient(record).items()}
            for record in records.to_dict(orient="records")]
    return pd.DataFrame(rows, columns=list(SYSTEMS), dtype=float)
