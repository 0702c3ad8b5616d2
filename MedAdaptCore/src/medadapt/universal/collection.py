"""The universal model's training data: what a user accumulates — accepted segmentations, each an image, its label
map, the tasks it is labelled for (task name -> label value) and its modality — listed in a CSV file or kept as
JSON sidecars in a folder.

CSV columns: ``image``, ``labels``, ``tasks`` (``liver=5;spleen=1``), ``modality`` (e.g. CT, MR, FLAIR) and an
optional ``weight`` (how often the entry's dataset is drawn, default 1). A folder holds one ``*.json`` per entry
with the same fields (``tasks`` as an object). Relative paths are read from the list's folder.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from medadapt.errors import InputError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
"""Task and modality names: a letter, then letters, digits, '_' or '-' (they become file keys)."""


@dataclass(frozen=True)
class Entry:
    """One labelled volume: image and label map files, task name -> label value, modality, sampling weight, and
    the list it came from (for messages)."""

    image: Path
    labels: Path
    tasks: dict[str, int]
    modality: str
    weight: float
    source: str


def parse_tasks(text: str, where: str) -> dict[str, int]:
    """``liver=5;spleen=1`` -> {"liver": 5, "spleen": 1}; :class:`InputError` naming ``where`` otherwise."""
    tasks = {}
    for part in filter(None, (p.strip() for p in re.split(r"[;,]", text or ""))):
        name, _, value = part.partition("=")
        name = name.strip()
        if not NAME.match(name) or not value.strip().lstrip("-").isdigit() or int(value) <= 0:
            raise InputError(f"{where}: tasks: expected name=label value pairs such as liver=5;spleen=1 (names "
                             f"start with a letter, values are positive integers), got {part!r}")
        if name in tasks:
            raise InputError(f"{where}: tasks: {name!r} is listed twice")
        tasks[name] = int(value)
    if not tasks:
        raise InputError(f"{where}: tasks: empty; name at least one task, e.g. liver=5")
    if len(set(tasks.values())) != len(tasks):
        raise InputError(f"{where}: tasks: two tasks share one label value")
    return tasks


def _entry(fields: dict, folder: Path, where: str) -> Entry:
    missing = [key for key in ("image", "labels", "tasks", "modality") if not fields.get(key)]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)} (expected image, labels, tasks, modality)")
    modality = str(fields["modality"]).strip()
    if not NAME.match(modality):
        raise InputError(f"{where}: modality: expected a name such as CT or MR, got {modality!r}")
    tasks = fields["tasks"]
    tasks = parse_tasks(tasks if isinstance(tasks, str) else ";".join(f"{k}={v}" for k, v in tasks.items()), where)
    try:
        weight = float(fields.get("weight") or 1.0)
    except (TypeError, ValueError):
        raise InputError(f"{where}: weight: expected a positive number, got {fields.get('weight')!r}") from None
    if not weight > 0:
        raise InputError(f"{where}: weight: expected a positive number, got {weight}")
    paths = {}
    for key in ("image", "labels"):
        path = Path(str(fields[key]))
        path = path if path.is_absolute() else folder / path
        if not path.exists():
            raise InputError(f"{where}: {key}: {path} does not exist")
        paths[key] = path
    return Entry(paths["image"], paths["labels"], tasks, modality, weight, where)


def read_collection(path: str | Path) -> list[Entry]:
    """The entries of a CSV file or of a folder of JSON sidecars, validated (files exist, names and values well
    formed); :class:`InputError` naming the file, row and field otherwise."""
    path = Path(path)
    if path.is_dir():
        sidecars = sorted(path.glob("*.json"))
        if not sidecars:
            raise InputError(f"{path}: folder holds no *.json entries (image, labels, tasks, modality)")
        entries = []
        for sidecar in sidecars:
            try:
                fields = json.loads(sidecar.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{sidecar}: not valid JSON ({exc})") from exc
            if not isinstance(fields, dict):
                raise InputError(f"{sidecar}: expected a JSON object with image, labels, tasks, modality")
            entries.append(_entry(fields, path, str(sidecar)))
        return entries
    if not path.is_file():
        raise InputError(f"{path}: no such CSV file or folder")
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
    if not rows:
        raise InputError(f"{path}: no rows (expected columns image, labels, tasks, modality)")
    return [_entry(row, path.parent, f"{path} row {number}") for number, row in enumerate(rows, start=2)]


def modalities(entries: list[Entry]) -> list[str]:
    """Modalities of ``entries``, in first-seen order."""
    return list(dict.fromkeys(entry.modality for entry in entries))


def output_values(entries: list[Entry], taken: dict[str, int] | None = None) -> dict[str, int]:
    """Label value each task writes in a predicted label map, in first-seen order: the value of its first entry
    (entries may label one task with different values), or the next free value when another task holds it.
    ``taken``: the values of tasks the model already has (kept)."""
    values = dict(taken or {})
    for entry in entries:
        for name, value in entry.tasks.items():
            if name not in values:
                while value in values.values():
                    value += 1
                values[name] = value
    return values
