"""Running core work off the GUI thread, with progress reports and cancellation.

Thread, not process: PyTorch releases the GIL inside its kernels, so a worker thread keeps Slicer's GUI
responsive while sharing the already loaded model, its cached slice embeddings and the input arrays without
pickling gigabytes or re-importing torch (seconds) in a child process; a process would also need its own CUDA
context. MRML is not thread-safe, so the worker never touches the scene: it only computes, and every callback
(progress and the final result) is delivered on the main thread by :meth:`ThreadRunner.poll`, which the widget
calls from a timer. Cancellation is cooperative (a ``threading.Event`` the core checks between steps); the job
is reported cancelled at once and whatever the worker still returns is discarded, so the scene stays unchanged.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from .core_types import CancelledError, Progress

Work = Callable[[Callable[[Progress], None], threading.Event], Any]
"""A job body: ``work(progress, cancel) -> result``; it must not touch the MRML scene."""


class Job:
    """One run: its cancel event, state (``running``, ``done``, ``failed``, ``cancelled``), result or error."""

    def __init__(self, on_progress: Callable[[Progress], None] | None, on_done: Callable[["Job"], None] | None):
        self.cancel_event = threading.Event()
        self.state = "running"
        self.result: Any = None
        self.error: BaseException | None = None
        self._on_progress = on_progress
        self._on_done = on_done

    def cancel(self) -> None:
        """Ask the work to stop; the job counts as cancelled from now on and its result will be dropped."""
        self.cancel_event.set()

    def _progress(self, event: Progress) -> None:
        if self._on_progress is not None and not self.cancel_event.is_set():
            self._on_progress(event)

    def _finish(self, result: Any, error: BaseException | None) -> None:
        if self.cancel_event.is_set():
            self.state, self.error = "cancelled", CancelledError("cancelled by the user")
        elif error is not None:
            self.state, self.error = ("cancelled" if isinstance(error, CancelledError) else "failed"), error
        else:
            self.state, self.result = "done", result
        if self._on_done is not None:
            self._on_done(self)


def _execute(work: Work, progress, cancel: threading.Event) -> tuple[Any, BaseException | None]:
    try:
        return work(progress, cancel), None
    except Exception as exc:  # reported to the user through the job, never raised into the GUI loop
        return None, exc


class SynchronousRunner:
    """Runs work inline on the calling thread (tests, headless batch); callbacks fire as they happen.

    ``current`` is the job being run, so a progress callback can cancel it.
    """

    def __init__(self):
        self.current: Job | None = None

    def start(self, work: Work, on_progress=None, on_done=None) -> Job:
        """Run ``work`` to completion and return its finished :class:`Job`."""
        job = self.current = Job(on_progress, on_done)
        result, error = _execute(work, job._progress, job.cancel_event)
        job._finish(result, error)
        return job

    def poll(self) -> bool:
        """Nothing is ever pending; returns ``False``."""
        return False


class ThreadRunner:
    """Runs work in a daemon thread; :meth:`poll` (main thread) delivers progress and completion callbacks."""

    def __init__(self):
        self._events: queue.Queue = queue.Queue()
        self._running: list[Job] = []
        self.current: Job | None = None

    def start(self, work: Work, on_progress=None, on_done=None) -> Job:
        """Start ``work`` in a worker thread and return its running :class:`Job` at once."""
        job = self.current = Job(on_progress, on_done)
        self._running.append(job)
        thread = threading.Thread(target=self._work, args=(job, work), name="MedAdapt job", daemon=True)
        thread.start()
        return job

    def _work(self, job: Job, work: Work) -> None:
        result, error = _execute(work, lambda event: self._events.put((job, event)), job.cancel_event)
        self._events.put((job, (result, error)))

    def poll(self) -> bool:
        """Deliver queued callbacks; a cancelled job finishes here without waiting for its thread.

        Returns ``True`` while a job is still running.
        """
        for job in [j for j in self._running if j.cancel_event.is_set()]:
            self._running.remove(job)
            job._finish(None, None)
        while True:
            try:
                job, event = self._events.get_nowait()
            except queue.Empty:
                break
            if job not in self._running:
                continue
            if isinstance(event, Progress):
                job._progress(event)
            else:
                self._running.remove(job)
                job._finish(*event)
        return bool(self._running)
