"""What a method's adapt function works from (:class:`AdaptRun`) and what it returns (:class:`AdaptResult`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from medadapt.backends.base import PromptableBackend
from medadapt.config import AdaptConfig
from medadapt.io.exemplars import Exemplars
from medadapt.io.points import PointPrompt
from medadapt.io.volume import Volume
from medadapt.methods.heads import HeadSet
from medadapt.progress import CancelFlag, ProgressCallback
from medadapt.slices.model import SliceModel


@dataclass
class AdaptResult:
    """Segmentation on the image grid, the adapted backend (``None`` for ``fill``), the FSEFT heads (the
    method's own, or the seed head beside ``lora``), and run facts (size priors of transductive methods)."""

    segmentation: Volume
    backend: PromptableBackend | None
    window: tuple[float, float]
    validation_dice: dict[int, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    heads: HeadSet | None = None
    size_priors: dict[int, float] = field(default_factory=dict)
    grown_labels: list[int] = field(default_factory=list)
    """Labels whose result is Slicer's Grow from seeds, chosen by the grow referee."""


@dataclass
class AdaptRun:
    """One ``adapt`` call as :func:`medadapt.pipeline.adapt` prepared it: the inputs, the intensity window,
    the seeded random generator, when it started, progress and cancel, and for methods that use the foundation
    model the loaded ``backend`` (a 3D backbone for ``swinunetr``, ``None`` until the method loads it) and the
    slice ``model`` over the image."""

    image: Volume
    exemplars: Exemplars
    config: AdaptConfig
    points: list[PointPrompt]
    window: tuple[float, float]
    rng: np.random.Generator
    started: float
    progress: ProgressCallback | None = None
    cancel: CancelFlag | None = None
    backend: object | None = None
    model: SliceModel | None = None
    encoder_frozen: bool = True

    def result(self, labels: np.ndarray, **facts) -> AdaptResult:
        """:class:`AdaptResult` of a label stack (slice axis first), on the image grid, timed from the start."""
        segmentation = self.image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, self.exemplars.axis)))
        return AdaptResult(segmentation, self.backend, self.window, seconds=time.monotonic() - self.started, **facts)
