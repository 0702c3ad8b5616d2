"""Settings kept across Slicer sessions: the lineages offered as base models, Local / Remote and the server."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MedAdaptSlicer"))
from MedAdaptSlicerLib.settings import (remember_lineage, remembered_lineages, remote_settings,  # noqa: E402
                                        restore_settings, save_settings)


def test_remembered_lineages_are_the_folders_that_still_hold_one(tmp_path):
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    (kept / "lineage.json").write_text("{}")
    saved = remember_lineage(remember_lineage(None, gone), kept)
    assert saved.split(";")[0] == str(kept.resolve())
    assert remembered_lineages(saved) == [str(kept.resolve())], "a folder without lineage.json is not offered"
    assert remembered_lineages(remember_lineage(saved, kept)) == [str(kept.resolve())], "each folder once"


class Settings(dict):
    """QSettings' value / setValue over a dict."""

    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value):
        self[key] = value


def test_remote_settings_are_what_the_module_saved_and_anything_else_is_local():
    settings = Settings()
    assert remote_settings(settings) == (False, "", "")
    widgets = {"computeMode": (type("Combo", (), {"currentText": "Remote"})(), "currentText"),
               "serverUrl": (type("Line", (), {"text": " https://gpu-box:8790 "})(), "text"),
               "serverToken": (type("Line", (), {"text": "token-0123456789abcdef"})(), "text")}
    save_settings(settings, widgets)
    assert remote_settings(settings) == (True, "https://gpu-box:8790", "token-0123456789abcdef")
    settings.setValue("MedAdapt/computeMode", "auto")
    assert remote_settings(settings)[0] is False
    combo = type("Combo", (), {"currentText": "Local"})()
    restore_settings(Settings({"MedAdapt/computeMode": "Remote"}), {"computeMode": (combo, "currentText")})
    assert combo.currentText == "Remote"
