"""The adapted model the module holds, and saving / loading it as a MedAdapt adapter folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medadapt.artifacts import load_adapter, load_atlas, load_heads, run_facts, save_adapter
from medadapt.methods.atlas import Atlas
from medadapt.backends.base import PromptableBackend
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.methods.heads import HeadSet
from medadapt.methods.registry import METHODS

SAVABLE_METHODS = tuple(name for name, method in METHODS.items() if method.saveable and method.trained)


@dataclass
class AdaptedModel:
    """A backend ready to segment new volumes: its config, intensity window, slice axis, run facts, the FSEFT
    ``heads`` of a head method and, for LoRA, the ``atlas`` that finds the structure without prompts."""

    backend: PromptableBackend
    config: AdaptConfig
    window: tuple[float, float]
    axis: int
    validation_dice: dict = field(default_factory=dict)
    exemplar_slices: list[int] = field(default_factory=list)
    heads: HeadSet | None = None
    atlas: Atlas | None = None
    losses: list[float] = field(default_factory=list)
    size_priors: dict[int, float] = field(default_factory=dict)


def save_model(directory: str | Path, model: AdaptedModel) -> Path:
    """Write ``model`` as an adapter folder (weights, heads, atlas + manifest; the layout of ``medadapt adapt``)."""
    if model.config.method not in SAVABLE_METHODS:
        raise InputError(f"save adapter: only a trained model can be saved ({', '.join(SAVABLE_METHODS)}; this "
                         f"one is '{model.config.method}'); run Adapt with one of those methods first")
    facts = run_facts(model.axis, model.exemplar_slices, [1], model.window, model.validation_dice, model.losses,
                      model.size_priors)
    return save_adapter(directory, model.backend, model.config, facts, model.heads, model.atlas)


def load_model(directory: str | Path, device: str = "cpu") -> AdaptedModel:
    """Read an adapter folder written by :func:`save_model` or the ``medadapt`` command line."""
    backend, manifest, config = load_adapter(directory, device)
    if "window" not in manifest or "exemplars" not in manifest:
        raise InputError(f"adapter {directory}: manifest lacks 'window' or 'exemplars' (axis); re-save it")
    dice = {int(k): float(v) for k, v in manifest.get("validation_dice", {}).items()}
    return AdaptedModel(backend, config, tuple(manifest["window"]), int(manifest["exemplars"]["axis"]), dice,
                        list(manifest["exemplars"].get("slices", [])), load_heads(directory, manifest),
                        load_atlas(directory, manifest))
