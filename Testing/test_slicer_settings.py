"""Settings kept across Slicer sessions: the lineages offered as base models."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MedAdaptSlicer"))
from MedAdaptSlicerLib.settings import remember_lineage, remembered_lineages  # noqa: E402


def test_remembered_lineages_are_the_folders_that_still_hold_one(tmp_path):
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    (kept / "lineage.json").write_text("{}")
    saved = remember_lineage(remember_lineage(None, gone), kept)
    assert saved.split(";")[0] == str(kept.resolve())
    assert remembered_lineages(saved) == [str(kept.resolve())], "a folder without lineage.json is not offered"
    assert remembered_lineages(remember_lineage(saved, kept)) == [str(kept.resolve())], "each folder once"
