"""The job queue: one worker thread per device takes the oldest queued job; progress lives in memory, every
change of state is written to the job's record at once.

States: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled`` (a queued job can be cancelled at
once). When the server starts, a job it finds ``running`` was cut short by a stop: it is marked ``failed`` (its
partial files removed) and a ``queued`` one is queued again, so a restart loses no finished result and runs
every accepted job.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

from medadapt.errors import CancelledError, InputError
from medadapt.progress import Progress
from medadapt.server.store import Store, new_id
from medadapt.server.work import RESULT, DeviceWorkspace, JobFiles, JobRequest, run_job

FINISHED = ("done", "failed", "cancelled")


class JobQueue:
    """Accepts jobs, runs them on the devices' workers, reports and cancels them; ``models`` is the server's
    ``--models`` folder of base models a job may name."""

    def __init__(self, store: Store, devices: list[str], cached_volumes: int = 4, models: Path | None = None):
        self.store = store
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._cancel: dict[str, threading.Event] = {}
        self._progress: dict[str, Progress] = {}
        self._recover()
        self._workers = [threading.Thread(target=self._work, args=(DeviceWorkspace(d, cached_volumes, models),),
                                          name=f"medadapt-worker-{d}", daemon=True) for d in devices]
        for worker in self._workers:
            worker.start()

    def _recover(self) -> None:
        for record in self.store.records("jobs"):
            if record["state"] == "running":
                shutil.rmtree(self.store.folder("jobs", record["id"]), ignore_errors=True)
                self._set(record, state="failed", error="the server stopped while this job ran; submit it again",
                          finished=time.time())
            elif record["state"] == "queued":
                self._cancel[record["id"]] = threading.Event()
                self._queue.put(record["id"])

    def _set(self, record: dict, **changes) -> dict:
        with self._changed:
            record.update(changes)
            self.store.save("jobs", record)
            self._changed.notify_all()
        return record

    def submit(self, owner: str, request: JobRequest) -> dict:
        """Queue a checked request; returns its record (``adapter``: the ID the kept adapter will have)."""
        record = {"id": new_id(), "owner": owner, "kind": request.kind, "state": "queued", "created": time.time(),
                  "request": asdict(request), "adapter": new_id() if request.save_adapter else None, "error": "",
                  "facts": {}}
        with self._changed:
            self._cancel[record["id"]] = threading.Event()
            self.store.save("jobs", record)
        self._queue.put(record["id"])
        return record

    def active(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running."""
        return sum(1 for r in self.store.records("jobs", owner) if r["state"] not in FINISHED)

    def view(self, record: dict) -> dict:
        """The record as the API shows it, with live progress while running."""
        shown = {k: v for k, v in record.items() if k != "owner"}
        event = self._progress.get(record["id"]) if record["state"] == "running" else None
        shown["progress"] = asdict(event) if event is not None else None
        return shown

    def wait(self, job_id: str, owner: str, seconds: float) -> dict:
        """The job's record once it has finished, or after ``seconds`` (long polling)."""
        deadline = time.monotonic() + max(0.0, seconds)
        with self._changed:
            while True:
                record = self.store.load("jobs", job_id, owner)
                left = deadline - time.monotonic()
                if record["state"] in FINISHED or left <= 0:
                    return record
                self._changed.wait(min(left, 1.0))

    def cancel(self, job_id: str, owner: str) -> dict:
        """Stop a queued or running job; its result is never written. A finished job is left as it is."""
        with self._changed:
            record = self.store.load("jobs", job_id, owner)
            if record["state"] in FINISHED:
                return record
            self._cancel.setdefault(job_id, threading.Event()).set()
            if record["state"] == "queued":
                record.update(state="cancelled", finished=time.time(), error="cancelled by the user")
                self.store.save("jobs", record)
                self._changed.notify_all()
        return record

    def _work(self, workspace: DeviceWorkspace) -> None:
        while True:
            job_id = self._queue.get()
            try:
                record = self.store.load("jobs", job_id)
            except LookupError:  # deleted while queued
                continue
            if record["state"] != "queued":
                continue
            self._run(record, workspace)

    def _run(self, record: dict, workspace: DeviceWorkspace) -> None:
        job_id = record["id"]
        cancel = self._cancel.setdefault(job_id, threading.Event())
        self._set(record, state="running", started=time.time(), device=workspace.device)
        folder = self.store.folder("jobs", job_id)
        folder.mkdir(exist_ok=True)
        keep = None
        try:
            request = JobRequest(**record["request"])
            files = self._files(request, record, folder)
            keep = files.keep_adapter
            facts = run_job(request, files, workspace, lambda event: self._progress.__setitem__(job_id, event),
                            cancel)
            if cancel.is_set():
                raise CancelledError("cancelled by the user")
            if keep is not None:
                self.store.save("adapters", {"id": record["adapter"], "owner": record["owner"],
                                             "job": job_id, "created": time.time(),
                                             "method": request.options.get("method", "lora")})
            self._set(record, state="done", finished=time.time(), facts=facts, result=RESULT)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported through the job record
            shutil.rmtree(folder, ignore_errors=True)
            if keep is not None:
                shutil.rmtree(keep, ignore_errors=True)
            cancelled = isinstance(exc, CancelledError) or cancel.is_set()
            message = "cancelled by the user" if cancelled else _message(exc)
            self._set(record, state="cancelled" if cancelled else "failed", finished=time.time(), error=message)
        finally:
            self._progress.pop(job_id, None)
            self._cancel.pop(job_id, None)

    def _files(self, request: JobRequest, record: dict, folder) -> JobFiles:
        volume = self.store.load("volumes", request.image, record["owner"])
        exemplars = (self.store.load("volumes", request.exemplars, record["owner"]) if request.exemplars else None)
        adapter = None
        if request.adapter:
            self.store.load("adapters", request.adapter, record["owner"])
            adapter = self.store.folder("adapters", request.adapter)
        keep = None
        if request.save_adapter:
            keep = self.store.folder("adapters", record["adapter"])
        return JobFiles(self.store.folder("volumes", volume["id"]) / volume["file"],
                        self.store.folder("volumes", exemplars["id"]) / exemplars["file"] if exemplars else None,
                        adapter, folder / RESULT, keep)


def _message(exc: BaseException) -> str:
    """One line for the job record: the input error as it is, else the failure's type and first line."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, InputError):
        return text
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return f"out of memory on the server ({text or 'host RAM'}); try a smaller crop or fewer synthetic pairs"
    if isinstance(exc, LookupError):
        return f"{text} (deleted while the job waited?)"
    return f"internal error: {type(exc).__name__}: {text}"
