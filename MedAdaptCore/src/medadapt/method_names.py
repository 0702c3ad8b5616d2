"""The names of the adaptation methods, importable without torch (the command line checks ``--method`` before
anything heavy is loaded)."""

from .errors import InputError

METHODS = ("lora", "zero-shot", "fill", "linear-probe", "spatial-adapter", "spatial-adapter-ti")
HEAD_METHODS = {"linear-probe": ("linear-probe", False), "spatial-adapter": ("spatial-adapter", False),
                "spatial-adapter-ti": ("spatial-adapter", True)}
"""FSEFT methods -> (head kind, constrained transductive inference); they segment every slice without prompts."""


def require_known_method(method: str) -> None:
    """:class:`InputError` naming ``--method`` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
