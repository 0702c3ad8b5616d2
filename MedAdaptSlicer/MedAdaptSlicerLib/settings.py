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


COMPUTE_MODE, SERVER_URL, SERVER_TOKEN = "computeMode", "serverUrl", "serverToken"
"""Settings the module's Compute section writes and the Segment Editor effect reads: ``Local`` or ``Remote``, and
the server's URL and bearer token. Like every Slicer setting they are kept in plain text in the user's
``Slicer.ini``, the token included."""


def remote_settings(settings) -> tuple[bool, str, str]:
    """(Remote mode chosen, server URL, token) as saved; anything but ``Remote`` is Local."""
    def text(name: str) -> str:
        return str(settings.value(PREFIX + name) or "").strip()
    return text(COMPUTE_MODE) == "Remote", text(SERVER_URL), text(SERVER_TOKEN)
