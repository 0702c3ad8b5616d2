"""Adapters saved by jobs (``save_adapter``):

- ``GET /v1/adapters``, ``GET /v1/adapters/{id}`` (the adapter folder as a zip), ``DELETE /v1/adapters/{id}``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from medadapt.server.context import Context, Owner, delete_owned, owned_records
from medadapt.server.store import check_id

router = APIRouter()


@router.get("/v1/adapters")
def adapters(who: Owner, ctx: Context):
    return owned_records(ctx, "adapters", who)


@router.get("/v1/adapters/{adapter_id:anytext}")
def download_adapter(adapter_id: str, who: Owner, ctx: Context):
    ctx.store.load("adapters", check_id(adapter_id, "adapter ID"), who)
    folder = Path(tempfile.mkdtemp(dir=ctx.store.staging))
    archive = shutil.make_archive(str(folder / adapter_id), "zip", ctx.store.folder("adapters", adapter_id))
    return FileResponse(archive, media_type="application/zip", filename=f"adapter-{adapter_id}.zip",
                        background=BackgroundTask(shutil.rmtree, folder, True))


@router.delete("/v1/adapters/{adapter_id:anytext}")
def delete_adapter(adapter_id: str, who: Owner, ctx: Context):
    return delete_owned(ctx, "adapters", adapter_id, who, "adapter ID")
