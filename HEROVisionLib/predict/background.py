"""A prediction (or a cohort run) that runs in a worker thread, so an interactive caller (Slicer's
panel) keeps its event loop turning: it polls :meth:`BackgroundPrediction.done`, shows :attr:`stage` and
:attr:`fraction`, and may :meth:`cancel`. torch releases the interpreter lock while it computes, so
the caller stays responsive. Only plain data crosses threads: the case was read from the scene
before, and the caller adds the result to the scene after, on its own thread.

Cancelling takes effect when the next stage begins (:data:`~HEROVisionLib.predict.case_prediction.STAGES`);
the result is then discarded and :meth:`result` raises :class:`~HEROVisionLib.errors.Cancelled`. A
cohort run is cancelled between cases, keeping the finished ones.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import Cancelled
from .batch import predict_cohort
from .case_prediction import predict_case
from .result import PredictionResult


class BackgroundPrediction:
    """``predict_case(case, models, device)`` started at construction on a worker thread, then
    ``then(case, result)`` there too when given (the treatment advice: the prediction layer does not
    know it), kept as :attr:`follow_up`."""

    def __init__(self, case, models, device="auto", then=None):
        self.case, self.models = case, models  # what a report or advice needs afterwards
        self.stage = "starting"
        self.fraction = 0.0
        self.follow_up = None
        self._cancel = threading.Event()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herovision-predict")
        self._future: Future = executor.submit(self._run, device, then)
        executor.shutdown(wait=False)

    def _run(self, device, then) -> PredictionResult:
        result = predict_case(self.case, self.models, device, True, self._progress)
        if then is not None:
            self._progress("advice", 0.95)
            self.follow_up = then(self.case, result)
        return result

    def _progress(self, stage: str, fraction: float) -> None:
        if self._cancel.is_set():
            raise Cancelled("prediction cancelled")
        self.stage, self.fraction = stage, fraction

    def cancel(self) -> None:
        """Ask the prediction to stop at the start of its next stage."""
        self._cancel.set()

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> PredictionResult:
        """The result (waiting up to ``timeout`` s); raises what the prediction raised, or
        :class:`Cancelled` when it was cancelled, even if it had got to the end."""
        result = self._future.result(timeout)
        if self._cancel.is_set():
            raise Cancelled("prediction cancelled")
        self.stage, self.fraction = "done", 1.0
        return result


class BackgroundCohort:
    """``predict_cohort(cohort, models, out, **options)`` started at construction on a worker thread;
    :attr:`done_cases` of :attr:`total` finished, the last one :attr:`case_id`."""

    def __init__(self, cohort, models, out, **options):
        self.done_cases, self.total, self.case_id = 0, None, ""
        self._cancel = threading.Event()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herovision-cohort")
        self._future: Future = executor.submit(predict_cohort, cohort, models, out, progress=False,
                                               on_case=self._case_done, cancel=self._cancel, **options)
        executor.shutdown(wait=False)

    def _case_done(self, done: int, total: int, case_id: str) -> None:
        self.done_cases, self.total, self.case_id = done, total, case_id

    @property
    def fraction(self) -> float:
        return self.done_cases / self.total if self.total else 0.0

    def cancel(self) -> None:
        """Stop before the next case (the one running finishes)."""
        self._cancel.set()

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None):
        """The cohort's table; raises what the run raised (:class:`Cancelled` when cancelled)."""
        return self._future.result(timeout)
