"""Registry of downloadable base models (``models.json``) and a checksum-verified download cache.

The cache folder is ``$MEDADAPT_CACHE`` or ``~/.cache/medadapt``. ``$MEDADAPT_MODELS`` may name an extra JSON
file of entries (same fields) that adds to or overrides the shipped registry, e.g. to point at a local mirror.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from medadapt.errors import InputError
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report

REGISTRY_FILE = Path(__file__).with_name("models.json")
FIELDS = ("architecture", "url", "filename", "sha256", "licence", "input_size", "normalisation", "accepts_points")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """One registry model: its architecture key, download URL and file name, SHA-256 (``None`` when none is
    published), licence, native input size, input normalisation (``sam`` or ``unit``) and prompt types."""

    name: str
    architecture: str
    url: str
    filename: str
    sha256: str | None
    licence: str
    input_size: int
    normalisation: str
    accepts_points: bool


def _read_entries(path: Path) -> dict[str, ModelEntry]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read model registry ({exc})") from exc
    entries = {}
    for name, fields in data.items():
        if name.startswith("_"):
            continue
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise InputError(f"{path}: model {name!r} lacks field(s) {', '.join(missing)}")
        entries[name] = ModelEntry(name, **{f: fields[f] for f in FIELDS})
    return entries


def models() -> dict[str, ModelEntry]:
    """Registry entries by name: the shipped ``models.json`` updated with ``$MEDADAPT_MODELS`` if set."""
    entries = _read_entries(REGISTRY_FILE)
    extra = os.environ.get("MEDADAPT_MODELS")
    if extra:
        entries.update(_read_entries(Path(extra)))
    return entries


def model_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``; ``InputError`` listing the known names otherwise."""
    entries = models()
    if name not in entries:
        raise InputError(f"model: {name!r} is not in the model registry; known: {', '.join(sorted(entries))}")
    return entries[name]


def cache_dir() -> Path:
    """Folder holding downloaded checkpoints: ``$MEDADAPT_CACHE`` or ``~/.cache/medadapt``."""
    return Path(os.environ.get("MEDADAPT_CACHE") or Path.home() / ".cache" / "medadapt")


def download(url: str, target: Path, expected_sha256: str | None, progress: ProgressCallback | None = None,
             cancel: CancelFlag | None = None) -> str:
    """Fetch ``url`` into ``target`` through a temporary file renamed only once complete and verified,
    reporting megabytes to ``progress`` and stopping (nothing left behind) when ``cancel`` is set.

    Returns the file's SHA-256. ``InputError`` when the URL cannot be reached (with manual-download advice) or
    the content does not match ``expected_sha256`` (nothing is left behind).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:  # nosec B310  # registry URLs
                    total_mb = max(1, int(response.headers.get("Content-Length") or 0) >> 20)
                    for n, block in enumerate(iter(lambda: response.read(1 << 20), b""), start=1):
                        check_cancel(cancel)
                        digest.update(block)
                        out.write(block)
                        report(progress, Progress(f"download {target.name} (MB)", min(n, total_mb), total_mb))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise InputError(f"{url}: download failed ({reason}). Without network access, download the "
                                 f"file by other means and pass its path with --checkpoint (in Slicer: Checkpoint "
                                 f"file), or copy it to {target}") from exc
        actual = digest.hexdigest()
        if expected_sha256 and actual != expected_sha256:
            raise InputError(f"{url}: downloaded file has SHA-256 {actual[:12]}..., expected "
                             f"{expected_sha256[:12]}...; the download is corrupt or the file changed (discarded)")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return actual


def _recorded_sha256(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def fetch(entry: ModelEntry, progress: ProgressCallback | None = None, cancel: CancelFlag | None = None
          ) -> tuple[Path, str]:
    """Local checkpoint file of a registry model and the SHA-256 it must have, downloading it if absent.

    With no published checksum, the checksum of the first download (or of a file copied into the cache by
    hand) is recorded beside it and enforced from then on.
    """
    target = cache_dir() / entry.filename
    record = _recorded_sha256(target)
    expected = entry.sha256 or (record.read_text().strip() if record.is_file() else None)
    if not target.is_file():
        log.warning("downloading %s (%s, %s) to %s", entry.name, entry.url, entry.licence, target)
        actual = download(entry.url, target, expected, progress, cancel)
    elif expected is None:
        from medadapt.backends.checkpoints import sha256_of
        actual = sha256_of(target)
    else:
        return target, expected
    if entry.sha256 is None:
        record.write_text(actual + "\n")
        log.warning("%s: no published SHA-256; recorded %s in %s", target, actual, record)
    return target, actual


def prefetch(name: str, checkpoint: str | None, progress: ProgressCallback | None = None,
             cancel: CancelFlag | None = None) -> None:
    """Download registry model ``name`` now (progress, cancel) unless a local ``checkpoint`` replaces it, it
    is not a registry model (LiteMedSAM ships inside its package) or it is already in the cache."""
    if checkpoint is None and name in models():
        fetch(model_entry(name), progress, cancel)
