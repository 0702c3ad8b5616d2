"""``medadapt web``: the browser UI (README: Browser UI). The app itself is the trame-slicer app
``MedAdaptSlicerLib.web_app``, which lives with the Slicer module's library (it drives the same MRML logic), so
this command finds that library first: the folder in ``MEDADAPT_SLICER_LIB`` (the folder that holds
``MedAdaptSlicerLib``), else ``MedAdaptSlicer/`` beside ``MedAdaptCore/`` in a source checkout."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medadapt.errors import InputError

CHECKOUT_LIB = Path(__file__).resolve().parents[4] / "MedAdaptSlicer"
"""``MedAdaptSlicer/`` of the checkout this package was installed from (``pip install -e ./MedAdaptCore``)."""


def add_parser(commands) -> None:
    """The ``web`` sub-command."""
    web = commands.add_parser("web", help="run the browser UI (paint, Adapt, Accept, download) on this computer's "
                              "core or a medadapt serve server")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; the page has "
                     "no login: put it behind an authenticating proxy before listening elsewhere)")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--data", help="image to load at start (default: the bundled sample CT; 'none': start empty "
                     "and upload one from the page)")
    web.add_argument("--server", help="URL of a medadapt serve server to run Adapt on (default: this computer)")
    web.add_argument("--token-file", help="file holding the server's bearer token (or set MEDADAPT_TOKEN)")
    web.add_argument("--segment", default="liver", help="name of the segment to paint (default liver)")
    web.add_argument("--method", default="lora", help="method chosen on the page at start (default lora)")
    web.add_argument("--device", default="auto", help="device of the local core (default auto)")


def slicer_lib_folder() -> Path:
    """The folder holding ``MedAdaptSlicerLib``; :class:`InputError` saying where it was looked for."""
    candidates = [Path(os.environ["MEDADAPT_SLICER_LIB"])] if os.environ.get("MEDADAPT_SLICER_LIB") else []
    candidates.append(CHECKOUT_LIB)
    for folder in candidates:
        if (folder / "MedAdaptSlicerLib" / "web_app.py").is_file():
            return folder
    raise InputError("medadapt web needs MedAdaptSlicerLib (the Slicer module's library); not found in "
                     f"{', '.join(map(str, candidates))}: set MEDADAPT_SLICER_LIB to the MedAdaptSlicer folder of "
                     "a MedAdapt checkout")


def token_of(args: argparse.Namespace) -> str:
    """The bearer token from ``--token-file`` (its first line; a 'NAME TOKEN' line gives TOKEN), else
    ``MEDADAPT_TOKEN``, else none."""
    if args.token_file:
        path = Path(args.token_file)
        if not path.is_file():
            raise InputError(f"--token-file {path}: file not found")
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            raise InputError(f"--token-file {path}: the file is empty")
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
    """Start the app and serve until stopped (Ctrl-C)."""
    if args.token_file and not args.server:
        raise InputError("--token-file: only with --server")
    data, token = data_of(args), token_of(args)
    folder = slicer_lib_folder()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        from MedAdaptSlicerLib.web_app import start
    except ImportError as exc:
        raise InputError(f"medadapt web needs trame-slicer and slicer-core ({exc}); pip install "
                         "trame-slicer==2.0.0 slicer-layer-dm==2.0.0 slicer-core==5.11.0.6 vtk==9.6.0") from exc
    start(port=args.port, host=args.host, data=data, server_url=args.server or "", token=token,
          segment_name=args.segment, method=args.method, device=args.device)
