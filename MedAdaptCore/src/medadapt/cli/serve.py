"""``medadapt serve``: the core behind an HTTP API for thin clients (README: Server and remote use)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medadapt.errors import InputError
from medadapt.server.settings import MAX_VOXELS


def add_parser(commands) -> None:
    """The ``serve`` sub-command."""
    serve = commands.add_parser("serve", help="run the adaptation server for remote clients (Slicer's Remote "
                                "mode, the browser UI, scripts)")
    serve.add_argument("--data", required=True, help="folder for uploaded volumes, results and adapters (created; "
                       "a restart finds them again)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                       "needs a token)")
    serve.add_argument("--port", type=int, default=8790)
    serve.add_argument("--devices", default="cpu", help="one worker each: cpu, or GPU numbers such as 0,1")
    serve.add_argument("--token-file", help="tokens, one per line as 'NAME TOKEN' (or set MEDADAPT_TOKEN)")
    serve.add_argument("--max-upload-mb", type=int, default=1024, help="largest upload (default 1024)")
    serve.add_argument("--max-jobs", type=int, default=8, help="jobs one token may have queued or running "
                       "(default 8)")
    serve.add_argument("--max-storage-mb", type=int, default=20480, help="storage per token (default 20480)")
    serve.add_argument("--max-voxels", type=int, default=MAX_VOXELS, help="largest grid an uploaded volume's "
                       f"header may declare, checked before anything is decompressed (default {MAX_VOXELS:,}: a "
                       "whole-body CT of 512 x 512 x 2000)")
    serve.add_argument("--models", help="folder of base models (lineage folders) that jobs may name as "
                       "base_model besides the built-in ones (the working directory is never searched)")
    serve.add_argument("--cached-volumes", type=int, default=4, help="volumes whose image embeddings stay in "
                       "memory per device (default 4)")
    serve.add_argument("--tls-cert", help="certificate file for HTTPS served by uvicorn itself")
    serve.add_argument("--tls-key", help="its private key file")


def settings_of(args: argparse.Namespace):
    """The checked :class:`ServerSettings` of the parsed options."""
    from medadapt.server.settings import Limits, ServerSettings, check_settings, parse_devices, read_tokens
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert / --tls-key: give both or neither")
    for option in ("tls_cert", "tls_key"):
        if getattr(args, option) and not Path(getattr(args, option)).is_file():
            raise InputError(f"--{option.replace('_', '-')} {getattr(args, option)}: file not found")
    return check_settings(ServerSettings(
        Path(args.data), args.host, args.port, parse_devices(args.devices), read_tokens(args.token_file),
        Limits(args.max_upload_mb, args.max_jobs, args.max_storage_mb, args.max_voxels), args.cached_volumes,
        Path(args.models) if args.models else None))


def run(args: argparse.Namespace) -> None:
    """Start the server and serve until stopped (Ctrl-C)."""
    import uvicorn

    from medadapt.server.app import create_app
    settings = settings_of(args)
    app = create_app(settings)
    scheme = "https" if args.tls_cert else "http"
    print(f"medadapt serve: {scheme}://{settings.host}:{settings.port} (data {settings.data}; devices "
          f"{', '.join(settings.devices)}; {len(settings.tokens) or 'no'} token(s))", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", ssl_certfile=args.tls_cert,
                ssl_keyfile=args.tls_key)
