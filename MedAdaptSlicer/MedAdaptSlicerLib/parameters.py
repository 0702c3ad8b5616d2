"""The module's user-facing settings and their mapping onto the core's :class:`AdaptConfig`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.method_names import HEAD_METHODS, METHODS

DEVICES = ("auto", "cpu", "cuda")
BETWEEN = ("auto", "model", "fill")


@dataclass
class Parameters:
    """What the Advanced panel shows: method, device, training iterations (0: the method's default, 100 for LoRA
    and 200 for FSEFT heads), LoRA rank, synthetic pairs per painted slice, random seed and what segments the
    slices between painted ones."""

    method: str = "lora"
    device: str = "auto"
    iterations: int = 0
    rank: int = 4
    synthesis_per_exemplar: int = 6
    seed: int = 0
    between: str = "auto"

    def validate(self) -> "Parameters":
        """Return ``self`` or raise :class:`InputError` naming the bad field."""
        if self.method not in METHODS:
            raise InputError(f"method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        if self.between not in BETWEEN:
            raise InputError(f"between painted slices: expected one of {', '.join(BETWEEN)}, got {self.between!r}")
        if self.device not in DEVICES:
            raise InputError(f"device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if int(self.iterations) < 0:
            raise InputError(f"iterations: must be 0 (the method's default) or more, got {self.iterations}")
        if int(self.rank) < 1:
            raise InputError(f"rank: must be at least 1, got {self.rank}")
        if int(self.synthesis_per_exemplar) < 0:
            raise InputError(f"synthesis amount: must be 0 or more, got {self.synthesis_per_exemplar}")
        return self

    def to_config(self) -> AdaptConfig:
        """Core configuration with these settings and every other tunable at its default."""
        self.validate()
        config = AdaptConfig(method=self.method, device=self.device, seed=int(self.seed), between=self.between)
        config.adapter = replace(config.adapter, rank=int(self.rank))
        if int(self.iterations):
            if self.method in HEAD_METHODS:
                config.head = replace(config.head, iterations=int(self.iterations))
            else:
                config.train = replace(config.train, iterations=int(self.iterations))
        config.synthesis = replace(config.synthesis, per_exemplar=int(self.synthesis_per_exemplar))
        return config
