"""The server's files: uploaded volumes, jobs with their results, and adapters, each owned by one token.

Layout under the data folder (every record is a JSON file beside a folder of the same ID)::

    volumes/<id>.json   volumes/<id>/image.nii.gz (or .nrrd, .mha)
    jobs/<id>.json      jobs/<id>/result.nii.gz
    adapters/<id>.json  adapters/<id>/ (an adapter folder, as ``medadapt adapt --save-model`` writes it)

IDs are 32 lowercase hex digits made by the server (:func:`new_id`); anything else (checked with ``fullmatch``:
``re.match`` with ``$`` would let a trailing newline through) is refused before it reaches a path, so no ID can
point outside its folder. Records are written atomically (temporary file, then
rename), so a killed server leaves each record either old or new, never half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path

from medadapt.errors import InputError

KINDS = ("volumes", "jobs", "adapters")
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
"""Upload formats: single-file images only (a .nhdr / .mhd header would name a second file)."""


def new_id() -> str:
    """A fresh random ID (UUID4 as 32 hex digits)."""
    return uuid.uuid4().hex


def check_id(value, what: str) -> str:
    """``value`` when it is an ID the server could have made, else :class:`InputError` naming ``what``."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InputError(f"{what}: expected an ID of 32 hex digits made by this server, got {str(value)[:80]!r}")
    return value


def image_suffix(name: str) -> str:
    """The image suffix of an uploaded file's ``name``, or :class:`InputError` naming the accepted ones."""
    lowered = (name or "").lower()
    suffix = next((s for s in IMAGE_SUFFIXES if lowered.endswith(s)), None)
    if suffix is None:
        raise InputError(f"name: expected a file name ending in {', '.join(IMAGE_SUFFIXES)}, got {name!r}")
    return suffix


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` atomically."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(record, stream, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when absent)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


class Store:
    """Records and files of the three kinds under ``root``; every lookup checks the ID and the owner."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for kind in KINDS:
            (self.root / kind).mkdir(parents=True, exist_ok=True)
        self.staging = self.root / "staging"
        shutil.rmtree(self.staging, ignore_errors=True)  # uploads cut short by a stop
        self.staging.mkdir()

    def record_path(self, kind: str, item_id: str) -> Path:
        """Path of the JSON record of ``item_id``."""
        return self.root / kind / f"{check_id(item_id, kind[:-1] + ' ID')}.json"

    def folder(self, kind: str, item_id: str) -> Path:
        """The folder holding ``item_id``'s files."""
        return self.root / kind / check_id(item_id, kind[:-1] + " ID")

    def save(self, kind: str, record: dict) -> dict:
        """Write ``record`` (which holds its ``id``) atomically; returns it."""
        write_json(self.record_path(kind, record["id"]), record)
        return record

    def load(self, kind: str, item_id: str, owner: str | None = None) -> dict:
        """The record of ``item_id``; :class:`LookupError` when it is absent or ``owner`` does not own it
        (the same answer, so one token learns nothing of another's IDs)."""
        path = self.record_path(kind, item_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise LookupError(f"{kind[:-1]} {item_id}: not found") from None
        if owner is not None and record.get("owner") != owner:
            raise LookupError(f"{kind[:-1]} {item_id}: not found")
        return record

    def records(self, kind: str, owner: str | None = None) -> list[dict]:
        """Every record of ``kind`` (of ``owner``), oldest first."""
        found = []
        for path in (self.root / kind).glob("*.json"):
            if ID_PATTERN.fullmatch(path.stem):
                record = json.loads(path.read_text())
                if owner is None or record.get("owner") == owner:
                    found.append(record)
        return sorted(found, key=lambda r: r.get("created", 0))

    def delete(self, kind: str, item_id: str, owner: str) -> None:
        """Remove ``item_id``'s record and files (:class:`LookupError` when not ``owner``'s)."""
        self.load(kind, item_id, owner)
        self.record_path(kind, item_id).unlink()
        shutil.rmtree(self.folder(kind, item_id), ignore_errors=True)

    def used_bytes(self, owner: str) -> int:
        """Bytes held for ``owner``: the files of its volumes, job results and adapters."""
        return sum(folder_bytes(self.folder(kind, record["id"])) for kind in KINDS
                   for record in self.records(kind, owner))


class UploadQuota:
    """The upload limit and each owner's storage quota, counting uploads still in flight: an upload reserves its
    bytes before it writes them (:meth:`begin`), so concurrent uploads count against each other."""

    def __init__(self, store: Store, max_upload: int, max_storage: int):
        self.store, self.max_upload, self.max_storage = store, max_upload, max_storage
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        """Bytes reserved per owner by uploads in flight (read and changed under :attr:`lock`)."""

    def room(self, owner: str) -> int:
        """Bytes ``owner`` may upload now: the upload limit, or less when stored and reserved bytes near the
        quota."""
        with self.lock:
            return min(self.max_upload, self.max_storage - self.store.used_bytes(owner) - self.in_flight[owner])

    def begin(self, owner: str) -> "Reservation":
        """A new upload of ``owner``'s, holding nothing yet."""
        return Reservation(self, owner, self.store.used_bytes(owner))


class Reservation:
    """The bytes one upload holds against its owner's quota until it is stored or given up (:meth:`release`)."""

    def __init__(self, quota: UploadQuota, owner: str, stored: int):
        self.quota, self.owner, self.stored, self.bytes = quota, owner, stored, 0

    def add(self, size: int) -> bool:
        """Reserve ``size`` more bytes; ``False`` (nothing reserved) when the upload would pass the upload limit,
        or the bytes stored when it began plus all the owner's reservations would pass the quota."""
        quota = self.quota
        with quota.lock:
            if (self.bytes + size > quota.max_upload
                    or self.stored + quota.in_flight[self.owner] + size > quota.max_storage):
                return False
            quota.in_flight[self.owner] += size
            self.bytes += size
            return True

    def commit(self, store_it) -> bool:
        """Call ``store_it`` (which moves the upload into the store and writes its record) and release the
        reservation, unless what the owner stores now plus all its reservations passes the quota (``False``);
        one commit at a time, so two uploads never both take the last room."""
        quota = self.quota
        with quota.lock:
            if quota.store.used_bytes(self.owner) + quota.in_flight[self.owner] > quota.max_storage:
                return False
            store_it()
            quota.in_flight[self.owner] -= self.bytes
            self.bytes = 0
            return True

    def release(self) -> None:
        """Give back what this upload holds (nothing after :meth:`commit`)."""
        with self.quota.lock:
            self.quota.in_flight[self.owner] -= self.bytes
            self.bytes = 0
