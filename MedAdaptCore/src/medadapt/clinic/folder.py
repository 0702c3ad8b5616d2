"""The clinic folder: one per clinic, chosen by the user once. It holds the accepted segmentations (``entries/``,
a collection folder: :func:`medadapt.universal.collection.add_entry` writes them), the clinic model (``model/``, a
universal model, replaced only whole and only by a better one) and ``clinic.json``, the record of every training:
which entries taught the current model, which were held back to check it, each task's Dice there.

The folder holds patient data (the entries' images): it stays where the user put it, its size is shown, and an
entry can be removed (the next training forgets it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from medadapt.errors import InputError
from medadapt.io.folders import read_json
from medadapt.universal.collection import Entry, read_collection

RECORD = "clinic.json"
ENTRIES = "entries"
MODEL = "model"
FORMAT = 1


class Training(BaseModel):
    """One training run: when, on which entries, which were held back to check it, each task's Dice there for the
    new model and the model it would replace, and whether it was kept."""

    finished: str
    backbone: str
    trained_on: list[str]
    held_back: list[str]
    dice_new: dict[str, float]
    dice_old: dict[str, float]
    kept: bool
    seconds: float = Field(ge=0)


class ClinicRecord(BaseModel):
    """``clinic.json``: the format and every training, the last kept one describing the current model."""

    format: int = FORMAT
    kind: str = "medadapt-clinic"
    trainings: list[Training] = Field(default_factory=list)

    def current(self) -> Training | None:
        """The training whose model is the clinic model now (the last kept one), if any."""
        kept = [t for t in self.trainings if t.kept]
        return kept[-1] if kept else None


def entries_folder(clinic: str | Path) -> Path:
    """Where the clinic's accepted segmentations go."""
    return Path(clinic) / ENTRIES


def model_folder(clinic: str | Path) -> Path:
    """Where the clinic model is kept (a universal model folder)."""
    return Path(clinic) / MODEL


def check_clinic_folder(clinic: str | Path) -> Path:
    """``clinic`` when it can be a clinic folder: absent (made on the first entry), empty, or one already; else
    :class:`InputError` naming it."""
    clinic = Path(clinic)
    if clinic.exists():
        if not clinic.is_dir():
            raise InputError(f"clinic folder {clinic}: is a file; choose a folder")
        if any(clinic.iterdir()) and not (clinic / RECORD).is_file() and not entries_folder(clinic).is_dir():
            raise InputError(f"clinic folder {clinic}: holds other files; choose an empty or new folder")
    elif not clinic.parent.is_dir():
        raise InputError(f"clinic folder {clinic}: parent folder {clinic.parent} does not exist")
    return clinic


def read_clinic(clinic: str | Path) -> ClinicRecord:
    """The clinic's record (an empty one before the first training); :class:`InputError` naming the field of a
    malformed ``clinic.json``."""
    path = Path(clinic) / RECORD
    if not path.is_file():
        return ClinicRecord()
    try:
        return ClinicRecord.model_validate(read_json(path, "clinic record"))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"{path}: {'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None


def write_clinic(clinic: str | Path, record: ClinicRecord) -> None:
    """Write ``clinic.json`` whole (a temporary file, then renamed over the old one)."""
    path = Path(clinic) / RECORD
    staging = path.with_name(f".{RECORD}.partial")
    staging.write_text(record.model_dump_json(indent=2))
    os.replace(staging, path)


def clinic_entries(clinic: str | Path) -> list[Entry]:
    """The accepted segmentations, in the order they were added per task (their names number them)."""
    folder = entries_folder(clinic)
    if not folder.is_dir() or not any(folder.glob("*.json")):
        return []
    return read_collection(folder)


def entry_name(entry: Entry) -> str:
    """An entry's name (its sidecar's stem, e.g. ``hippocampus_004``)."""
    return Path(entry.source).stem


def folder_bytes(folder: str | Path) -> int:
    """Bytes the files under ``folder`` take (links not followed)."""
    return sum(path.stat(follow_symlinks=False).st_size for path in Path(folder).rglob("*")
               if path.is_file() and not path.is_symlink())


def now() -> str:
    """The local time as the record writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
