"""Writing a folder of files as a whole: filled in a hidden staging folder beside it, then put in its place,
so that readers never see it half-written and a failure leaves the old folder as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
