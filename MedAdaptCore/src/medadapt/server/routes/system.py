"""The server itself:

- ``GET /v1/health``: server version and devices (no token needed).
- ``GET /v1/whoami``: the token's name, limits and usage ("Test connection").
"""

from __future__ import annotations

from fastapi import APIRouter

from medadapt import __version__
from medadapt.server.context import MB, Context, Owner

router = APIRouter()


@router.get("/v1/health")
def health(ctx: Context):
    return {"status": "ok", "version": __version__, "devices": ctx.settings.devices}


@router.get("/v1/whoami")
def whoami(name: Owner, ctx: Context):
    limits = ctx.limits
    return {"name": name, "version": __version__, "devices": ctx.settings.devices,
            "limits": {"max_upload_mb": limits.max_upload_mb, "max_jobs": limits.max_jobs,
                       "max_storage_mb": limits.max_storage_mb, "max_voxels": limits.max_voxels},
            "usage": {"storage_mb": round(ctx.store.used_bytes(name) / MB, 1), "active_jobs": ctx.jobs.active(name)}}
