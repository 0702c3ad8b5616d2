"""``medadapt web``: the browser UI (docs/web.md). The core's command line finds this module through the
``medadapt.commands`` entry point of this package (``web``) and calls :func:`add_parser` and :func:`run`.

The app (:mod:`medadapt_web.app`) drives the Slicer module's library ``MedAdaptSlicerLib`` (the same MRML logic),
which is not a pip package, so :func:`run` puts it on ``sys.path`` first (:func:`slicer_lib_folder`): the folder
in ``MEDADAPT_SLICER_LIB`` (the folder that holds ``MedAdaptSlicerLib``), else ``MedAdaptSlicer/`` beside
``MedAdaptWeb/`` in the checkout this package was installed from.

Single-user: one process holds one scene, and it serves one browser session at a time (a second tab or user is
refused while a session is open). The page's login takes the tokens of ``--token-file`` (``medadapt serve``'s
format) or ``MEDADAPT_TOKEN``; without one it answers on this computer only (see ``app.PageAccess``)."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from medadapt.errors import InputError
from medadapt.io.headers import MAX_VOXELS

CHECKOUT_LIB = Path(__file__).resolve().parents[3] / "MedAdaptSlicer"
"""``MedAdaptSlicer/`` of the checkout this package was installed from (``pip install -e ./MedAdaptWeb``)."""


def add_parser(commands) -> None:
    """The ``web`` sub-command."""
    web = commands.add_parser("web", help="run the browser UI (paint, Adapt, Accept, download) on this computer's "
                              "core or a medadapt serve server; single-user: one browser session at a time",
                              description="The browser UI. Single-user: one scene, one browser session at a time "
                              "(another tab or user is refused while a session is open). Without a login token it "
                              "answers on this computer only; with one (--token-file or MEDADAPT_TOKEN) the page "
                              "asks for it. Uploads are written under names the app makes.")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                     "address needs a login token: --token-file or MEDADAPT_TOKEN)")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--token-file", help="the page's login tokens, one per line as 'NAME TOKEN' or 'TOKEN' (as "
                     "medadapt serve; or set MEDADAPT_TOKEN); open http://HOST:PORT/ and enter one, or open "
                     "http://HOST:PORT/?secret=TOKEN")
    web.add_argument("--data", help="image to load at start (default: the bundled sample CT; 'none': start empty "
                     "and upload one from the page)")
    web.add_argument("--max-upload-mb", type=int, default=1024, help="most megabytes one upload from the page may "
                     "hold (default 1024)")
    web.add_argument("--max-voxels", type=int, default=MAX_VOXELS, help="largest grid an uploaded image's header "
                     f"may declare, checked before any voxel is read (default {MAX_VOXELS:,}: a whole-body CT)")
    web.add_argument("--server", help="URL of a medadapt serve server to run Adapt on (default: this computer)")
    web.add_argument("--server-token-file", help="file holding the --server's bearer token (its first line; or "
                     "set MEDADAPT_TOKEN)")
    web.add_argument("--segment", default="liver", help="name of the segment to paint (default liver)")
    web.add_argument("--method", default="lora", help="method chosen on the page at start (default lora)")
    web.add_argument("--device", default="auto", help="device of the local core (default auto)")


def slicer_lib_folder() -> Path:
    """The folder holding ``MedAdaptSlicerLib``; :class:`InputError` saying where it was looked for."""
    candidates = [Path(os.environ["MEDADAPT_SLICER_LIB"])] if os.environ.get("MEDADAPT_SLICER_LIB") else []
    candidates.append(CHECKOUT_LIB)
    for folder in candidates:
        if (folder / "MedAdaptSlicerLib" / "__init__.py").is_file():
            return folder
    raise InputError("medadapt web needs MedAdaptSlicerLib (the Slicer module's library); not found in "
                     f"{', '.join(map(str, candidates))}: set MEDADAPT_SLICER_LIB to the MedAdaptSlicer folder of "
                     "a MedAdapt checkout")


def login_tokens(args: argparse.Namespace) -> dict[str, str]:
    """The page's login tokens (token -> name) from ``--token-file`` and ``MEDADAPT_TOKEN``, read as
    ``medadapt serve`` reads them; none only on a loopback ``--host``."""
    from medadapt.server.settings import TOKEN_ENV, is_loopback, read_tokens
    tokens = read_tokens(args.token_file)
    if not tokens and not is_loopback(args.host):
        raise InputError(f"--host {args.host}: listening beyond this machine needs a login token (--token-file or "
                         f"{TOKEN_ENV}); without one anyone who can reach the port could use the page and its scans")
    return tokens


def server_token_of(args: argparse.Namespace) -> str:
    """The ``--server``'s bearer token from ``--server-token-file`` (its first line; a 'NAME TOKEN' line gives
    TOKEN), else ``MEDADAPT_TOKEN``, else none."""
    if args.server_token_file:
        path = Path(args.server_token_file)
        if not path.is_file():
            raise InputError(f"--server-token-file {path}: file not found")
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            raise InputError(f"--server-token-file {path}: the file is empty")
        return lines[0][-1]
    return os.environ.get("MEDADAPT_TOKEN", "")


def data_of(args: argparse.Namespace) -> Path | None:
    """The image to load at start: ``--data``, or the bundled sample CT; ``None`` for ``--data none``."""
    if args.data and args.data.lower() == "none":
        return None
    if args.data:
        if not Path(args.data).exists():
            raise InputError(f"--data {args.data}: no such file or folder")
        return Path(args.data)
    from medadapt.cli.demo import IMAGE, sample_folder
    return sample_folder(None) / IMAGE


def run(args: argparse.Namespace) -> None:
    """Start the app and serve until stopped (Ctrl-C or SIGTERM)."""
    if args.server_token_file and not args.server:
        raise InputError("--server-token-file: only with --server")
    if args.max_upload_mb < 1:
        raise InputError(f"--max-upload-mb: expected at least 1, got {args.max_upload_mb}")
    if args.max_voxels < 1:
        raise InputError(f"--max-voxels: expected at least 1, got {args.max_voxels}")
    logins, data, server_token = login_tokens(args), data_of(args), server_token_of(args)
    folder = slicer_lib_folder()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        from .app import start
    except ImportError as exc:
        raise InputError(f"medadapt web needs trame-slicer and slicer-core ({exc}); pip install "
                         "trame-slicer==2.0.0 slicer-layer-dm==2.0.0 slicer-core==5.11.0.6 vtk==9.6.0") from exc
    start(port=args.port, host=args.host, data=data, server_url=args.server or "", token=server_token,
          segment_name=args.segment, method=args.method, device=args.device, login_tokens=logins,
          max_upload_mb=args.max_upload_mb, max_voxels=args.max_voxels)
    # stopped: leave the scene's VTK objects to the process's end instead of the interpreter's final garbage
    # collection, which takes seconds (SIGTERM would seem ignored)
    gc.freeze()
