"""Adapter artifacts: trained LoRA / decoder weights and FSEFT heads (safetensors) plus a JSON manifest, saved
atomically; loaded only from a folder holding nothing but the plain files its manifest lists, each checksum-verified.
:class:`AdaptedModel` is what every front end holds, saves and loads."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save_file

from medadapt import __version__
from medadapt.backends import load_backend
from medadapt.backends.base import PromptableBackend
from medadapt.backends.checkpoints import sha256_of
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.folders import check_listed, check_output_folder, read_record, replaced_whole
from medadapt.io.volume import Volume, read_volume, write_volume
from medadapt.manifest import FORMAT, validated_manifest
from medadapt.methods.atlas import Atlas, make_atlas
from medadapt.methods.heads import HeadSet
from medadapt.methods.lora import adapter_state, add_lora
from medadapt.methods.registry import METHODS, method_for

if TYPE_CHECKING:
    from medadapt.io.exemplars import Exemplars
    from medadapt.methods.result import AdaptResult

WEIGHTS = "adapter.safetensors"
HEADS = "heads.safetensors"
BASE_DELTA = "base_delta.safetensors"
ATLAS_FILES = {"image": "atlas_image.nii.gz", "labels": "atlas_labels.nii.gz"}
MANIFEST = "manifest.json"


def check_model_folder(directory: str | Path) -> Path:
    """``directory`` as a Path when an adapter can be saved there (its parent exists and is writable, it is
    not a file), else :class:`InputError`; called before any work so a run never fails at its end."""
    return check_output_folder(directory, "--save-model")


def check_savable(method: str, option: str) -> None:
    """:class:`InputError` naming ``option`` when the registry says a ``method`` model cannot be saved."""
    if not method_for(method).saveable:
        raise InputError(f"{option}: method {method!r} trains no model to save (savable: "
                         f"{', '.join(name for name, m in METHODS.items() if m.saveable)})")


@dataclass
class AdaptedModel:
    """A backend ready to segment new volumes, as the command line, the Slicer module and the server hold, save
    and load it: its config, the intensity window and slice axis of the adaptation, run facts (painted slices
    and labels, validation Dice, losses, size priors), the FSEFT ``heads`` (a head method's, or LoRA's seed head)
    and the ``atlas`` of a method that keeps one (:attr:`Method.keeps_atlas`)."""

    backend: PromptableBackend
    config: AdaptConfig
    window: tuple[float, float] | None = None
    axis: int = 0
    validation_dice: dict[int, float] = field(default_factory=dict)
    exemplar_slices: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    heads: HeadSet | None = None
    atlas: Atlas | None = None
    losses: list[float] = field(default_factory=list)
    size_priors: dict[int, float] = field(default_factory=dict)
    grown_labels: list[int] = field(default_factory=list)
    """Labels the grow referee gave to Slicer's Grow from seeds in the adapting run (their validation Dice is
    Grow's held-out Dice; :mod:`medadapt.slices.grow_referee`)."""
    manifest: dict = field(default_factory=dict)
    """The manifest of a loaded model as read (empty for one adapted in this session)."""

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "AdaptedModel":
        """The model saved in ``directory`` (by :meth:`save`) on ``device``: base model, adapter, heads and atlas,
        each checksum-verified (:func:`load_adapter`, :func:`load_heads`, :func:`load_atlas`)."""
        backend, manifest, config = load_adapter(directory, device)
        exemplars = manifest.get("exemplars", {})
        final_loss = manifest.get("final_loss")
        return cls(backend, config, tuple(manifest["window"]) if "window" in manifest else None,
                   int(exemplars.get("axis", 0)),
                   {int(k): float(v) for k, v in manifest.get("validation_dice", {}).items()},
                   list(exemplars.get("slices", [])), list(exemplars.get("labels", [])),
                   load_heads(directory, manifest), load_atlas(directory, manifest),
                   [] if final_loss is None else [float(final_loss)],
                   {int(k): float(v) for k, v in manifest.get("size_priors", {}).items()},
                   [int(v) for v in manifest.get("grown_labels", [])], manifest)

    @classmethod
    def from_result(cls, result: "AdaptResult", config: AdaptConfig, image: Volume, exemplars: "Exemplars",
                    keep_atlas: bool = True) -> "AdaptedModel":
        """The model of an adaptation (``adapt(image, exemplars, config)`` returned ``result``). It keeps the atlas
        of ``image`` and its painting exactly when its method keeps one (:attr:`Method.keeps_atlas`) and
        ``keep_atlas`` (``False``: the user opted out, ``--no-atlas`` / a server job's ``"atlas": false``)."""
        keeps = keep_atlas and method_for(config.method).keeps_atlas
        return cls(result.backend, config, tuple(result.window), int(exemplars.axis), dict(result.validation_dice),
                   list(exemplars.slices), list(exemplars.labels), result.heads,
                   make_atlas(image, exemplars) if keeps else None, list(result.losses), dict(result.size_priors),
                   list(result.grown_labels))

    def save(self, directory: str | Path) -> Path:
        """Write this model as an adapter folder (:func:`save_adapter`, replaced whole) and return its path;
        :class:`InputError` naming the method and the savable ones when its method cannot be saved."""
        check_savable(self.config.method, "save")
        facts = run_facts(self.axis, self.exemplar_slices, self.labels, self.window, self.validation_dice,
                          self.losses, self.size_priors, self.grown_labels)
        return save_adapter(directory, self.backend, self.config, facts, self.heads, self.atlas)


def run_facts(axis: int, slices: list[int], labels: list[int], window: tuple[float, float] | None,
              validation_dice: dict[int, float], losses: list[float] = (), size_priors: dict[int, float] | None = None,
              grown_labels: list[int] = ()) -> dict:
    """The manifest's facts of one run (:meth:`AdaptedModel.save`'s, whichever front end saves it): exemplar axis,
    slices and labels, intensity window (left out when ``None``), validation Dice, final loss, size priors."""
    return {"exemplars": {"axis": int(axis), "slices": [int(s) for s in slices], "labels": [int(v) for v in labels]},
            **({} if window is None else {"window": [float(v) for v in window]}),
            "validation_dice": {str(k): float(v) for k, v in validation_dice.items()},
            "final_loss": float(losses[-1]) if len(losses) else None,
            "size_priors": {str(k): float(v) for k, v in (size_priors or {}).items()},
            "grown_labels": [int(v) for v in grown_labels]}


def save_adapter(directory: str | Path, backend: PromptableBackend, config: AdaptConfig, facts: dict,
                 heads: HeadSet | None = None, atlas: Atlas | None = None) -> Path:
    """Write the adapter weights, the FSEFT ``heads`` and the ``atlas`` (if any), the lineage delta the base
    model carried (if any) and the manifest into ``directory`` (replaced as a whole, never half-written).

    ``facts`` holds run facts for the manifest: exemplar axis / slices / labels, intensity window, validation
    Dice, ...
    """
    directory = check_model_folder(directory)
    with replaced_whole(directory) as staging:
        save_file(adapter_state(backend), str(staging / WEIGHTS))
        if getattr(backend, "base_delta", None) is not None:  # trained on a lineage model: keep it with the adapter
            save_file(backend.base_delta.tensors, str(staging / BASE_DELTA))
            facts = {**facts, "base_delta": {"sha256": sha256_of(staging / BASE_DELTA),
                                             "lineage": backend.base_delta.lineage,
                                             "stage": backend.base_delta.stage}}
        if heads is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()},
                      str(staging / HEADS))
            facts = {**facts, "heads": {**heads.describe(), "sha256": sha256_of(staging / HEADS)}}
        if atlas is not None:
            write_volume(atlas.image, staging / ATLAS_FILES["image"])
            write_volume(atlas.labels, staging / ATLAS_FILES["labels"])
            facts = {**facts, "atlas": {part: sha256_of(staging / name) for part, name in ATLAS_FILES.items()}}
        manifest = {
            "format": FORMAT,
            "medadapt_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "base_model": {"name": backend.name, "sha256": backend.checkpoint_sha256},
            "adapter_sha256": sha256_of(staging / WEIGHTS),
            "config": config.to_dict(),
            **facts,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return directory


def read_manifest(directory: str | Path) -> tuple[dict, AdaptConfig]:
    """The validated manifest of a saved adapter and its config, with a clear error for a missing, broken or
    tampered one and for a folder holding anything its manifest does not list (a symbolic link, a stray file)."""
    directory = Path(directory)
    path = directory / MANIFEST
    data, entries = read_record(directory, MANIFEST, f"--model {directory}: no {MANIFEST} (not a MedAdapt adapter "
                                "folder)", what="manifest")
    if not isinstance(data, dict):
        raise InputError(f"{path}: manifest must be a JSON object, got {type(data).__name__}")
    manifest, config = validated_manifest(data, path)
    check_listed(directory, entries, adapter_files(manifest), MANIFEST)
    return manifest, config


def adapter_files(manifest: dict) -> set[str]:
    """The files an adapter folder with ``manifest`` holds: nothing else may be in it."""
    optional = {BASE_DELTA: "base_delta", HEADS: "heads", **{name: "atlas" for name in ATLAS_FILES.values()}}
    return {MANIFEST, WEIGHTS} | {name for name, fact in optional.items() if fact in manifest}


def load_adapter(directory: str | Path, device: str = "cpu") -> tuple[PromptableBackend, dict, AdaptConfig]:
    """Base model + saved adapter, checksums and keys verified; returns (backend, manifest, config)."""
    directory = Path(directory)
    manifest, config = read_manifest(directory)
    weights = _verified_file(directory, WEIGHTS, manifest["adapter_sha256"])
    facts = manifest.get("base_delta")
    delta = _verified_file(directory, BASE_DELTA, facts["sha256"]) if facts else None  # all checked before loading
    backend = load_backend(manifest["base_model"]["name"], device, config.checkpoint, config.input_size)
    if delta is not None:
        from medadapt.lineage.model import BaseDelta, with_delta
        with_delta(backend, BaseDelta(_tensors(delta), facts["sha256"], facts.get("lineage", ""),
                                      facts.get("stage", 0)), str(delta))
    if manifest["base_model"].get("sha256") != backend.checkpoint_sha256:
        raise InputError(f"{directory}: adapter was trained on base weights {manifest['base_model'].get('sha256')}"
                         f" but the installed {backend.name} has {backend.checkpoint_sha256}")
    if method_for(config.method).trains_backend:
        add_lora(backend, config.adapter)
    state = _tensors(weights)
    expected = adapter_state(backend)
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise InputError(f"{weights}: adapter keys do not match the model ({len(missing)} missing, "
                         f"{len(extra)} unexpected, e.g. {(missing or extra or ['shape mismatch'])[0]})")
    backend.load_state_dict(state, strict=False)
    return backend.to(device).eval(), manifest, config


def _tensors(path: Path) -> dict:
    """The tensors of a safetensors file; :class:`InputError` naming it when unreadable."""
    try:
        return load_file(str(path))
    except Exception as exc:
        raise InputError(f"{path}: unreadable safetensors file ({exc})") from exc


def load_heads(directory: str | Path, manifest: dict) -> HeadSet | None:
    """The FSEFT heads saved beside an adapter (``None`` when it has none), checksum and keys verified."""
    if "heads" not in manifest:
        return None
    path = _verified_file(directory, HEADS, manifest["heads"].get("sha256"))
    heads = HeadSet.from_description(manifest["heads"])
    state = _tensors(path)
    expected = heads.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise InputError(f"{path}: head weights do not match the manifest's heads {manifest['heads']['kind']!r}")
    heads.load_state_dict(state)
    return heads.eval()


def load_atlas(directory: str | Path, manifest: dict) -> Atlas | None:
    """The atlas saved beside an adapter (``None`` when it has none), checksums verified."""
    if "atlas" not in manifest:
        return None
    parts = {part: read_volume(_verified_file(directory, name, manifest["atlas"].get(part)), label=part == "labels")
             for part, name in ATLAS_FILES.items()}
    return Atlas(parts["image"], parts["labels"])


def _verified_file(directory: str | Path, name: str, sha256: str | None) -> Path:
    """Path of file ``name`` of an adapter folder, refused when missing or when its checksum is not ``sha256``."""
    path = Path(directory) / name
    if not path.is_file():
        raise InputError(f"--model {directory}: {name} is missing")
    if sha256_of(path) != sha256:
        raise InputError(f"{path}: checksum does not match the manifest (file corrupt or replaced)")
    return path
