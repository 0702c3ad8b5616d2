"""One stage of a lineage: learn a new task starting from the lineage's current model M_{t-1} and record M_t.

Both methods train LoRA (and the decoder's heads, as ``adapt`` does) on the task's slices, merge the update
into the lineage's delta and keep the task's MDS-selected slices (:mod:`medadapt.lineage.selection`) when the
lineage retains slices. ``medseqft`` also trains with K&G RFT's distillation and update terms
(:mod:`medadapt.lineage.retention`); ``naive`` trains on the task alone."""

from __future__ import annotations

import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medadapt.backends.devices import default_adapter_parts
from medadapt.backends.distributed import rank
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.volume import Volume
from medadapt.lineage.delta import combined, stage_change, trained_values
from medadapt.lineage.folder import Lineage, TaskFacts, read_lineage, write_lineage
from medadapt.lineage.model import load_base, load_lineage_model
from medadapt.lineage.retention import Memory, retention_loss
from medadapt.lineage.samples import FrameSet, task_slices
from medadapt.lineage.selection import (box_logits, encode_all, mask_boxes, most_similar, pretraining_losses,
                                        slice_dice)
from medadapt.methods.lora import add_lora
from medadapt.methods.training import train
from medadapt.progress import CancelFlag, ProgressCallback


def _memory(teacher, student_encodes: bool, frames: FrameSet, embeddings: torch.Tensor, margin: float) -> Memory:
    """Distillation slices with the ``teacher``'s logits on fixed boxes (the teacher sees ``embeddings``)."""
    return Memory(mask_boxes(frames.masks, margin), box_logits(teacher, embeddings, frames.masks, margin),
                  None if student_encodes else embeddings, frames.frames if student_encodes else None)


def add_task(path: str | Path, volumes: list[tuple[Volume, Volume, str]], label: int, name: str,
             modality: str = "", device: str = "cpu", seed: int = 0, progress: ProgressCallback | None = None,
             cancel: CancelFlag | None = None) -> Lineage:
    """Teach the lineage at ``path`` task ``name``: label value ``label`` in each (image, label map, label map
    file name) of ``volumes``. Writes the lineage whole (rank 0 only under ``torchrun``) and returns it; a
    cancelled or failed stage leaves the folder as it was."""
    lineage = read_lineage(path)
    if any(task.name == name for task in lineage.record.tasks):
        raise InputError(f"--name {name!r}: the lineage already has a task of that name (stage "
                         f"{next(t.stage for t in lineage.record.tasks if t.name == name)})")
    started = time.monotonic()
    student = load_lineage_model(lineage, device)
    task = task_slices(student, volumes, label, lineage.record.settings.max_slices)
    facts = TaskFacts(stage=lineage.stage + 1, name=name, modality=modality, label=label,
                      label_maps=[source for _, _, source in volumes], slices=len(task), retained=0, seconds=0,
                      peak_rss_gb=0)
    return learn_task(lineage, student, task, facts, device, seed, progress, cancel, started=started)


def learn_task(lineage: Lineage, student, task: FrameSet, facts: TaskFacts, device: str, seed: int = 0,
               progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
               iterations: int | None = None, started: float | None = None) -> Lineage:
    """Train ``student`` (the lineage's current model, loaded) on ``task``'s slices as the next stage, described
    by ``facts``, and write the lineage (see :func:`add_task`); ``iterations`` replaces the lineage's own."""
    record, settings = lineage.record, lineage.record.settings
    started = time.monotonic() if started is None else started
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + rank())
    config = AdaptConfig(device=device)
    config.adapter.parts = default_adapter_parts(device)
    encoder_trains = "encoder" in config.adapter.parts
    embeddings = encode_all(student, task.frames, progress, cancel)

    base = load_base(lineage, device) if lineage.stage else student
    encoder_moved = base.embedding_key != student.embedding_key  # the delta changed the image encoder
    base_embeddings = encode_all(base, task.frames, progress, cancel, "encode slices (base model)") \
        if encoder_moved else embeddings
    keep = most_similar(pretraining_losses(base, base_embeddings, task.masks, config.train), settings.retain_per_task)
    selected = task.subset(keep)

    earlier = {}
    for earlier_task in record.tasks:
        retained = lineage.retained(earlier_task)
        if retained is not None:
            earlier[earlier_task.name] = FrameSet.from_retained(retained, f"{lineage.path} task {earlier_task.stage}")
    earlier_embeddings = {task_name: encode_all(student, frames.frames, progress, cancel, "encode retained slices")
                          for task_name, frames in earlier.items()}
    memory = None
    if record.method == "medseqft":
        margin = config.train.box_margin
        memory = Memory.joined([_memory(base, encoder_trains, selected, base_embeddings[keep], margin)] +
                               [_memory(student, encoder_trains, frames, earlier_embeddings[task_name], margin)
                                for task_name, frames in earlier.items()])
    del base

    add_lora(student, config.adapter)
    start = trained_values(student)
    extra = None
    if record.method == "medseqft":
        extra = retention_loss(student, memory, start, settings.distil_weight, settings.update_weight,
                               config.train.batch_size, rng)
    schedule = replace(config.train, iterations=iterations or settings.iterations)
    train(student, task.frames, task.masks, schedule, rng, None if encoder_trains else embeddings, progress,
          cancel, extra)
    delta = combined(student.base_delta.tensors if student.base_delta else {}, stage_change(student, start))
    evaluated = {**earlier, facts.name: selected}
    known = None if encoder_trains else {**earlier_embeddings, facts.name: embeddings[keep]}
    dice = stage_dice(student, evaluated, known, config.train.box_margin)
    del student

    facts = facts.model_copy(update={
        "retained": len(selected) if record.retention else 0, "seconds": round(time.monotonic() - started, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)})
    new_record = record.model_copy(deep=True)
    new_record.tasks.append(facts)
    new_record.history.append(dice)
    retention = {facts.stage: selected.to_retained()} if record.retention else {}
    if rank() != 0:
        return lineage
    return write_lineage(lineage.path, new_record, delta, retention, keep_from=lineage)


def stage_dice(model, sets: dict[str, FrameSet], embeddings: dict[str, torch.Tensor] | None, margin: float
               ) -> dict[str, float]:
    """Mean box-prompted slice Dice of the trained stage ``model`` (its LoRA unmerged computes what M_t does) on
    each task's slices in ``sets``, by task name; ``embeddings`` of those slices when the encoder did not train
    (else they are encoded again)."""
    dice = {}
    for task_name, frames in sets.items():
        features = embeddings[task_name] if embeddings is not None else encode_all(model, frames.frames)
        logits = box_logits(model, features, frames.masks, margin)
        dice[task_name] = round(float(np.mean(slice_dice(logits, frames.masks))), 4)
    return dice
