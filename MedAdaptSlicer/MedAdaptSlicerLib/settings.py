"""Choices kept across Slicer restarts in Slicer's settings (``MedAdapt/<name>``), shared by the module and the
Segment Editor effect. No Qt import: the caller passes its ``QSettings`` and ``{name: (widget, property)}``."""

from __future__ import annotations

from pathlib import Path

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


LINEAGES = "lineages"
"""Setting holding the lineage folders the module has added to (``;``-separated), offered as base models."""


def remembered_lineages(saved: str | None) -> list[str]:
    """The lineage folders in a saved setting that still hold a lineage, in the saved order."""
    folders = [part for part in (saved or "").split(";") if part]
    return [folder for folder in dict.fromkeys(folders) if (Path(folder) / "lineage.json").is_file()]


def remember_lineage(saved: str | None, folder: str | Path) -> str:
    """The setting with ``folder`` added (first, once)."""
    return ";".join(dict.fromkeys([str(Path(folder).resolve()), *remembered_lineages(saved)]))
