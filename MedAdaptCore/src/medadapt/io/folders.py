"""MedAdapt's folders (adapters, lineages, universal models): written as a whole — filled in a hidden staging folder
beside it, then put in its place, so that readers never see one half-written and a failure leaves the old folder
as it was — and read only when they hold nothing but the plain files their record lists (no symbolic link, no
stray file), so that loading or copying one never reaches outside it. Also the one reader of a JSON file a user
hands over (a folder's record, a collection sidecar, a points file)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medadapt.errors import InputError


def check_output_folder(folder: str | Path, option: str = "", replaceable: Callable[[Path], bool] = Path.is_dir,
                        refusal: str = "exists and is not a folder") -> Path:
    """``folder`` as a Path when a MedAdapt folder (or a batch's outputs) can be written there — checked before
    any work, so a run never fails at its end — else :class:`InputError` naming ``option`` (e.g. ``-o``) and
    ``folder``: it exists but is not ``replaceable`` (default: any folder; the message then ends in ``refusal``),
    or its parent folder is missing or not writable."""
    folder = Path(folder)
    named = f"{option} {folder}" if option else str(folder)
    if folder.exists() and not replaceable(folder):
        raise InputError(f"{named}: {refusal}")
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{named}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{named}: parent folder {parent} is not writable")
    return folder


@contextmanager
def replaced_whole(directory: Path) -> Iterator[Path]:
    """Yield a staging folder to fill; on success it replaces ``directory`` (created or swapped in whole, with
    the permissions the umask gives new files), on any error or cancel it is removed and ``directory`` stays."""
    parent = directory.parent if str(directory.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        yield staging
        _usual_permissions(staging)
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=parent))
            directory.replace(retired / directory.name)
            staging.replace(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.replace(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _usual_permissions(folder: Path) -> None:
    """Give ``folder`` (made private by ``mkdtemp``) and its files the permissions the umask gives new ones."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [folder, *folder.rglob("*")]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def folder_entries(folder: Path) -> set[str]:
    """Every entry under ``folder`` by relative path (folders end in ``/``); :class:`InputError` naming the first
    symbolic link or special file (pipe, socket, device) found, so that nothing read from a MedAdapt folder (or
    copied out of it) comes from outside it. ``folder`` itself may be reached through a link."""
    entries, pending = set(), [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as listing:
            for item in sorted(listing, key=lambda entry: entry.name):
                path, name = Path(item.path), Path(item.path).relative_to(folder).as_posix()
                if item.is_symlink():
                    raise InputError(f"{path}: symbolic link inside {folder}; a MedAdapt folder holds only the "
                                     "plain files its record lists (remove the link)")
                if item.is_dir(follow_symlinks=False):
                    entries.add(f"{name}/")
                    pending.append(path)
                elif item.is_file(follow_symlinks=False):
                    entries.add(name)
                else:
                    raise InputError(f"{path}: not a regular file or folder; a MedAdapt folder holds only the "
                                     "plain files its record lists (remove it)")
    return entries


def read_json(path: Path, what: str = "") -> Any:
    """The parsed content of the JSON file ``path``; :class:`InputError` naming it (and ``what`` it holds, e.g.
    "manifest") when it is not valid JSON or not UTF-8 text. A missing file raises ``FileNotFoundError``."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {what + ' is ' if what else ''}not valid JSON ({exc})") from exc


def read_record(folder: Path, record: str, missing: str, what: str = "") -> tuple[Any, set[str]]:
    """Open a MedAdapt folder: (the parsed JSON of its record file ``record``, its entries by
    :func:`folder_entries`, listed before the record is read). :class:`InputError` with the message ``missing``
    when ``folder`` holds no record file; :func:`read_json`'s (naming ``what``) when the record is not JSON. The
    caller validates the record, then checks the entries against it with :func:`check_listed`."""
    path = folder / record
    if not path.is_file():
        raise InputError(missing)
    entries = folder_entries(folder)
    return read_json(path, what), entries


def check_listed(folder: Path, entries: set[str], listed: set[str], record: str) -> None:
    """:class:`InputError` naming the first of ``entries`` (from :func:`folder_entries`) that ``record`` does not
    list in ``listed`` (relative paths; folders end in ``/``)."""
    unlisted = sorted(entries - listed)
    if unlisted:
        raise InputError(f"{folder / unlisted[0]}: not listed in {record}; a MedAdapt folder holds only the files "
                         f"its {record} lists ({', '.join(sorted(listed))}); remove it")


def check_folder_files(folder: Path, listed: set[str], record: str) -> None:
    """:func:`folder_entries` and :func:`check_listed` at once (e.g. just before copying out of ``folder``)."""
    check_listed(folder, folder_entries(folder), listed, record)


def copy_verified(source: Path, target: Path, sha256: str) -> None:
    """Copy ``source`` to ``target`` without following a symbolic link; :class:`InputError` naming ``source``
    when it is a link or the copy's SHA-256 is not ``sha256`` (the file changed after it was checked)."""
    digest = hashlib.sha256()
    try:
        with open(source, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as reader, \
                target.open("wb") as writer:
            for block in iter(lambda: reader.read(1 << 20), b""):
                digest.update(block)
                writer.write(block)
    except OSError as exc:
        raise InputError(f"{source}: cannot be copied as a plain file ({exc.strerror})") from exc
    if digest.hexdigest() != sha256:
        raise InputError(f"{source}: checksum does not match its record (file changed or replaced)")
