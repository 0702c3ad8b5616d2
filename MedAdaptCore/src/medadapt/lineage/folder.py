"""The lineage folder: ``lineage.json`` (base model, method, tasks, history, checksums), the current model
``model_delta.safetensors`` (a delta on the base weights, absent before the first task) and, unless turned off,
``retention/task-NN.safetensors`` (the slices each task keeps for later stages: patient data). Every file is
checksum-verified on reading; a folder holding anything else (a symbolic link, a file lineage.json does not list) is
refused, and one is only ever replaced whole."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors.torch import load_file, save_file

from medadapt import __version__
from medadapt.backends.checkpoints import sha256_of
from medadapt.errors import InputError
from medadapt.io.folders import check_folder_files, check_listed, copy_verified, read_record, replaced_whole

FORMAT = 1
RECORD = "lineage.json"
DELTA = "model_delta.safetensors"
RETENTION = "retention"
STRATEGIES = ("medseqft", "naive")
"""How a lineage learns each task: ``medseqft`` (MDS selection and K&G RFT, :mod:`medadapt.lineage.stage`)
or ``naive`` (the task's LoRA merged, nothing retained or distilled)."""


class BaseFacts(BaseModel):
    """The base model: backend name, local checkpoint (``None``: its default weights) and weights' SHA-256."""

    name: str
    checkpoint: Optional[str] = None
    sha256: str


class TaskFacts(BaseModel):
    """One stage's task: name, modality, label value in its label maps, the label maps it came from, how many
    slices trained it and how many were retained (their file's checksum), seconds and peak memory."""

    stage: int = Field(ge=1)
    name: str
    modality: str = ""
    label: int
    label_maps: list[str]
    slices: int = Field(ge=1)
    retained: int = Field(ge=0)
    retention_sha256: Optional[str] = None
    seconds: float = Field(ge=0)
    peak_rss_gb: float = Field(ge=0)


class StageSettings(BaseModel):
    """How each stage trains: iterations, the cap on a task's training slices, slices retained per task (MDS),
    and the weights of K&G RFT's distillation and update terms (:mod:`medadapt.lineage.retention`)."""

    iterations: int = Field(100, ge=1, le=100_000)
    max_slices: int = Field(24, ge=1, le=10_000)
    retain_per_task: int = Field(8, ge=1, le=10_000)
    distil_weight: float = Field(1.0, ge=0)
    update_weight: float = Field(0.01, ge=0)


class LineageRecord(BaseModel):
    """``lineage.json``."""

    format: Literal[1]
    kind: Literal["medadapt-lineage"]
    medadapt_version: str
    created: str
    method: Literal["medseqft", "naive"]
    retention: bool
    settings: StageSettings = StageSettings()
    base_model: BaseFacts
    delta_sha256: Optional[str] = None
    tasks: list[TaskFacts] = []
    history: list[dict[str, float]] = []
    """After each stage: Dice of every task learned so far on its retained slices (box prompts), by task name."""


@dataclass
class Lineage:
    """A lineage read from (or to be written to) ``path``; tensors loaded on demand, checksums verified."""

    path: Path
    record: LineageRecord

    @property
    def stage(self) -> int:
        """Number of tasks learned."""
        return len(self.record.tasks)

    def delta(self) -> dict[str, torch.Tensor]:
        """The current model's delta on the base weights (empty before the first task)."""
        if self.record.delta_sha256 is None:
            return {}
        return _verified_tensors(self.path / DELTA, self.record.delta_sha256)

    def retained(self, task: TaskFacts) -> dict[str, torch.Tensor] | None:
        """The slices ``task`` retained (``frames`` uint8 (n, 3, S, S), ``masks`` uint8 (n, 1, S, S)), or
        ``None`` when it kept none."""
        if task.retention_sha256 is None:
            return None
        return _verified_tensors(self.path / retention_file(task.stage), task.retention_sha256)

    def listed(self) -> set[str]:
        """The entries ``lineage.json`` lists (relative paths, folders ending in ``/``): nothing else may be in
        the folder."""
        files = {RECORD, f"{RETENTION}/"} | ({DELTA} if self.record.delta_sha256 else set())
        return files | {retention_file(task.stage) for task in self.record.tasks if task.retention_sha256}


def retention_file(stage: int) -> str:
    """The retention file of stage ``stage``, relative to the lineage folder."""
    return f"{RETENTION}/task-{stage:02d}.safetensors"


def _verified_tensors(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{path}: missing from the lineage (lineage.json lists it)")
    if sha256_of(path) != sha256:
        raise InputError(f"{path}: checksum does not match lineage.json (file corrupt or replaced)")
    try:
        return load_file(str(path))
    except Exception as exc:
        raise InputError(f"{path}: unreadable safetensors file ({exc})") from exc


def is_lineage(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a ``lineage.json``."""
    return (Path(path) / RECORD).is_file()


def read_lineage(path: str | Path) -> Lineage:
    """The lineage at ``path``, its record validated and its delta's checksum verified;
    :class:`InputError` naming the file and field otherwise."""
    path = Path(path)
    record_path = path / RECORD
    data, entries = read_record(path, RECORD, f"{path}: not a MedAdapt lineage (no {RECORD}); create one with "
                                "`medadapt lineage create`")
    try:
        record = LineageRecord.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"{record_path}: field {'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from exc
    lineage = Lineage(path, record)
    check_listed(path, entries, lineage.listed(), RECORD)
    if [task.stage for task in record.tasks] != list(range(1, len(record.tasks) + 1)):
        raise InputError(f"{record_path}: tasks must be stages 1..{len(record.tasks)} in order")
    if (record.delta_sha256 is None) != (not record.tasks):
        raise InputError(f"{record_path}: delta_sha256 must be set exactly when the lineage has tasks")
    lineage.delta()  # checksum now: a tampered lineage is refused before any work
    for task in record.tasks:
        lineage.retained(task)
    return lineage


def new_record(base: BaseFacts, method: str, retention: bool, settings: StageSettings) -> LineageRecord:
    """The record of a lineage with no task yet."""
    return LineageRecord(format=FORMAT, kind="medadapt-lineage", medadapt_version=__version__,
                         created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), method=method, retention=retention,
                         settings=settings, base_model=base)


def write_lineage(path: str | Path, record: LineageRecord, delta: dict[str, torch.Tensor] | None = None,
                  retention: dict[int, dict[str, torch.Tensor]] | None = None, keep_from: Lineage | None = None
                  ) -> Lineage:
    """Write ``record`` with the new ``delta`` and the new stages' ``retention`` tensors (by stage) into
    ``path``, replacing it whole; the retention files (and, without a new ``delta``, the delta) that the lineage
    ``keep_from`` lists are copied from it, checked again first (:func:`_keep`). The record's checksums are
    filled in here."""
    path = Path(path)
    with replaced_whole(path) as staging:
        (staging / RETENTION).mkdir()
        if keep_from is not None:
            _keep(keep_from, staging, delta is None)
        if delta is not None:
            save_file({k: v.contiguous() for k, v in delta.items()}, str(staging / DELTA))
            record.delta_sha256 = sha256_of(staging / DELTA)
        for stage, tensors in (retention or {}).items():
            target = staging / retention_file(stage)
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(target))
            record.tasks[stage - 1].retention_sha256 = sha256_of(target)
        (staging / RECORD).write_text(record.model_dump_json(indent=2))
    return read_lineage(path)


def _keep(lineage: Lineage, staging: Path, with_delta: bool) -> None:
    """Copy into ``staging`` the retention files ``lineage`` lists (and its delta when ``with_delta``), after
    checking its folder again (it may have changed while the stage trained): only listed plain files, each copy
    checksum-verified."""
    check_folder_files(lineage.path, lineage.listed(), RECORD)
    kept = [(retention_file(task.stage), task.retention_sha256) for task in lineage.record.tasks
            if task.retention_sha256]
    if with_delta and lineage.record.delta_sha256:
        kept.append((DELTA, lineage.record.delta_sha256))
    for name, sha256 in kept:
        copy_verified(lineage.path / name, staging / name, sha256)
