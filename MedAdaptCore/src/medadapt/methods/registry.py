"""The adaptation methods, each declared once: what it trains, whether it can be saved, what ``predict`` needs,
and the function that adapts with it. The pipeline, artifacts, command line and Slicer ask this registry
instead of comparing method names; a new method is one entry here and one module under ``methods/``.

Importable without torch (the command line checks ``--method`` before anything heavy loads): a method's
implementation module is imported only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

from medadapt.errors import InputError

if TYPE_CHECKING:
    from medadapt.methods.result import AdaptResult, AdaptRun


@dataclass(frozen=True)
class Method:
    """One adaptation method."""

    name: str
    summary: str
    trains: str
    """What adapting trains ("nothing" for none)."""
    saveable: bool
    """``--save-model`` / Save adapter / a server job's ``save_adapter`` can write it (for ``zero-shot``: the base
    model's name and hash, no weights)."""
    uses_model: bool
    """Runs the foundation model (Fill and Grow from seeds do not)."""
    adapt_function: str
    """``module:function`` taking an :class:`AdaptRun` and returning an :class:`AdaptResult`."""
    trains_backend: bool = False
    """Adapts the foundation model itself, in place (LoRA): the encoder's embeddings change when its LoRA
    placement includes the encoder, and a saved model is rebuilt with the adapters before its weights load."""
    head_kind: str | None = None
    """FSEFT head kind: such methods segment every slice with their heads, at ``adapt`` and ``predict``
    alike, without prompts; ``None`` for propagation from painted slices or clicks."""
    transductive: bool = False
    """Constrained transductive inference (the size prior shapes the heads' predictions)."""
    keeps_atlas: bool = False
    """A saved model of this method keeps the atlas (the adapted image and its painting filled between slices,
    :func:`medadapt.methods.atlas.make_atlas`: patient data), so that ``predict`` / Apply registers it onto a new
    volume and segments it without any prompt. The one rule of every front end (command line, Slicer module and
    batch script, server): :meth:`medadapt.artifacts.AdaptedModel.from_result` makes the atlas exactly when the
    method keeps one and the user did not opt out (``--no-atlas``, a server job's ``"atlas": false``).

    True for LoRA (a saveable method that trains the backend and has no FSEFT heads: its adapted model walks from
    the seeds the warped atlas gives). False for the head methods (their heads find the structure themselves),
    for ``fill`` and ``grow`` (nothing saved) and for ``zero-shot``: its saved model is the unadapted base model
    (name and hash, no weights), so an atlas would make the folder little more than the patient's volume and
    painting, and the Slicer module does not save zero-shot models at all."""

    @property
    def trained(self) -> bool:
        """Adapting trains something (``zero-shot``, ``fill`` and ``grow`` do not)."""
        return self.trains != "nothing"

    def adapt(self, run: "AdaptRun") -> "AdaptResult":
        """Run this method's adaptation."""
        module, function = self.adapt_function.split(":")
        return getattr(import_module(module), function)(run)


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("lora", "LoRA adapters of the foundation model, trained on the painted slices and synthetic variations",
           "LoRA adapters and the decoder heads", True, True, "medadapt.methods.lora:adapt_lora", trains_backend=True,
           keeps_atlas=True),
    Method("zero-shot", "the foundation model as it is, propagated from the painted slices", "nothing", True, True,
           "medadapt.methods.propagated:adapt_zero_shot"),
    Method("fill", "Slicer's Fill between slices (morphological contour interpolation)", "nothing", False, False,
           "medadapt.methods.fill:adapt_fill"),
    Method("grow", "Slicer's Grow from seeds (grow-cut from the painted slices; needs slicer-core)", "nothing",
           False, False, "medadapt.methods.grow:adapt_grow"),
    Method("linear-probe", "FSEFT: a linear head on frozen features", "a linear head per structure", True, True,
           "medadapt.methods.head_methods:adapt_with_heads", head_kind="linear-probe"),
    Method("spatial-adapter", "FSEFT: a small convolutional adapter head on frozen features",
           "a spatial adapter per structure", True, True, "medadapt.methods.head_methods:adapt_with_heads",
           head_kind="spatial-adapter"),
    Method("spatial-adapter-ti", "FSEFT: spatial adapter with constrained transductive inference",
           "a spatial adapter per structure", True, True, "medadapt.methods.head_methods:adapt_with_heads",
           head_kind="spatial-adapter", transductive=True),
)}
"""Every method by name, in the order the command line and the GUI list them."""


def method_for(name: str) -> Method:
    """The registered method called ``name``; :class:`InputError` naming ``--method`` otherwise."""
    if name not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def head_methods() -> list[str]:
    """Names of the methods that segment with trained heads (no prompt needed at ``predict``)."""
    return [name for name, method in METHODS.items() if method.head_kind is not None]
