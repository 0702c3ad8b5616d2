"""Training the clinic model: which backbone, which entries check it, and the rule that a new model replaces the
current one only when it is at least as good on the entries held back from both."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from medadapt.clinic.folder import (ClinicRecord, Training, clinic_entries, entry_name, model_folder, now,
                                    read_clinic, write_clinic)
from medadapt.errors import InputError
from medadapt.progress import CancelFlag, ProgressCallback
from medadapt.universal.collection import Entry
from medadapt.universal.folder import is_universal, read_universal, write_universal
from medadapt.universal.learn import check_dice, train_universal
from medadapt.universal.priors import shape_for
from medadapt.universal.train import TrainSettings

HOLD_BACK_FROM = 3
"""A task with at least this many entries has its newest one held back to check each training (with fewer, every
entry is needed to learn from)."""

VOLUME_FROM = 2
"""The volume backbone (a 3D network trained on the images) when every task has at least this many training
entries; otherwise the embeddings backbone, which learns a task from one volume through the foundation model's
frozen embeddings (measured: docs/universal.md)."""

VOLUME_BATCH = 2
"""3D patches per step for the volume backbone (as `medadapt universal train`)."""


def split_entries(entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(entries to train on, entries held back to check): the newest entry of each task with at least
    :data:`HOLD_BACK_FROM` entries is held back."""
    counts = Counter(task for entry in entries for task in entry.tasks)
    newest = {}
    for entry in entries:  # clinic entries are in the order they were added, per task
        for task in entry.tasks:
            newest[task] = entry
    held = {id(newest[task]) for task, count in counts.items() if count >= HOLD_BACK_FROM}
    return [e for e in entries if id(e) not in held], [e for e in entries if id(e) in held]


def backbone_for(training: list[Entry]) -> str:
    """``volume`` when every task has at least :data:`VOLUME_FROM` training entries, else ``embeddings``."""
    counts = Counter(task for entry in training for task in entry.tasks)
    return "volume" if counts and min(counts.values()) >= VOLUME_FROM else "embeddings"


def better_or_equal(new: dict[str, float], old: dict[str, float]) -> bool:
    """The new model's mean held-back Dice over the tasks checked is at least the old one's (a task the old model
    does not know counts 0 for it)."""
    if not new:
        return True
    return float(np.mean(list(new.values()))) >= float(np.mean([old.get(task, 0.0) for task in new]))


def train_clinic(clinic: str | Path, device: str = "cpu", iterations: int | None = None, seed: int = 0,
                 progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> Training:
    """Train a clinic model on the clinic's entries (all but those :func:`split_entries` holds back), check it and
    the current model on the held-back entries, and write it as the clinic model only when it is at least as good
    (:func:`better_or_equal`; with nothing held back, the model that learned from more entries replaces it). The
    current model stays untouched until the new one is written whole. Returns the training's record."""
    from medadapt.backends import load_backend

    started = time.monotonic()
    entries = clinic_entries(clinic)
    if not entries:
        raise InputError(f"clinic {clinic}: no accepted segmentation yet; add one with `medadapt clinic add` (or "
                         "Accept in Slicer with the clinic folder set)")
    training, held = split_entries(entries)
    backbone = backbone_for(training)
    settings = TrainSettings(seed=seed, **({"iterations": iterations} if iterations else {}))
    if backbone == "volume":
        settings = replace(settings, batch_size=VOLUME_BATCH)
    backend = None if backbone == "volume" else load_backend("litemedsam", device)
    new = train_universal(backend, training, shape_for(backbone), settings, device, progress, cancel)
    tasks = sorted({task for entry in held for task in entry.tasks})
    dice_new = check_dice(new, backend, held, tasks, cancel) if held else {}
    dice_old = {}
    folder = model_folder(clinic)
    if held and is_universal(folder):
        old = read_universal(folder)
        old_backend = backend if old.backbone == backbone else (
            None if old.backbone == "volume" else load_backend(old.record.base_model, device))
        known = [task for task in tasks if task in {t.name for t in old.record.tasks}]
        dice_old = check_dice(old, old_backend, held, known, cancel) if known else {}
    kept = better_or_equal(dice_new, dice_old) or not is_universal(folder)
    if kept:
        write_universal(folder, new)
    result = Training(finished=now(), backbone=backbone, trained_on=[entry_name(e) for e in training],
                      held_back=[entry_name(e) for e in held], dice_new=dice_new, dice_old=dice_old, kept=kept,
                      seconds=round(time.monotonic() - started, 1))
    record = read_clinic(clinic)
    write_clinic(clinic, ClinicRecord(trainings=[*record.trainings, result]))
    return result
