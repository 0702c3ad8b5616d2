"""What a user chooses for ``adapt``, in whichever front end (command line, Slicer module and effect, batch),
and the one place that turns those choices into an :class:`AdaptConfig`, so the same choices give the same
adapter everywhere."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields
from pathlib import Path

from medadapt.backends.registry import REGISTRY, VOLUME_MODEL, kind_of
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.methods.registry import method_for


DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$", re.IGNORECASE)

OPTION_RANGES = {"iterations": (1, 100_000), "rank": (1, 256), "synthetic": (0, 200), "input_size": (16, 4096)}
"""Sanity limits of numeric options (far beyond any useful value), checked before anything heavy is imported."""


def check_option_values(values: dict) -> None:
    """:class:`InputError` naming the option when ``device`` is not a device name, ``atlas`` not a boolean or a
    numeric option (keys of :data:`OPTION_RANGES`) not an integer in its range; ``None`` values are the defaults
    and pass."""
    device = values.get("device")
    if device is not None and not (isinstance(device, str) and DEVICE_PATTERN.match(device)):
        raise InputError(f"--device: expected auto, cpu, cuda (or cuda:N) or mps, got {device!r}")
    if values.get("atlas") is not None and not isinstance(values["atlas"], bool):
        raise InputError(f"atlas: expected true or false, got {values['atlas']!r}")
    for name, (low, high) in OPTION_RANGES.items():
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"--{name.replace('_', '-')}: expected an integer {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class AdaptOptions:
    """The user-facing ``adapt`` choices; ``None`` means the method's default (the ``medadapt adapt`` options
    of the same names)."""

    method: str = "lora"
    device: str = "auto"
    base_model: str = "litemedsam"
    checkpoint: str | None = None
    input_size: int | None = None
    seed: int = 0
    iterations: int | None = None
    rank: int | None = None
    synthetic: int | None = None
    between: str | None = None
    grow_referee: bool = True
    """Let the grow referee hand a structure to Grow from seeds (``--no-grow-referee`` keeps MedAdapt's own)."""
    pretrained_class: int | None = None
    lora_parts: str | None = None
    save_model: bool = False
    atlas: bool = True
    """A saved model keeps the atlas when its method does (:attr:`Method.keeps_atlas`); ``False`` (``--no-atlas``,
    a server job's ``"atlas": false``, only with ``save_model``) leaves it out."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "AdaptOptions":
        """The options of a parsed ``medadapt adapt`` command line."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values["save_model"] = bool(values.get("save_model"))
        return cls(**values)


def use_lineage(config: AdaptConfig, options: AdaptOptions) -> None:
    """Point ``config`` at the lineage folder ``options.base_model`` (its base backend and checkpoint)."""
    from medadapt.lineage.folder import read_lineage
    for value, option in ((options.checkpoint, "--checkpoint"), (options.input_size, "--input-size")):
        if value:
            raise InputError(f"{option}: a lineage ({options.base_model}) brings its own model; leave it out")
    record = read_lineage(options.base_model).record
    config.backend, config.checkpoint = record.base_model.name, record.base_model.checkpoint
    config.lineage = str(Path(options.base_model).resolve())


def build_config(options: AdaptOptions) -> AdaptConfig:
    """The :class:`AdaptConfig` of ``options``: device resolved, a lineage folder as base model read, LoRA placed
    per device unless
    ``lora_parts`` says where, a seed probe saved with a LoRA model (so ``predict`` runs without prompts)."""
    from medadapt.backends.devices import default_adapter_parts, resolve_device

    config = AdaptConfig(method=options.method, device=resolve_device(options.device), seed=options.seed,
                         backend=options.base_model, input_size=options.input_size,
                         checkpoint=options.checkpoint or None)  # as given: the manifest keys the weights by hash
    if options.base_model not in REGISTRY and Path(options.base_model).is_dir():  # a registry name is never a folder
        use_lineage(config, options)
    config.adapter.parts = default_adapter_parts(config.device)
    if options.between:
        config.between = options.between
    config.grow_referee = bool(options.grow_referee)
    if options.pretrained_class is not None:
        config.head.pretrained_class = options.pretrained_class
    if options.lora_parts:
        config.adapter.parts = tuple(p.strip() for p in options.lora_parts.split(","))
        if not set(config.adapter.parts) <= {"encoder", "decoder"}:
            raise InputError(f"--lora-parts: expected encoder and/or decoder, got {options.lora_parts!r}")
    method = method_for(config.method)
    if options.save_model and method.trains_backend:
        config.head.seed_head = "linear-probe"
    if not options.atlas and not options.save_model:
        raise InputError('--no-atlas (a job\'s "atlas": false): only with --save-model (save_adapter); an atlas is '
                         'kept only in a saved model')
    if kind_of(config.backend) == VOLUME_MODEL and options.synthetic is not None:
        raise InputError(f"--synthetic: the 3D {config.backend} heads learn from the painted slices themselves "
                         "(no synthetic pairs); leave it out")
    trained = config.head if method.head_kind is not None else config.train
    for value, target, field in ((options.iterations, trained, "iterations"), (options.rank, config.adapter, "rank"),
                                 (options.synthetic, config.synthesis, "per_exemplar")):
        if value is not None:
            setattr(target, field, value)
    return config
