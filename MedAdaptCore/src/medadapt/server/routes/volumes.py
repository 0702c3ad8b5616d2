"""Uploaded volumes:

- ``POST /v1/volumes?name=FILE.nii.gz``: the body is the image file, streamed to disk (a single self-contained
  NIfTI, NRRD or MHA file, its header declaring at most ``--max-voxels`` voxels; 413 over the upload limit or
  the storage quota, counting the token's other uploads in flight); returns the volume's ID, size, spacing.
- ``GET /v1/volumes``, ``DELETE /v1/volumes/{id}``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from medadapt.errors import InputError
from medadapt.server.context import MB, Context, Owner, ServerContext, delete_owned, owned_records, public
from medadapt.server.settings import Limits
from medadapt.server.store import Reservation, image_suffix, new_id

router = APIRouter()


@router.post("/v1/volumes", status_code=201)
async def upload(request: Request, who: Owner, ctx: Context, name: str = ""):
    suffix = image_suffix(name)
    declared = request.headers.get("content-length", "")
    reservation = ctx.quota.begin(who)
    if declared.isdigit() and not reservation.add(int(declared)):  # the whole upload reserved up front
        raise HTTPException(413, _too_large(int(declared), ctx.quota.room(who), ctx.limits))
    volume_id = new_id()
    staging = Path(tempfile.mkdtemp(dir=ctx.store.staging))
    target = staging / f"image{suffix}"
    try:
        received = await _receive(request, target, reservation, ctx, who)
        info = await run_in_threadpool(_describe, target, name, ctx.limits.max_voxels)
        record = {"id": volume_id, "owner": who, "name": Path(name).name[:200], "file": target.name,
                  "bytes": received, "created": time.time(), **info}

        def store_it():
            staging.replace(ctx.store.folder("volumes", volume_id))
            ctx.store.save("volumes", record)
        if not reservation.commit(store_it):
            raise HTTPException(413, _too_large(received, ctx.quota.room(who), ctx.limits))
    finally:
        reservation.release()
        shutil.rmtree(staging, ignore_errors=True)
    return public(record)


@router.get("/v1/volumes")
def volumes(who: Owner, ctx: Context):
    return owned_records(ctx, "volumes", who)


@router.delete("/v1/volumes/{volume_id:anytext}")
def delete_volume(volume_id: str, who: Owner, ctx: Context):
    return delete_owned(ctx, "volumes", volume_id, who, "volume ID")


async def _receive(request: Request, target: Path, reservation: Reservation, ctx: ServerContext, who: str) -> int:
    """Stream the request's body to ``target``, reserving each chunk before it is written (413 when the upload
    limit or the quota is passed); the bytes received, at least one."""
    received = 0
    with target.open("wb") as stream:
        async for chunk in request.stream():
            received += len(chunk)
            if received > reservation.bytes and not reservation.add(received - reservation.bytes):
                raise HTTPException(413, _too_large(received, ctx.quota.room(who), ctx.limits, at_least=True))
            stream.write(chunk)
    if not received:
        raise InputError("body: the upload is empty; send the image file as the request body")
    return received


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


def _too_large(size: int, room: int, limits: Limits, at_least: bool = False) -> str:
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
