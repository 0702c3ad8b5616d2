"""Training a universal model from a collection, and teaching a saved one new tasks.

Adding tasks trains only the new tasks' prior tokens (and a new modality's), so every earlier task's output stays
exactly as it was; with ``train_shared`` the shared weights train too (better fit for the new tasks, earlier tasks
may move: their Dice on check volumes is recorded before and after).
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict

import numpy as np
import torch

from medadapt.backends.base import PromptableBackend
from medadapt.errors import InputError
from medadapt.evaluation.metrics import mask_dice
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.universal.collection import Entry, modalities, output_values
from medadapt.universal.folder import StageRecord, TaskRecord, UniversalModel, build_network, new_record
from medadapt.universal.predict import predict_tasks
from medadapt.universal.priors import NetworkShape
from medadapt.universal.slices import encode_entry, read_entry
from medadapt.universal.train import TrainingVolume, TrainSettings, train_network
from medadapt.universal.volumes import prepare_entry


def encode_collection(backend: PromptableBackend | None, entries: list[Entry], max_slices: int,
                      progress: ProgressCallback | None = None, cancel: CancelFlag | None = None
                      ) -> list[TrainingVolume]:
    """Every entry encoded (:func:`encode_entry`) by ``backend``, or without one (the volume backbone) put on
    its working grid (:func:`prepare_entry`); each image file once."""
    shared: dict = {}
    if backend is not None:
        return [encode_entry(backend, entry, max_slices, progress, cancel, shared) for entry in entries]
    volumes = []
    for number, entry in enumerate(entries, start=1):
        check_cancel(cancel)
        volumes.append(prepare_entry(entry, shared))
        report(progress, Progress("prepare volumes", number, len(entries)))
    return volumes


def _task_records(entries: list[Entry], volumes: list[TrainingVolume], values: dict[str, int], stage: int
                  ) -> list[TaskRecord]:
    records = []
    for name, value in values.items():
        seen = [(e, v) for e, v in zip(entries, volumes) if name in e.tasks]
        records.append(TaskRecord(name=name, value=value, modalities=list(dict.fromkeys(e.modality for e, _ in seen)),
                                  one_piece=all(v.one_piece[name] for _, v in seen), stage=stage, volumes=len(seen)))
    return records


def check_dice(model: UniversalModel, backend: PromptableBackend | None, entries: list[Entry], tasks: list[str],
               cancel: CancelFlag | None = None, embeddings: dict | None = None) -> dict[str, float]:
    """Mean Dice of each of ``tasks`` over the ``entries`` labelled for it, predicted prompt-free;
    ``embeddings`` (image file -> its slice embeddings) is filled and reused across calls."""
    scores: dict[str, list[float]] = {}
    embeddings = {} if embeddings is None else embeddings
    for entry in entries:
        wanted = [t for t in tasks if t in entry.tasks]
        if not wanted:
            continue
        image, labels = read_entry(entry)
        predicted = predict_tasks(model, backend, image, wanted, entry.modality, cancel=cancel,
                                  embeddings=embeddings.setdefault(entry.image.resolve(), {})).array
        for task in wanted:
            scores.setdefault(task, []).append(mask_dice(predicted == model.task(task).value,
                                                         labels.array == entry.tasks[task]))
    return {task: round(float(np.mean(values)), 4) for task, values in scores.items()}


def _peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)


def train_universal(backend: PromptableBackend | None, entries: list[Entry], shape: NetworkShape,
                    settings: TrainSettings, device: str = "cpu", progress: ProgressCallback | None = None,
                    cancel: CancelFlag | None = None) -> UniversalModel:
    """A new universal model trained on ``entries`` (not yet written); ``backend``: the foundation model whose
    embeddings the slice backbone reads (None for the volume backbone)."""
    started = time.monotonic()
    torch.manual_seed(settings.seed)
    volumes = encode_collection(backend, entries, settings.max_slices, progress, cancel)
    values = output_values(entries)
    base_name, base_sha256 = (backend.name, backend.checkpoint_sha256) if backend is not None else ("none", "")
    record = new_record(base_name, base_sha256, shape, _task_records(entries, volumes, values, 1),
                        modalities(entries), asdict(settings))
    model = UniversalModel(record, build_network(record))
    train_network(model.network, volumes, settings, device=device, progress=progress, cancel=cancel)
    record.history.append(StageRecord(stage=1, added=list(values), iterations=settings.iterations,
                                      seconds=round(time.monotonic() - started, 1), peak_rss_gb=_peak_rss_gb(),
                                      trained_shared=True))
    return model


def add_tasks(model: UniversalModel, backend: PromptableBackend | None, entries: list[Entry],
              settings: TrainSettings, train_shared: bool = False, check: list[Entry] | None = None,
              device: str = "cpu", progress: ProgressCallback | None = None, cancel: CancelFlag | None = None
              ) -> UniversalModel:
    """``model`` taught the tasks of ``entries`` it does not know yet (the known ones in them are ignored);
    earlier tasks' Dice on ``check`` before and after."""
    known = {task.name: task.value for task in model.record.tasks}
    new_names = [name for name in output_values(entries, known) if name not in known]
    if not new_names:
        raise InputError(f"no new task: the model already knows {', '.join(known)}")
    entries = [Entry(e.image, e.labels, {n: v for n, v in e.tasks.items() if n in new_names}, e.modality, e.weight,
                     e.source) for e in entries if any(n in new_names for n in e.tasks)]
    started, stage = time.monotonic(), len(model.record.history) + 1
    check_embeddings: dict = {}
    before = check_dice(model, backend, check, list(known), cancel, check_embeddings) if check else {}
    volumes = encode_collection(backend, entries, settings.max_slices, progress, cancel)
    values = output_values(entries, known)
    network, record = model.network, model.record.model_copy(deep=True)
    new_modalities = [m for m in modalities(entries) if m not in record.modalities]
    for name in new_names:
        network.add_task(name)
    for modality in new_modalities:
        network.add_modality(modality)
    record.tasks += _task_records(entries, volumes, {n: values[n] for n in new_names}, stage)
    record.modalities += new_modalities
    parameters = (list(network.parameters()) if train_shared else
                  [network.task_priors[n] for n in new_names]
                  + [p for m in new_modalities for p in (network.modality_priors[m], network.modality_logits[m])])
    train_network(network, volumes, settings, parameters, device, progress, cancel)
    grown = UniversalModel(record, network)
    after = check_dice(grown, backend, check, list(known), cancel, check_embeddings) if check else {}
    record.history.append(StageRecord(stage=stage, added=new_names, iterations=settings.iterations,
                                      seconds=round(time.monotonic() - started, 1), peak_rss_gb=_peak_rss_gb(),
                                      trained_shared=train_shared, dice_before=before, dice_after=after))
    return grown
