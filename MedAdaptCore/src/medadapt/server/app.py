"""The HTTP API of ``medadapt serve`` (FastAPI). Every route but ``/v1/health`` needs ``Authorization: Bearer
<token>`` when the server has tokens; a token sees only what it uploaded or made.

Routes (JSON unless said otherwise; errors are ``{"detail": message}`` naming the field):

- ``GET /v1/health``: server version and devices (no token needed).
- ``GET /v1/whoami``: the token's name, limits and usage ("Test connection").
- ``POST /v1/volumes?name=FILE.nii.gz``: the body is the image file, streamed to disk (a single self-contained
  NIfTI, NRRD or MHA file, its header declaring at most ``--max-voxels`` voxels; 413 over the upload limit or
  the storage quota, counting the token's other uploads in flight); returns the volume's ID, size, spacing.
- ``GET /v1/volumes``, ``DELETE /v1/volumes/{id}``.
- ``POST /v1/jobs``: ``{"kind": "adapt" | "predict" | "propagate" | "slice", "image": ID, "exemplars": ID,
  "points": {points JSON}, "options": {medadapt adapt options}, "adapter": ID, "save_adapter": bool,
  "index": N, "axis": 0}``; 429 over the job quota.
- ``GET /v1/jobs``, ``GET /v1/jobs/{id}?wait=SECONDS`` (state and live progress; ``wait`` long-polls until it
  finishes), ``POST /v1/jobs/{id}/cancel``, ``GET /v1/jobs/{id}/result`` (the label map, NIfTI),
  ``DELETE /v1/jobs/{id}``.
- ``GET /v1/adapters``, ``GET /v1/adapters/{id}`` (the adapter folder as a zip), ``DELETE /v1/adapters/{id}``.

Whatever follows ``/v1/volumes/``, ``/v1/jobs/`` or ``/v1/adapters/`` reaches the route as the ID (slashes and
newlines included) and is refused there with 400 unless it is an ID the server could have made; an ID of
another token's answers 404, as an absent one does.
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from medadapt import __version__
from medadapt.errors import InputError
from medadapt.server.jobs import FINISHED, JobQueue
from medadapt.server.settings import ServerSettings
from medadapt.server.store import Store, UploadQuota, check_id, image_suffix, new_id
from medadapt.server.work import RESULT, JobRequest, check_request

MB = 1024 * 1024
LONGEST_WAIT = 30.0


class AnyText(Convertor):
    """A path parameter that takes the rest of the path as it is (slashes, dots and newlines too), so that
    :func:`check_id` answers every malformed ID with 400 instead of the router with 404."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", AnyText())


def create_app(settings: ServerSettings) -> FastAPI:
    """The API over ``settings.data`` with one worker per device of ``settings.devices``."""
    store = Store(settings.data)
    jobs = JobQueue(store, settings.devices, settings.cached_volumes, settings.models)
    limits = settings.limits
    quota = UploadQuota(store, limits.max_upload_mb * MB, limits.max_storage_mb * MB)
    app = FastAPI(title="MedAdapt server", version=__version__)
    app.state.jobs = jobs

    @app.exception_handler(InputError)
    def bad_input(_request, exc: InputError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(LookupError)
    def not_found(_request, exc: LookupError):
        return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)

    def owner(request: Request) -> str:
        if not settings.tokens:
            return "local"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            for known, name in settings.tokens.items():
                if hmac.compare_digest(known.encode(), token.strip().encode()):
                    return name
        raise HTTPException(401, "a valid bearer token is needed (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})

    def usage(name: str) -> dict:
        return {"storage_mb": round(store.used_bytes(name) / MB, 1), "active_jobs": jobs.active(name)}

    @app.get("/v1/health")
    def health():
        return {"status": "ok", "version": __version__, "devices": settings.devices}

    @app.get("/v1/whoami")
    def whoami(name: str = Depends(owner)):
        return {"name": name, "version": __version__, "devices": settings.devices,
                "limits": {"max_upload_mb": limits.max_upload_mb, "max_jobs": limits.max_jobs,
                           "max_storage_mb": limits.max_storage_mb, "max_voxels": limits.max_voxels},
                "usage": usage(name)}

    @app.post("/v1/volumes", status_code=201)
    async def upload(request: Request, name: str = "", who: str = Depends(owner)):
        suffix = image_suffix(name)
        declared = request.headers.get("content-length", "")
        reservation = quota.begin(who)
        if declared.isdigit() and not reservation.add(int(declared)):  # the whole upload reserved up front
            raise HTTPException(413, _too_large(int(declared), quota.room(who), limits))
        volume_id = new_id()
        staging = Path(tempfile.mkdtemp(dir=store.staging))
        target = staging / f"image{suffix}"
        try:
            received = 0
            with target.open("wb") as stream:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > reservation.bytes and not reservation.add(received - reservation.bytes):
                        raise HTTPException(413, _too_large(received, quota.room(who), limits, at_least=True))
                    stream.write(chunk)
            if not received:
                raise InputError("body: the upload is empty; send the image file as the request body")
            info = await run_in_threadpool(_describe, target, name, limits.max_voxels)
            record = {"id": volume_id, "owner": who, "name": Path(name).name[:200], "file": target.name,
                      "bytes": received, "created": time.time(), **info}

            def store_it():
                staging.replace(store.folder("volumes", volume_id))
                store.save("volumes", record)
            if not reservation.commit(store_it):
                raise HTTPException(413, _too_large(received, quota.room(who), limits))
        finally:
            reservation.release()
            shutil.rmtree(staging, ignore_errors=True)
        return _public(record)

    @app.get("/v1/volumes")
    def volumes(who: str = Depends(owner)):
        return [_public(r) for r in store.records("volumes", who)]

    @app.delete("/v1/volumes/{volume_id:anytext}")
    def delete_volume(volume_id: str, who: str = Depends(owner)):
        store.delete("volumes", check_id(volume_id, "volume ID"), who)
        return {"deleted": volume_id}

    @app.post("/v1/jobs", status_code=201)
    async def submit(request: Request, who: str = Depends(owner)):
        try:
            body = await request.json()
        except ValueError as exc:
            raise InputError("body: expected a JSON object describing the job") from exc
        job = _request_of(body)
        check_request(job, settings.models)
        given = [(kind, field, getattr(job, field)) for kind, field in
                 (("volumes", "image"), ("volumes", "exemplars"), ("adapters", "adapter")) if getattr(job, field)]
        for kind, field, value in given:  # every ID checked (400) before any is looked up (404)
            check_id(value, field)
        for kind, field, value in given:
            store.load(kind, value, who)
        if jobs.active(who) >= limits.max_jobs:
            raise HTTPException(429, f"this token already has {limits.max_jobs} jobs queued or running (the "
                                "server's --max-jobs); wait for one to finish or cancel one")
        return jobs.view(jobs.submit(who, job))

    @app.get("/v1/jobs")
    def list_jobs(who: str = Depends(owner)):
        return [jobs.view(r) for r in store.records("jobs", who)]

    @app.get("/v1/jobs/{job_id:anytext}/result")
    def result(job_id: str, who: str = Depends(owner)):
        record = store.load("jobs", check_id(job_id, "job ID"), who)
        if record["state"] != "done":
            raise HTTPException(409, f"job {job_id} is {record['state']}: no result"
                                + (f" ({record['error']})" if record.get("error") else ""))
        return FileResponse(store.folder("jobs", job_id) / RESULT, media_type="application/gzip",
                            filename=f"{job_id}.nii.gz")

    @app.get("/v1/jobs/{job_id:anytext}")
    def job_state(job_id: str, wait: float = 0.0, who: str = Depends(owner)):
        check_id(job_id, "job ID")
        return jobs.view(jobs.wait(job_id, who, min(wait, LONGEST_WAIT)))

    @app.post("/v1/jobs/{job_id:anytext}/cancel")
    def cancel(job_id: str, who: str = Depends(owner)):
        return jobs.view(jobs.cancel(check_id(job_id, "job ID"), who))

    @app.delete("/v1/jobs/{job_id:anytext}")
    def delete_job(job_id: str, who: str = Depends(owner)):
        record = store.load("jobs", check_id(job_id, "job ID"), who)
        if record["state"] not in FINISHED:
            raise HTTPException(409, f"job {job_id} is {record['state']}; cancel it first")
        store.delete("jobs", job_id, who)
        return {"deleted": job_id}

    @app.get("/v1/adapters")
    def adapters(who: str = Depends(owner)):
        return [_public(r) for r in store.records("adapters", who)]

    @app.get("/v1/adapters/{adapter_id:anytext}")
    def download_adapter(adapter_id: str, who: str = Depends(owner)):
        store.load("adapters", check_id(adapter_id, "adapter ID"), who)
        folder = Path(tempfile.mkdtemp(dir=store.staging))
        archive = shutil.make_archive(str(folder / adapter_id), "zip", store.folder("adapters", adapter_id))
        return FileResponse(archive, media_type="application/zip", filename=f"adapter-{adapter_id}.zip",
                            background=BackgroundTask(shutil.rmtree, folder, True))

    @app.delete("/v1/adapters/{adapter_id:anytext}")
    def delete_adapter(adapter_id: str, who: str = Depends(owner)):
        store.delete("adapters", check_id(adapter_id, "adapter ID"), who)
        return {"deleted": adapter_id}

    return app


def _describe(path: Path, name: str, max_voxels: int) -> dict:
    """Size, spacing and origin of an uploaded image, read in full so that a broken file is refused now: only
    from itself (a header naming another file is refused) and only when its header declares at most
    ``max_voxels`` voxels (checked before any voxel is read)."""
    from medadapt.io.volume import read_volume
    try:
        volume = read_volume(path, max_voxels=max_voxels)
    except InputError as exc:
        raise InputError(f"{name}: {str(exc).replace(str(path), 'the upload')}") from exc
    geometry = volume.geometry
    return {"size": list(geometry.size), "spacing": [round(float(v), 6) for v in geometry.spacing],
            "origin": [round(float(v), 6) for v in geometry.origin]}


def _request_of(body) -> JobRequest:
    """The :class:`JobRequest` of a submitted JSON body; :class:`InputError` naming an unknown field."""
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object describing the job")
    known = [f.name for f in fields(JobRequest)]
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise InputError(f"body: unknown field(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    if "kind" not in body or "image" not in body:
        raise InputError("body: 'kind' and 'image' (a volume ID) are needed")
    if body.get("points") is not None and not isinstance(body["points"], dict):
        raise InputError("points: expected the points JSON object ({\"points\": [...]})")
    return JobRequest(**body)


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("owner", "file")}


def _too_large(size: int, room: int, limits, at_least: bool = False) -> str:
    """The 413 message: the upload's size (``at_least``: what arrived before it was cut off) and the limits."""
    return (f"upload of {'more than ' if at_least else ''}{_amount(size)} refused: the limit is "
            f"{limits.max_upload_mb} MB per upload and {limits.max_storage_mb} MB stored per token "
            f"({_amount(max(room, 0))} left, counting uploads in flight); delete old volumes, results or adapters, "
            "or crop the image")


def _amount(size: int) -> str:
    """Bytes as a person reads them: ``512 bytes``, ``3.4 KB``, ``1.2 MB``, ``2.5 GB``."""
    if size < 1024:
        return f"{size} bytes"
    for unit, scale in (("KB", 1024), ("MB", MB), ("GB", 1024 * MB)):
        if size < 1024 * scale or unit == "GB":
            return f"{size / scale:.1f} {unit}"
