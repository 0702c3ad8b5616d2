"""The HTTP API of ``medadapt serve`` (FastAPI): :func:`create_app` builds the server's state and includes one
router a resource; :mod:`medadapt.server.routes` lists the routes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from medadapt import __version__
from medadapt.errors import InputError
from medadapt.server.context import ServerContext
from medadapt.server.routes import adapters, jobs, system, volumes
from medadapt.server.settings import ServerSettings


def create_app(settings: ServerSettings) -> FastAPI:
    """The API over ``settings.data`` with one worker per device of ``settings.devices``."""
    app = FastAPI(title="MedAdapt server", version=__version__)
    app.state.context = ServerContext.of(settings)
    app.add_exception_handler(InputError, _bad_input)
    app.add_exception_handler(LookupError, _not_found)
    for routes in (system, volumes, jobs, adapters):
        app.include_router(routes.router)
    return app


def _bad_input(_request, exc: InputError) -> JSONResponse:
    """400 with the :class:`InputError`'s message, which names the field."""
    return JSONResponse({"detail": str(exc)}, status_code=400)


def _not_found(_request, exc: LookupError) -> JSONResponse:
    """404 for an absent ID or another token's (without the quotes a ``KeyError`` puts around its message)."""
    return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)
