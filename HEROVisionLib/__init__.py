"""HEROVisionLib: the Slicer-independent engine of the HEROVision extension.

Layers (each uses only those before it): ``io`` → ``ivim`` → ``models`` → ``predict`` →
``stats`` and ``train`` (training and evaluation) → ``treatment``, ``report`` and
``cohort_analysis`` (what clinicians read) → ``mrml`` and ``mrml_inputs`` (Slicer adapter) → ``cli``.
``phantom`` generates the synthetic cohort every layer is tested on; ``devices``, ``errors``,
``plots`` and ``dependencies`` serve them all.
"""

from .errors import HEROVisionError, InputError

__version__ = "0.1.0"

__all__ = ["HEROVisionError", "InputError", "__version__"]
