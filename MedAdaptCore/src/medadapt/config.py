"""All settings of one adaptation run, grouped by the module that uses them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .adapters import AdapterConfig
from .fseft import HeadConfig
from .propagation import StopRule
from .synthesis import SynthesisConfig
from .training import TrainConfig


@dataclass
class AdaptConfig:
    """Method, model and every tunable of synthesis, adapter, training, propagation and post-processing."""

    method: str = "lora"
    backend: str = "litemedsam"
    checkpoint: str | None = None
    """Local weights file for ``backend`` instead of its default (bundled or registry download)."""
    input_size: int | None = None
    """Reduced model input size (SAM-family backends); ``None`` keeps the model's native size."""
    device: str = "auto"
    seed: int = 0
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    stop: StopRule = field(default_factory=StopRule)
    head: HeadConfig = field(default_factory=HeadConfig)
    between: str = "auto"
    """What segments the slices between painted ones: ``model``, ``fill`` (Fill-between-slices) or ``auto``
    (per structure, whichever predicted the held-out painted slices better, see :mod:`medadapt.calibration`)."""
    fill_max_gap_mm: float = 10.0
    """With ``auto``, Fill takes over only gaps between painted slices at most this far apart (mm): contour
    interpolation is strong between close slices and degrades over long gaps, where the model's propagation
    holds (measured in BENCHMARKS.md)."""
    largest_component: bool = False
    fill_holes: bool = False

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)
