"""What each clinical value of the case table means, and the check that a value has that meaning.

The same rules apply wherever a value enters: a row of ``cohort.csv``, ``--clinical NAME=VALUE`` on
the command line, the Slicer panel's clinical field. A blank is *unknown* (a model that needs it says
so); a value that cannot mean what its column means (``age`` = "fifty", a flag of 2, a tumour of
1e300 cm) is an error naming where it came from, never a number passed on to a model. Columns this
table does not know (a site's own factors) must still be numbers when a nomogram reads them
(:func:`clinical_number`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from .numbers import plain_number

#: The two treatments (PHANTOM.md §2): the key of outputs and packages (``ta_risk_score``) → the
#: treatment as cohort.csv spells it. Every other place takes them from here.
ARMS = {"ta": "TA", "sr": "SR"}
TREATMENTS = tuple(ARMS.values())
ECHO_PATTERNS = ("hypo", "iso", "hyper")


@dataclass(frozen=True)
class Numeric:
    """A number in [low, high]; ``whole`` for counts and scores."""

    low: float
    high: float
    whole: bool = False
    unit: str = ""

    def check(self, text) -> float:
        number = clinical_number(text)
        if number is None:
            return None
        if self.whole and number != round(number):
            raise ValueError(f"{text!r} is not a whole number")
        if not self.low <= number <= self.high:
            span = f"{self.low:g}–{self.high:g}{' ' + self.unit if self.unit else ''}"
            raise ValueError(f"{text!r} is outside {span}")
        return number


@dataclass(frozen=True)
class Choice:
    """One of a few words."""

    words: tuple[str, ...]

    def check(self, text):
        if _blank(text):
            return None
        if str(text).strip() not in self.words:
            raise ValueError(f"{text!r} is not one of {', '.join(self.words)}")
        return str(text).strip()


FLAG = Numeric(0, 1, whole=True)

#: Column → its meaning. Ranges are what the value can mean in a patient, not the phantom's spread.
CLINICAL_FIELDS = {
    "age": Numeric(0, 120, unit="years"),
    "sex_male": FLAG, "cirrhosis": FLAG, "ctp_b": FLAG, "portal_hypertension": FLAG,
    "tumor_number": Numeric(1, 100, whole=True),
    "tumor_size_cm": Numeric(0.5, 30, unit="cm"),
    "perivascular": FLAG, "subcapsular": FLAG,
    "echo": Choice(ECHO_PATTERNS),
    "afp_high": FLAG, "afp_ng_ml": Numeric(0, 1e7, unit="ng/mL"), "alt_high": FLAG, "ast_high": FLAG, "inr_high": FLAG, "cea_high": FLAG,
    "ca19_9_high": FLAG, "pni_low": FLAG,
    "ecog": Numeric(0, 4, whole=True),
    "child_pugh_score": Numeric(5, 15, whole=True),
    "vascular_invasion": FLAG, "extrahepatic_spread": FLAG,
    "treatment": Choice(TREATMENTS),
    "pfs_months": Numeric(0, 1200, unit="months"),
    "pfs_event": FLAG, "er_2y": FLAG,
}


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def clinical_number(value) -> float | None:
    """A clinical value as a finite number; None when blank (unknown). Text that is not a finite
    number raises ``ValueError`` with the value quoted."""
    if _blank(value):
        return None
    try:
        number = plain_number(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def check_clinical_record(record: dict, source, where: str = "") -> None:
    """Check every known column of ``record`` against its meaning (blanks pass: unknown). ``where``
    (e.g. "row 3 (case A0003)") goes before the column in the message, which names ``source``."""
    for name, value in record.items():
        field = CLINICAL_FIELDS.get(name)
        if field is None:
            continue
        try:
            field.check(value)
        except ValueError as error:
            raise InputError(source, f"{where + ', ' if where else ''}column {name}: {error}") from None
