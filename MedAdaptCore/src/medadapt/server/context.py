"""What every route of ``medadapt serve`` shares, made once by :func:`medadapt.server.app.create_app` and kept on
``app.state.context``: the :class:`ServerContext`, the dependencies that hand it and the token's name to a route
(:data:`Context`, :data:`Owner`), and the ``anytext`` path convertor of the routes' IDs."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.convertors import Convertor, register_url_convertor

from medadapt.server.jobs import JobQueue
from medadapt.server.settings import Limits, ServerSettings
from medadapt.server.store import Store, UploadQuota, check_id

MB = 1024 * 1024


class AnyText(Convertor):
    """A path parameter that takes the rest of the path as it is (slashes, dots and newlines too), so that
    :func:`~medadapt.server.store.check_id` answers every malformed ID with 400 instead of the router with 404."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", AnyText())


@dataclass(frozen=True)
class ServerContext:
    """The server's state: its settings, the store over ``settings.data``, the job queue (one worker per device)
    and the upload quota."""

    settings: ServerSettings
    store: Store
    jobs: JobQueue
    quota: UploadQuota

    @classmethod
    def of(cls, settings: ServerSettings) -> ServerContext:
        """The state of a server started with ``settings``."""
        store = Store(settings.data)
        limits = settings.limits
        return cls(settings, store, JobQueue(store, settings.devices, settings.cached_volumes, settings.models),
                   UploadQuota(store, limits.max_upload_mb * MB, limits.max_storage_mb * MB))

    @property
    def limits(self) -> Limits:
        """The per-token quotas and the upload limit."""
        return self.settings.limits


def context(request: Request) -> ServerContext:
    """The :class:`ServerContext` of the app serving ``request``."""
    return request.app.state.context


def owner(request: Request) -> str:
    """The name of the request's bearer token (``local`` when the server has no tokens); 401 without a valid one."""
    tokens = context(request).settings.tokens
    if not tokens:
        return "local"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        for known, name in tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return name
    raise HTTPException(401, "a valid bearer token is needed (Authorization: Bearer TOKEN)",
                        headers={"WWW-Authenticate": "Bearer"})


Context = Annotated[ServerContext, Depends(context)]
Owner = Annotated[str, Depends(owner)]


def public(record: dict) -> dict:
    """A volume's or adapter's record as its owner sees it (without the owner and the file name)."""
    return {k: v for k, v in record.items() if k not in ("owner", "file")}


def owned_records(ctx: ServerContext, kind: str, who: str) -> list[dict]:
    """The body of a listing route: ``who``'s records of ``kind`` (``volumes``, ``adapters``) as they see them
    (:func:`public`), oldest first."""
    return [public(r) for r in ctx.store.records(kind, who)]


def delete_owned(ctx: ServerContext, kind: str, item_id: str, who: str, what: str) -> dict:
    """The body of a DELETE route: removes ``who``'s item ``item_id`` of ``kind`` (:class:`InputError` naming
    ``what``, e.g. "volume ID", for a malformed ID; :class:`LookupError` when not theirs) and says so."""
    ctx.store.delete(kind, check_id(item_id, what), who)
    return {"deleted": item_id}
