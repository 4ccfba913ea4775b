"""The one exception type users see.

Every user mistake (a missing file, a wrong b-value count, an empty ROI, ...) raises
:class:`InputError` with a message that names the input and what is wrong, so the command line
and the Slicer panel can show it as it is, without a traceback.
"""


class HEROVisionError(Exception):
    """Base of every error HEROVision raises on purpose."""


class InputError(HEROVisionError, ValueError):
    """An input (file, image, ROI, table, option) is missing or unusable.

    ``source`` names the input (usually a file path) so that a batch can report which case and
    which file failed.
    """

    def __init__(self, source, problem):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):  # rebuilt from its two parts when it comes back from another process
        return type(self), (self.source, self.problem)


class Cancelled(HEROVisionError):
    """The user stopped a running prediction; nothing it would have made was kept."""
