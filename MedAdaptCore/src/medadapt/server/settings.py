"""What ``medadapt serve`` is started with: address, data folder, devices, tokens and limits, all checked
before the server starts."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from medadapt.errors import InputError
from medadapt.io.headers import MAX_VOXELS
from medadapt.options import DEVICE_PATTERN

TOKEN_ENV = "MEDADAPT_TOKEN"  # nosec B105  # the variable's name, not a token
MIN_TOKEN_LENGTH = 16
"""Shorter tokens are refused: a bearer token is the only thing between the network and patient data, so it
must not be guessable (``python -c "import secrets; print(secrets.token_urlsafe(32))"`` makes one)."""
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass
class Limits:
    """Per-token quotas and the upload limit."""

    max_upload_mb: int = 1024
    max_jobs: int = 8
    """Jobs a token may have queued or running at once."""
    max_storage_mb: int = 20_480
    """Bytes of volumes, results and adapters a token may keep on the server."""
    max_voxels: int = MAX_VOXELS
    """Voxels an uploaded volume's header may declare (checked before anything is decompressed)."""


@dataclass
class ServerSettings:
    """A checked ``medadapt serve`` setting; ``tokens`` maps each token to its owner's name (empty: no
    authentication, allowed on a loopback address only)."""

    data: Path
    host: str = "127.0.0.1"
    port: int = 8790
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    tokens: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    cached_volumes: int = 4
    """Uploaded volumes whose image embeddings stay in memory per device (oldest dropped first)."""
    models: Path | None = None
    """Folder whose sub-folders (lineages) a job may name as ``base_model``, besides the backend registry's
    models; never the working directory."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(token_file: str | None, environment: dict | None = None) -> dict[str, str]:
    """Tokens from ``token_file`` plus the ``MEDADAPT_TOKEN`` environment variable (named ``default``), each
    mapped to its owner's name; :class:`InputError` naming the line when a name or a token is given twice.

    A line is ``NAME TOKEN`` or a bare ``TOKEN`` (``#`` starts a comment). A bare token is named ``token-`` and the
    first 12 hex digits of its SHA-256: the name follows the token, not its line, so adding, removing or
    reordering lines never hands one token's volumes to another, and two tokens never share a name."""
    environment = os.environ if environment is None else environment
    entries = _token_file_entries(Path(token_file)) if token_file else []
    if environment.get(TOKEN_ENV):
        entries.append((TOKEN_ENV, "default", environment[TOKEN_ENV].strip()))
    tokens: dict[str, str] = {}
    places: dict[str, str] = {}
    for place, name, token in entries:
        token = _checked_token(token, place)
        if token in tokens:
            raise InputError(f"{place}: the same token as {places[tokens[token]]}; give each person their own token")
        if name in places:
            raise InputError(f"{place}: the name {name!r} is already given to {places[name]}; names must be unique")
        tokens[token], places[name] = name, place
    return tokens


def _token_file_entries(path: Path) -> list[tuple[str, str, str]]:
    """(where, name, token) of each token line of ``path``."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--token-file {path}: cannot read it ({exc})") from exc
    entries = []
    for number, line in enumerate(lines, 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) > 2 or (len(parts) == 2 and not NAME.fullmatch(parts[0])):
            raise InputError(f"--token-file {path}: line {number}: expected 'NAME TOKEN' or 'TOKEN'")
        name = parts[0] if len(parts) == 2 else f"token-{hashlib.sha256(parts[0].encode()).hexdigest()[:12]}"
        entries.append((f"--token-file {path}: line {number}", name, parts[-1]))
    return entries


def _checked_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise InputError(f"{where}: a token needs at least {MIN_TOKEN_LENGTH} characters (make one with "
                         "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`)")
    return token


def parse_devices(text: str) -> list[str]:
    """``--devices``: ``cpu``, or GPU numbers such as ``0,1`` (one worker each), or device names."""
    devices = []
    for part in (p.strip() for p in text.split(",")):
        device = f"cuda:{part}" if part.isdigit() else part
        if not part or not DEVICE_PATTERN.match(device) or device == "auto":
            raise InputError(f"--devices: expected cpu, mps, GPU numbers such as 0,1 or cuda:N, got {text!r}")
        devices.append(device.lower())
    if len(set(devices)) != len(devices):
        raise InputError(f"--devices: a device is named twice in {text!r}")
    return devices


def check_settings(settings: ServerSettings) -> ServerSettings:
    """``settings`` when the server may start with them, else :class:`InputError` naming the option."""
    if not settings.tokens and not is_loopback(settings.host):
        raise InputError(f"--host {settings.host}: listening beyond this machine needs a token (--token-file or "
                         f"{TOKEN_ENV}); without one anyone on the network could read the uploaded scans")
    if not 0 < settings.port < 65536:
        raise InputError(f"--port: expected 1..65535, got {settings.port}")
    for name in ("max_upload_mb", "max_jobs", "max_storage_mb", "max_voxels"):
        if getattr(settings.limits, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(settings.limits, name)}")
    if settings.cached_volumes < 0:
        raise InputError(f"--cached-volumes: expected 0 or more, got {settings.cached_volumes}")
    data = Path(settings.data)
    if data.exists() and not data.is_dir():
        raise InputError(f"--data {data}: exists and is not a folder")
    if not data.parent.is_dir():
        raise InputError(f"--data {data}: parent folder {data.parent} does not exist")
    if settings.models is not None and not Path(settings.models).is_dir():
        raise InputError(f"--models {settings.models}: not a folder")
    return settings
