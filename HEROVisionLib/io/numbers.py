"""Numbers as text files and tables write them. Python's ``float`` also reads ``1_000`` (as 1000) and
digits of other scripts; in a value typed into a table or a ``.bval`` file those are mistakes,
not numbers, and are refused as such wherever numbers are read from text."""

from __future__ import annotations

import re

#: ASCII digits, an optional sign, point and exponent — and the words for the non-finite numbers,
#: so that those are refused for what they are by the caller's finiteness check.
_DECIMAL = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def plain_number(text: str) -> float:
    """``text`` (surrounding blanks allowed) as a float; ``ValueError`` unless written as a number."""
    if not _DECIMAL.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a number")
    return float(text)


def plain_numbers(text: str) -> tuple[float, ...]:
    """Whitespace-separated numbers (any line layout); ``ValueError`` at the first that is not one."""
    return tuple(plain_number(token) for token in text.split())
