"""All settings of one adaptation run, one dataclass per part that uses them (plain data: no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class AdapterConfig:
    """Which parts get LoRA (``encoder``, ``decoder``), its rank, and whether the decoder heads train fully."""

    parts: tuple[str, ...] = ("decoder",)
    rank: int = 4
    alpha: float = 8.0
    train_decoder_heads: bool = True


@dataclass
class HeadConfig:
    """Settings of the FSEFT heads: feature source, optimisation, early stop and the size constraint."""

    features: str = "embedding"
    adapter_width: int = 32
    """Hidden channels of the spatial adapter (0: as many as the features)."""
    iterations: int = 200
    batch_size: int = 4
    learning_rate: float = 1e-2
    warmup: int = 20
    smoothing: float = 0.9
    """Weight of the previous value in the exponentially smoothed loss that early stopping watches."""
    patience: int = 40
    """Stop when the smoothed loss has not improved by ``min_delta`` for this many iterations."""
    min_delta: float = 1e-3
    size_weight: float = 0.1
    size_tolerance: float = 0.3
    size_start: float = 0.5
    """Fraction of ``iterations`` after which the size constraint is added (transductive methods)."""
    query_slices: int = 4
    outlier_min_count: int = 5
    seed_head: str = ""
    """Head kind trained beside a ``lora`` adapter to find where a prompt-free prediction starts ("" none;
    ``medadapt adapt --save-model`` uses ``linear-probe``)."""
    pretrained_class: int = -1
    """Output channel of the 3D backbone's pretrained head whose weights start every label's probe (the
    structure was seen in pre-training; -1: a new probe)."""


@dataclass
class StopRule:
    """When an outward walk ends: the mask vanishes (below ``min_area_fraction`` of the seed's area), changes
    too much from the previous slice (IoU below ``min_iou``) or grows by more than ``max_growth`` times the
    previous slice's area (structures taper outwards; ``None``: no limit)."""

    min_iou: float = 0.7
    min_area_fraction: float = 0.03
    max_growth: float | None = None
    box_margin: float = 3.0
    reach: float | None = 0.5
    """Longest outward walk beyond the outermost painted slice, as a fraction of the mean spacing between the
    painted slices (:func:`medadapt.slices.labels.outward_reach`); ``None``: no limit but this rule's others. The
    painting is read as one slice in each of k equal parts of the structure (as the size prior reads it), so
    the structure ends about half a part beyond the outermost painted slice."""
    taper_growth: float | None = 1.1
    """At an end where the painting narrows (the outermost painted cross-section is smaller than the next one
    in), the walk continues that taper: it stops before the first slice whose mask is more than
    ``taper_growth`` times the previous slice's (a structure narrowing towards its end does not widen again: a
    growing mask has run into neighbouring tissue of the same intensity; 10 % allows for the model's mask and
    a painted one differing a little). ``None``: not applied."""


@dataclass
class SynthesisConfig:
    """How many synthetic pairs per exemplar slice and the range of every random change."""

    per_exemplar: int = 6
    rotate_degrees: float = 15.0
    scale: float = 0.15
    translate: float = 0.08
    elastic_prob: float = 0.5
    elastic_magnitude: tuple[float, float] = (1.0, 3.0)
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    lowres_prob: float = 0.2
    lowres_zoom: tuple[float, float] = (0.5, 0.9)
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: float = 0.15
    brightness: float = 0.08
    noise_prob: float = 0.3
    noise_std: float = 0.03
    paste_prob: float = 0.25


@dataclass
class TrainConfig:
    """Optimisation settings: AdamW with linear warm-up then cosine decay, loss CE + ``dice_weight`` x Dice."""

    iterations: int | None = None
    """Training iterations; ``None``: as many as the model's part of the volume needs (``full_iterations`` or
    ``ends_iterations``, :func:`medadapt.methods.lora.training_iterations`)."""
    full_iterations: int = 100
    """Iterations when the model segments whole stretches of the structure (a label painted on one slice, point
    prompts, or ``between`` ``model`` / ``auto``)."""
    ends_iterations: int = 25
    """Iterations when the model segments only the ends beyond the outermost painted slices: every label painted
    on two or more slices, no point prompts, and registration or Fill taking every gap between painted slices."""
    batch_size: int = 4
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 10
    dice_weight: float = 0.8
    box_jitter: float = 0.1
    box_margin: float = 3.0


@dataclass
class AdaptConfig:
    """Method, model and every tunable of synthesis, adapter, training, propagation and post-processing."""

    method: str = "lora"
    backend: str = "litemedsam"
    checkpoint: str | None = None
    """Local weights file for ``backend`` instead of its default (bundled or registry download)."""
    lineage: str | None = None
    """Lineage folder whose current model (``backend`` plus the lineage's delta) replaces the base weights
    (:mod:`medadapt.lineage`)."""
    input_size: int | None = None
    """Reduced model input size (SAM-family backends); ``None`` keeps the model's native size."""
    device: str = "cpu"
    """A concrete device (``cpu``, ``cuda``, ``cuda:N``, ``mps``): the config builder
    (:func:`medadapt.options.build_config`) resolves a user's ``auto`` once, and nothing below it resolves again."""
    seed: int = 0
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    stop: StopRule = field(default_factory=StopRule)
    head: HeadConfig = field(default_factory=HeadConfig)
    between: str = "warp"
    """What segments the slices between painted ones: ``warp`` (the painted masks carried by registration of the
    image slices, :mod:`medadapt.slices.registration`; the default), ``model``, ``fill`` (Fill-between-slices) or
    ``auto`` (per structure, whichever predicted the held-out painted slices best, see
    :mod:`medadapt.slices.leave_one_out`)."""
    fill_max_gap_mm: float = 10.0
    """With ``auto``, Fill or registration takes over only gaps between painted slices at most this far apart
    (mm): interpolation is strong between close slices and degrades over long gaps, where the model's
    propagation holds (measured in BENCHMARKS.md)."""
    grow_referee: bool = True
    """Let Slicer's Grow from seeds take a label whose hidden painted slices between two others it predicts better
    than the gap filler does (:mod:`medadapt.slices.grow_referee`; needs three painted slices of the label and
    slicer-core)."""
    largest_component: bool = False
    fill_holes: bool = False

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)
