"""HEROVisionLib: the Slicer-independent engine of the HEROVision extension.

Layers (each uses only those before it; ``Testing/test_layers.py`` checks it): ground (``errors``,
``devices``, ``plots``) → ``io`` → ``ivim`` → ``transforms`` → ``models`` → ``stats`` → ``predict`` →
``train`` and ``evaluate`` → ``clinical`` (advice, report, cohort analyses) → ``slicer`` (the MRML
adapter) → ``cli``. ``phantom`` (beside ``ivim``) generates the synthetic cohort every layer is
tested on.
"""

from .errors import HEROVisionError, InputError

__version__ = "0.1.0"

__all__ = ["HEROVisionError", "InputError", "__version__"]
