"""Progress reports and cancellation shared by the CLI (tqdm) and the Slicer module (progress bar)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from medadapt.errors import CancelledError


@dataclass(frozen=True)
class Progress:
    """One report: ``stage`` name, ``step`` of ``total``, current ``loss`` (training) and ``eta_s`` seconds."""

    stage: str
    step: int
    total: int
    loss: float | None = None
    eta_s: float | None = None


ProgressCallback = Callable[[Progress], None]


class CancelFlag(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelFlag | None) -> None:
    """Raise :class:`CancelledError` when the user asked to stop."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("cancelled by the user")


def report(callback: ProgressCallback | None, event: Progress) -> None:
    """Send ``event`` to ``callback`` if there is one."""
    if callback is not None:
        callback(event)
