"""CEUS phases: which frames of a contrast-enhanced cine are the arterial, portal and late phase,
chosen by acquisition time (``ceus.times``). Layer: io — a reading of the acquisition, used by
prediction, training, reports and the Slicer adapter alike."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: CEUS phases: (window start s, window end s, preferred time s), windows inclusive. They follow
#: CEUS LI-RADS (arterial 10–45 s, portal venous to 2 min, late after 2 min); the frame nearest the
#: preferred time inside the window is used.
CEUS_PHASES = {"arterial": (10.0, 45.0, 30.0), "portal": (45.0, 120.0, 60.0), "late": (120.0, 360.0, 180.0)}


def select_phase_frames(times_s, phases=CEUS_PHASES, source="CEUS") -> dict[str, int]:
    """Frame index per phase: the frame nearest the phase's preferred time inside its window."""
    times = np.asarray(times_s, dtype=float)
    chosen = {}
    for phase, (start, end, preferred) in phases.items():
        candidates = np.flatnonzero((times >= start) & (times <= end))
        if len(candidates) == 0:
            raise InputError(source, f"no frame in the {phase} phase ({start:g}–{end:g} s); "
                                     f"frame times are {times.tolist()} s")
        chosen[phase] = int(candidates[np.argmin(np.abs(times[candidates] - preferred))])
    return chosen
