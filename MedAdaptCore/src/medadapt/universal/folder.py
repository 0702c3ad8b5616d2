"""The universal model folder: ``universal.json`` (base model — none for the volume backbone —, network shape,
tasks with their label values and modalities, training settings, history, checksum) and ``weights.safetensors``.
``universal.json`` is validated against its schema (types and ranges, so that a malformed model is refused by field
before any allocation) and the weights are checksum-verified before use; a folder holding anything else (a symbolic
link, a stray file) is refused, and one is only ever written whole. It holds no patient data (no image, label or
slice)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from safetensors.torch import load_file, save_file

from medadapt import __version__
from medadapt.backends.checkpoints import sha256_of
from medadapt.errors import InputError
from medadapt.io.folders import check_listed, check_output_folder, read_record, replaced_whole
from medadapt.io.volume import MAX_LABEL, MAX_LABEL_COUNT
from medadapt.universal.collection import NAME
from medadapt.universal.network import UniversalNetwork
from medadapt.universal.network3d import VolumeUniversalNetwork
from medadapt.universal.priors import NetworkShape, PriorConditioned

FORMAT = 2
RECORD = "universal.json"
WEIGHTS = "weights.safetensors"
MAX_MODALITIES = 64
"""Modalities a model may know (each owns prior tokens; far beyond any real collection)."""

Name = Annotated[str, Field(pattern=NAME.pattern)]
"""A task or modality name, as a collection spells it (:data:`medadapt.universal.collection.NAME`)."""


class TaskRecord(BaseModel):
    """A learned task: name, the label value it writes, the modalities it was trained on, whether every training
    label map held it as one piece (prediction then keeps its largest piece), the stage that added it and how
    many volumes taught it."""

    name: Name
    value: int = Field(ge=1, le=MAX_LABEL)
    modalities: list[Name]
    one_piece: bool
    stage: int = Field(ge=1)
    volumes: int = Field(ge=1)


class StageRecord(BaseModel):
    """One training run: the tasks it added, steps, seconds, peak memory, and the earlier tasks' Dice on the
    check volumes before and after it (empty when none were given)."""

    stage: int = Field(ge=1)
    added: list[str]
    iterations: int = Field(ge=1)
    seconds: float = Field(ge=0)
    peak_rss_gb: float = Field(ge=0)
    trained_shared: bool
    dice_before: dict[str, float] = {}
    dice_after: dict[str, float] = {}


class UniversalRecord(BaseModel):
    """``universal.json``."""

    format: Literal[2]
    kind: Literal["medadapt-universal"]
    medadapt_version: str
    created: str
    base_model: str
    base_sha256: str
    network: NetworkShape
    modalities: list[Name] = Field(min_length=1, max_length=MAX_MODALITIES)
    tasks: list[TaskRecord] = Field(min_length=1, max_length=MAX_LABEL_COUNT)
    settings: dict
    history: list[StageRecord] = []
    weights_sha256: str = ""

    @field_validator("modalities")
    @classmethod
    def _distinct_modalities(cls, modalities: list[str]) -> list[str]:
        """Each modality once (each owns one pool of prior tokens)."""
        if len(set(modalities)) != len(modalities):
            raise ValueError("modality names must be unique")
        return modalities

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, tasks: list[TaskRecord]) -> list[TaskRecord]:
        """Each task name and each label value once (a label map holds one value per voxel)."""
        if len({task.name for task in tasks}) != len(tasks) or len({task.value for task in tasks}) != len(tasks):
            raise ValueError("task names and label values must be unique")
        return tasks


@dataclass
class UniversalModel:
    """A loaded universal model: its record and network (evaluation mode)."""

    record: UniversalRecord
    network: PriorConditioned

    @property
    def backbone(self) -> str:
        """``embeddings`` (reads the base model's slice embeddings) or ``volume`` (reads the image)."""
        return self.network.shape.backbone

    def task(self, name: str) -> TaskRecord:
        """The record of task ``name``."""
        return next(task for task in self.record.tasks if task.name == name)


def is_universal(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a ``universal.json``."""
    return (Path(path) / RECORD).is_file()


def build_network(record: UniversalRecord) -> PriorConditioned:
    """The network ``record`` describes, with fresh weights."""
    network = VolumeUniversalNetwork if record.network.backbone == "volume" else UniversalNetwork
    return network(record.network, [task.name for task in record.tasks], record.modalities)


def validated_record(fields: object, where: Path) -> UniversalRecord:
    """``fields`` (``universal.json``'s content) as a record; :class:`InputError` naming ``where``, the first wrong
    field and the value found otherwise."""
    if isinstance(fields, dict) and fields.get("format") == 1:
        raise InputError(f"{where}: field format: 1 is an earlier MedAdapt's layout of the prior tokens; "
                         "train the model again with `medadapt universal train`")
    try:
        return UniversalRecord.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        found = error.get("input")
        got = f" (got {found!r})" if isinstance(found, (int, float, str)) and len(repr(found)) <= 40 else ""
        raise InputError(f"{where}: field {'.'.join(str(p) for p in error['loc'])}: {error['msg']}{got}") from exc


def read_universal(path: str | Path) -> UniversalModel:
    """The model at ``path``: its folder holding only the plain files its record lists, record validated,
    weights checksum-verified and loaded; :class:`InputError` naming the file and field otherwise."""
    path = Path(path)
    record_path = path / RECORD
    fields, entries = read_record(path, RECORD, f"{path}: not a MedAdapt universal model (no {RECORD}); train one "
                                  "with `medadapt universal train`")
    record = validated_record(fields, record_path)
    check_listed(path, entries, {RECORD, WEIGHTS}, RECORD)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise InputError(f"{weights}: missing from the universal model ({RECORD} lists it)")
    if sha256_of(weights) != record.weights_sha256:
        raise InputError(f"{weights}: checksum does not match {RECORD} (file corrupt or replaced)")
    network = build_network(record)
    try:
        network.load_state_dict(load_file(str(weights)))
    except Exception as exc:
        raise InputError(f"{weights}: does not fit the network {RECORD} describes ({exc})") from exc
    return UniversalModel(record, network.eval())


def check_universal_folder(path: str | Path) -> Path:
    """``path`` when a model can be written there: a new folder in an existing, writable one, or an existing
    universal model (then replaced whole)."""
    return check_output_folder(path, replaceable=is_universal,
                               refusal="exists and is not a universal model; choose a new folder")


def write_universal(path: str | Path, model: UniversalModel) -> UniversalModel:
    """Write ``model`` to ``path`` whole (a folder that exists is replaced only once the new one is complete)."""
    path = Path(path)
    validated_record(model.record.model_dump(), path / RECORD)  # never write a model that would be refused
    with replaced_whole(path) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.network.state_dict().items()},
                  str(staging / WEIGHTS))
        model.record.weights_sha256 = sha256_of(staging / WEIGHTS)
        (staging / RECORD).write_text(model.record.model_dump_json(indent=2))
    return read_universal(path)


def new_record(base_model: str, base_sha256: str, shape: NetworkShape, tasks: list[TaskRecord],
               modalities: list[str], settings: dict) -> UniversalRecord:
    """The record of a freshly trained model (history and checksum filled in by the caller and the writer)."""
    return UniversalRecord(format=FORMAT, kind="medadapt-universal", medadapt_version=__version__,
                           created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), base_model=base_model,
                           base_sha256=base_sha256, network=shape, modalities=modalities, tasks=tasks,
                           settings=settings)
