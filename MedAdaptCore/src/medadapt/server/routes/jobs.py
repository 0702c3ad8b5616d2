"""Jobs and their results:

- ``POST /v1/jobs``: ``{"kind": "adapt" | "predict" | "propagate" | "slice", "image": ID, "exemplars": ID,
  "points": {points JSON}, "options": {medadapt adapt options}, "adapter": ID, "save_adapter": bool,
  "index": N, "axis": 0}``; 429 over the job quota.
- ``GET /v1/jobs``, ``GET /v1/jobs/{id}?wait=SECONDS`` (state and live progress; ``wait`` long-polls until it
  finishes), ``POST /v1/jobs/{id}/cancel``, ``GET /v1/jobs/{id}/result`` (the label map, NIfTI),
  ``DELETE /v1/jobs/{id}``.

``/v1/jobs/{id}/result`` is declared before ``/v1/jobs/{id}``, whose ID would take the rest of the path.
"""

from __future__ import annotations

from dataclasses import fields

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from medadapt.errors import InputError
from medadapt.server.context import Context, Owner
from medadapt.server.jobs import FINISHED
from medadapt.server.store import check_id
from medadapt.server.work import RESULT, JobRequest, check_request

LONGEST_WAIT = 30.0
"""Seconds a ``wait`` may long-poll at the most."""

router = APIRouter()


@router.post("/v1/jobs", status_code=201)
async def submit(request: Request, who: Owner, ctx: Context):
    try:
        body = await request.json()
    except ValueError as exc:
        raise InputError("body: expected a JSON object describing the job") from exc
    job = _request_of(body)
    check_request(job, ctx.settings.models)
    given = [(kind, field, getattr(job, field)) for kind, field in
             (("volumes", "image"), ("volumes", "exemplars"), ("adapters", "adapter")) if getattr(job, field)]
    for kind, field, value in given:  # every ID checked (400) before any is looked up (404)
        check_id(value, field)
    for kind, field, value in given:
        ctx.store.load(kind, value, who)
    if ctx.jobs.active(who) >= ctx.limits.max_jobs:
        raise HTTPException(429, f"this token already has {ctx.limits.max_jobs} jobs queued or running (the "
                            "server's --max-jobs); wait for one to finish or cancel one")
    return ctx.jobs.view(ctx.jobs.submit(who, job))


@router.get("/v1/jobs")
def list_jobs(who: Owner, ctx: Context):
    return [ctx.jobs.view(r) for r in ctx.store.records("jobs", who)]


@router.get("/v1/jobs/{job_id:anytext}/result")
def result(job_id: str, who: Owner, ctx: Context):
    record = ctx.store.load("jobs", check_id(job_id, "job ID"), who)
    if record["state"] != "done":
        raise HTTPException(409, f"job {job_id} is {record['state']}: no result"
                            + (f" ({record['error']})" if record.get("error") else ""))
    return FileResponse(ctx.store.folder("jobs", job_id) / RESULT, media_type="application/gzip",
                        filename=f"{job_id}.nii.gz")


@router.get("/v1/jobs/{job_id:anytext}")
def job_state(job_id: str, who: Owner, ctx: Context, wait: float = 0.0):
    check_id(job_id, "job ID")
    return ctx.jobs.view(ctx.jobs.wait(job_id, who, min(wait, LONGEST_WAIT)))


@router.post("/v1/jobs/{job_id:anytext}/cancel")
def cancel(job_id: str, who: Owner, ctx: Context):
    return ctx.jobs.view(ctx.jobs.cancel(check_id(job_id, "job ID"), who))


@router.delete("/v1/jobs/{job_id:anytext}")
def delete_job(job_id: str, who: Owner, ctx: Context):
    record = ctx.store.load("jobs", check_id(job_id, "job ID"), who)
    if record["state"] not in FINISHED:
        raise HTTPException(409, f"job {job_id} is {record['state']}; cancel it first")
    ctx.store.delete("jobs", job_id, who)
    return {"deleted": job_id}


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
