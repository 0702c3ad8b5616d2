"""The module's and the effect's user-facing settings, turned into the core's :class:`AdaptConfig` by the
same builder as ``medadapt adapt`` (:func:`medadapt.options.build_config`), or, in Remote mode, into the same
options of a server's adapt job (no core needed: the core is imported by the Local-only methods)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .core_types import InputError

if TYPE_CHECKING:
    from medadapt.config import AdaptConfig
    from medadapt.options import AdaptOptions

DEVICES = ("auto", "cpu", "cuda", "mps")
BETWEEN = ("warp", "auto", "model", "fill")
BASE_MODELS = ("litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam", "swinunetr")
"""The core's backend registry names, kept here so the module loads without the core (a test keeps them equal)."""
VOLUME_MODELS = ("swinunetr",)
"""The registry's 3D volume models: FSEFT heads only, no synthetic pairs, weights from a local file only."""
LORA_PARTS = ("", "decoder", "encoder", "encoder,decoder")
"""LoRA placement choices; "" places it per device (decoder on a CPU, encoder and decoder on a GPU)."""


@dataclass
class Parameters:
    """What the Advanced panel and the effect show: method, device, base model (a name or a lineage folder, with
    an optional local checkpoint file and input size, 0 = the model's own), LoRA placement, training iterations
    (0: the method's default), LoRA rank, synthetic pairs per painted slice, random seed and what segments the
    slices between painted ones."""

    method: str = "lora"
    device: str = "auto"
    base_model: str = "litemedsam"
    checkpoint: str = ""
    input_size: int = 0
    lora_parts: str = ""
    iterations: int = 0
    rank: int = 4
    synthesis_per_exemplar: int = 6
    seed: int = 0
    between: str = "warp"

    def validate(self) -> "Parameters":
        """Return ``self`` or raise :class:`InputError` naming the bad field."""
        from medadapt.methods.registry import METHODS
        for field, value, allowed in (("method", self.method, METHODS), ("device", self.device, DEVICES),
                                      ("LoRA placement", self.lora_parts, LORA_PARTS),
                                      ("between painted slices", self.between, BETWEEN)):
            if value not in allowed:
                raise InputError(f"{field}: expected one of {', '.join(a or '(per device)' for a in allowed)}, "
                                 f"got {value!r}")
        if self.base_model not in BASE_MODELS and not Path(self.base_model).is_dir():
            raise InputError(f"base model: expected one of {', '.join(BASE_MODELS)} or a lineage folder, got "
                             f"{self.base_model!r}")
        if int(self.iterations) < 0:
            raise InputError(f"iterations: must be 0 (the method's default) or more, got {self.iterations}")
        if int(self.rank) < 1:
            raise InputError(f"rank: must be at least 1, got {self.rank}")
        if int(self.synthesis_per_exemplar) < 0:
            raise InputError(f"synthesis amount: must be 0 or more, got {self.synthesis_per_exemplar}")
        if int(self.input_size) < 0:
            raise InputError(f"input size: must be 0 (the model's own) or more, got {self.input_size}")
        if self.base_model in VOLUME_MODELS and not self.checkpoint:
            raise InputError(f"checkpoint: the {self.base_model} base model needs a local weights file")
        return self

    def _option_values(self) -> dict:
        """The choices under their ``medadapt adapt`` option names (``None``: the method's default), device and
        checkpoint left out."""
        volume = self.base_model in VOLUME_MODELS
        return dict(method=self.method, base_model=self.base_model, input_size=int(self.input_size) or None,
                    seed=int(self.seed), iterations=int(self.iterations) or None, rank=int(self.rank),
                    synthetic=None if volume else int(self.synthesis_per_exemplar), between=self.between,
                    lora_parts=self.lora_parts or None)

    def to_options(self) -> AdaptOptions:
        """The same choices as ``medadapt adapt`` options."""
        from medadapt.options import AdaptOptions
        self.validate()
        return AdaptOptions(**self._option_values(), device=self.device, checkpoint=self.checkpoint or None)

    def to_server_options(self) -> dict:
        """The same choices as the ``options`` of a ``medadapt serve`` adapt job, without the core. The server
        chooses the device and keeps its own models, so a checkpoint file or lineage folder on this computer
        cannot be used (:class:`InputError` saying so); the server checks every other value."""
        if self.checkpoint:
            raise InputError("checkpoint file: Remote mode runs the server's own copy of the base model; clear the "
                             "checkpoint file, or switch to Local")
        if not re.match(r"^[A-Za-z0-9_]{1,64}$", str(self.base_model)):
            raise InputError(f"base model: Remote mode needs a model name ({', '.join(BASE_MODELS)}); "
                             f"{self.base_model!r} is a folder on this computer, which the server cannot read")
        return {name: value for name, value in self._option_values().items() if value is not None}

    @classmethod
    def from_options(cls, options: AdaptOptions) -> "Parameters":
        """Settings holding ``options`` (``None`` fields keep the settings' defaults)."""
        names = {"synthetic": "synthesis_per_exemplar"}
        values = {names.get(k, k): v for k, v in asdict(options).items()
                  if v is not None and names.get(k, k) in cls.__dataclass_fields__}
        return cls(**values).validate()

    def to_config(self) -> AdaptConfig:
        """Core configuration of these settings (:func:`medadapt.options.build_config`)."""
        from medadapt.options import build_config
        return build_config(self.to_options())
