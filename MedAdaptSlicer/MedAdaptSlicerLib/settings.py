"""Choices kept across Slicer restarts in Slicer's settings (``MedAdapt/<name>``), shared by the module and the
Segment Editor effect. No Qt import: the caller passes its ``QSettings`` and ``{name: (widget, property)}``."""

from __future__ import annotations

PREFIX = "MedAdapt/"


def restore_settings(settings, widgets: dict) -> None:
    """Set each widget's property to its saved value (none saved or empty: left as it is)."""
    for name, (widget, prop) in widgets.items():
        value = settings.value(PREFIX + name)
        if value is None or value == "":
            continue
        if prop == "value":
            value = int(value)
        elif prop == "checked":
            value = str(value).lower() == "true"
        setattr(widget, prop, value)


def save_settings(settings, widgets: dict) -> None:
    """Save each widget's property."""
    for name, (widget, prop) in widgets.items():
        settings.setValue(PREFIX + name, getattr(widget, prop))
