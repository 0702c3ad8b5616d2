"""The universal model folder: ``universal.json`` (base model — none for the volume backbone —, network shape,
tasks with their label values and modalities, training settings, history, checksum) and ``weights.safetensors``.
The weights are checksum-verified before use; the folder is only ever written whole. It holds no patient data (no
image, label or slice)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from safetensors.torch import load_file, save_file

from medadapt import __version__
from medadapt.backends.checkpoints import sha256_of
from medadapt.errors import InputError
from medadapt.io.folders import replaced_whole
from medadapt.universal.network import UniversalNetwork
from medadapt.universal.network3d import VolumeUniversalNetwork
from medadapt.universal.priors import BACKBONES, NetworkShape, PriorConditioned

FORMAT = 2
RECORD = "universal.json"
WEIGHTS = "weights.safetensors"


class TaskRecord(BaseModel):
    """A learned task: name, the label value it writes, the modalities it was trained on, whether every training
    label map held it as one piece (prediction then keeps its largest piece), the stage that added it and how
    many volumes taught it."""

    name: str
    value: int = Field(ge=1)
    modalities: list[str]
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
    network: dict
    modalities: list[str] = Field(min_length=1)
    tasks: list[TaskRecord] = Field(min_length=1)
    settings: dict
    history: list[StageRecord] = []
    weights_sha256: str = ""


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
    """The network ``record`` describes, with fresh weights; :class:`InputError` for an unknown shape."""
    try:
        shape = NetworkShape(**record.network)
    except TypeError as exc:
        raise InputError(f"{RECORD}: field network: {exc}") from exc
    if shape.backbone not in BACKBONES:
        raise InputError(f"{RECORD}: field network.backbone: expected one of {', '.join(BACKBONES)}, got "
                         f"{shape.backbone!r}")
    network = VolumeUniversalNetwork if shape.backbone == "volume" else UniversalNetwork
    return network(shape, [task.name for task in record.tasks], record.modalities)


def read_universal(path: str | Path) -> UniversalModel:
    """The model at ``path``: record validated, weights checksum-verified and loaded; :class:`InputError` naming
    the file and field otherwise."""
    path = Path(path)
    record_path = path / RECORD
    if not record_path.is_file():
        raise InputError(f"{path}: not a MedAdapt universal model (no {RECORD}); train one with "
                         "`medadapt universal train`")
    try:
        fields = json.loads(record_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{record_path}: not valid JSON ({exc})") from exc
    if isinstance(fields, dict) and fields.get("format") == 1:
        raise InputError(f"{record_path}: field format: 1 is an earlier MedAdapt's layout of the prior tokens; "
                         "train the model again with `medadapt universal train`")
    try:
        record = UniversalRecord.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"{record_path}: field {'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from exc
    names = [task.name for task in record.tasks]
    if len(set(names)) != len(names) or len({task.value for task in record.tasks}) != len(names):
        raise InputError(f"{record_path}: field tasks: names and label values must be unique")
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


def check_output_folder(path: str | Path) -> Path:
    """``path`` when a model can be written there: a new folder in an existing one, or an existing universal
    model (then replaced whole)."""
    path = Path(path)
    if path.exists() and not is_universal(path):
        raise InputError(f"{path}: exists and is not a universal model; choose a new folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: parent folder {parent} does not exist")
    return path


def write_universal(path: str | Path, model: UniversalModel) -> UniversalModel:
    """Write ``model`` to ``path`` whole (a folder that exists is replaced only once the new one is complete)."""
    path = Path(path)
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
                           base_sha256=base_sha256, network=shape.describe(), modalities=modalities, tasks=tasks,
                           settings=settings)
