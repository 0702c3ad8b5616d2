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
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medadapt.errors import InputError
from medadapt.io.folders import read_json
from medadapt.io.volume import Volume, write_volume

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
            fields = read_json(sidecar)
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


ENTRY_FILES = ("{stem}.json", "{stem}_image.nii.gz", "{stem}_labels.nii.gz")
"""The files one added entry consists of (a sidecar naming the other two); :func:`add_entry` makes every name."""


def add_entry(folder: str | Path, image: Volume, mask: Volume, task: str, modality: str) -> Path:
    """Add an accepted segmentation to the collection folder ``folder`` (created if absent) as task ``task`` of
    ``modality``: the image and ``mask`` (non-zero = the structure) as NIfTI files and a JSON sidecar naming them,
    all under new names ``<task>_<NNN>`` (nothing is overwritten), the sidecar written last, so a half-added entry
    is never read. Returns the sidecar's path; ``medadapt universal train FOLDER`` and the clinic read it."""
    for field, value in (("task name", task), ("modality", modality)):
        if not isinstance(value, str) or not NAME.match(value):
            raise InputError(f"{field}: expected a letter, then letters, digits, '_' or '-' (at most 64 characters), "
                             f"got {value!r}")
    if not mask.geometry.matches(image.geometry):
        raise InputError(f"add entry: the segmentation's grid differs from the image's "
                         f"({mask.geometry.describe_difference(image.geometry)})")
    if not np.any(mask.array):
        raise InputError(f"add entry: the segmentation of task {task!r} is empty; accept a non-empty segment")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"collection folder: {folder} is a file; choose a folder")
    folder.mkdir(parents=True, exist_ok=True)
    number = 1
    while any((folder / name.format(stem=f"{task}_{number:03d}")).exists() for name in ENTRY_FILES):
        number += 1
    stem = f"{task}_{number:03d}"
    sidecar, image_name, labels_name = (name.format(stem=stem) for name in ENTRY_FILES)
    write_volume(image, folder / image_name)
    write_volume(mask.with_array((mask.array != 0).astype(np.uint8)), folder / labels_name)
    staging = folder / f".{sidecar}.partial"
    staging.write_text(json.dumps({"image": image_name, "labels": labels_name, "tasks": {task: 1},
                                   "modality": modality}, indent=2))
    os.replace(staging, folder / sidecar)
    return folder / sidecar


def remove_entry(folder: str | Path, stem: str) -> list[Path]:
    """Delete the entry ``stem`` (e.g. ``hippocampus_004``) that :func:`add_entry` made in ``folder``: its
    sidecar and the two files of that stem, nothing else (an entry listed by hand, naming files elsewhere, is
    refused). Returns the deleted paths; the next training no longer sees the entry."""
    folder = Path(folder)
    paths = [folder / name.format(stem=stem) for name in ENTRY_FILES]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}_[0-9]{3,}", stem) or not paths[0].is_file():
        raise InputError(f"remove entry: {folder} has no entry {stem!r} (expected a name such as hippocampus_004; "
                         f"`medadapt clinic show` lists them)")
    fields = read_json(paths[0], "entry")
    if not isinstance(fields, dict) or (fields.get("image"), fields.get("labels")) != (paths[1].name, paths[2].name):
        raise InputError(f"{paths[0]}: names files other than {paths[1].name} and {paths[2].name}; remove that "
                         "entry by hand")
    for path in paths:
        if path.is_symlink():
            raise InputError(f"{path}: a symbolic link; remove that entry by hand")
    for path in paths:  # the sidecar first: from then on no reader sees the entry
        path.unlink(missing_ok=True)
    return paths
