"""The three core types the thin client shares with Local mode: :class:`InputError`, :class:`CancelledError` and
:class:`Progress`. They are the core's own (``medadapt.errors``, ``medadapt.progress``) when the ``medadapt``
package is installed, so Local mode and its callers catch exactly the core's classes; in a Slicer without the
core (Remote mode needs neither it nor torch) they are stand-ins of the same names, bases and fields. The
stand-ins copy the core's definitions on purpose (a stock Slicer cannot import the core, so they cannot be shared):
a change to ``medadapt.errors`` or ``medadapt.progress.Progress`` is made here too.

Everything Remote mode imports (``remote``, ``remote_client``, ``conversion``, ``results``, ``jobs``,
``parameters``, ``settings``) imports the core only through this module or inside Local-only functions.
"""

from __future__ import annotations

try:
    from medadapt.errors import CancelledError, InputError
    from medadapt.progress import Progress
    CORE = True
except ImportError:  # Remote mode in a Slicer without the core
    from dataclasses import dataclass

    CORE = False

    class InputError(ValueError):
        """Bad user input (file, field or value)."""

    class CancelledError(RuntimeError):
        """The user cancelled a running job; nothing was written."""

    @dataclass(frozen=True)
    class Progress:
        """One report: ``stage`` name, ``step`` of ``total``, current ``loss`` and ``eta_s`` seconds."""

        stage: str
        step: int
        total: int
        loss: float | None = None
        eta_s: float | None = None

__all__ = ["CORE", "CancelledError", "InputError", "Progress"]
