"""Tests of MedAdaptSlicerLib.jobs: both runners, progress delivery and prompt cancellation."""

import threading
import time

import slicer_fixtures  # noqa: F401  (puts MedAdaptSlicer on sys.path)
from MedAdaptSlicerLib.jobs import SynchronousRunner, ThreadRunner
from medadapt.progress import Progress, check_cancel


def counting_work(steps, delay=0.0):
    def work(progress, cancel):
        for step in range(steps):
            check_cancel(cancel)
            time.sleep(delay)
            progress(Progress("adapt", step + 1, steps, loss=1.0 / (step + 1), eta_s=delay * (steps - step)))
        return "finished"
    return work


def test_synchronous_runner_reports_progress_and_result():
    events, done = [], []
    job = SynchronousRunner().start(counting_work(3), events.append, done.append)
    assert job.state == "done" and job.result == "finished" and done == [job]
    assert [e.step for e in events] == [1, 2, 3] and events[-1].loss == 1 / 3


def test_synchronous_runner_cancel_from_progress():
    runner = SynchronousRunner()
    job = runner.start(counting_work(5), lambda event: runner.current.cancel())
    assert job.state == "cancelled" and job.result is None


def test_thread_runner_delivers_on_poll_and_failures_are_reported():
    runner = ThreadRunner()
    events, done = [], []
    job = runner.start(counting_work(3), events.append, done.append)
    deadline = time.monotonic() + 5
    while runner.poll() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.state == "done" and job.result == "finished" and len(events) == 3 and done == [job]

    def broken(progress, cancel):
        raise ValueError("bad input in field X")
    job = runner.start(broken)
    while runner.poll():
        time.sleep(0.01)
    assert job.state == "failed" and "field X" in str(job.error)


def test_thread_runner_cancel_is_reported_within_a_second():
    runner = ThreadRunner()
    release = threading.Event()

    def stubborn(progress, cancel):
        release.wait(10)  # a long core step that does not look at the cancel flag
        return "late result"
    done = []
    job = runner.start(stubborn, None, done.append)
    started = time.monotonic()
    job.cancel()
    while runner.poll():
        time.sleep(0.01)
    assert time.monotonic() - started < 1.0
    assert job.state == "cancelled" and job.result is None and done == [job]
    release.set()
    time.sleep(0.05)
    assert not runner.poll() and job.result is None
