"""Accept and Apply write the segment that was chosen, never another one: the target is the second (or the
last) of three segments, never the first, and every other segment is byte-identical afterwards.

Real MRML (slicer-core), a small oblique volume and no model: previews are synthetic or come from the ``fill``
method (Local, Remote through a real ``medadapt serve``, and the Segment Editor effect), whose ITK interpolation
(a child process, seconds) is stood in for by a numpy fill between the painted slices. Segments are read back
with ``slicer.util.arrayFromSegmentBinaryLabelmap`` (an export through the Segmentations logic), not with the
module's own conversion code. The three segments start on one shared labelmap layer (they do not overlap) and
the previews overlap the first and the last segment.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import slicer

from conftest import free_port
from slicer_fixtures import REPO, add_segmentation, make_scene
from server_fixtures import InProcessServer
from MedAdaptSlicerLib import results
from MedAdaptSlicerLib.conversion import update_node_from_volume
from MedAdaptSlicerLib.effect import EffectSession
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.parameters import Parameters
from MedAdaptSlicerLib.remote import RemoteLogic
from MedAdaptSlicerLib.results import EDITABLE_AREAS, preview_name
from medadapt.io.volume import Geometry, Volume
from medadapt.server.settings import ServerSettings

SHAPE = (12, 24, 28)
PAINTED = (3, 8)
TOKEN = "accept-test-token-0123456789abcdef"
ALIVE = []


def box(z, y, x) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[z, y, x] = 1
    return mask


FIRST = box(slice(1, 11), slice(2, 8), slice(2, 10))
MIDDLE = np.zeros(SHAPE, np.uint8)
MIDDLE[list(PAINTED), 10:16, 9:18] = 1  # painted on two slices, between the other two segments
LAST = box(slice(1, 11), slice(18, 23), slice(12, 26))
PREVIEW = {"middle": box(slice(2, 10), slice(6, 20), slice(6, 22)),  # overlaps the first and the last segment
           "last": box(slice(0, 12), slice(12, 24), slice(20, 28)),  # overlaps the middle and the last one
           "first": box(slice(1, 11), slice(2, 5), slice(2, 6))}  # inside the first segment only


FILLED_MIDDLE = box(slice(PAINTED[0], PAINTED[1] + 1), slice(10, 16), slice(9, 18))
"""What filling between the middle segment's painted slices gives."""


def quick_interpolation(mask: np.ndarray, axis: int) -> np.ndarray:
    """Stand-in for ``medadapt.slices.fill.interpolate_mask``: each gap between painted slices gets the union
    of its two bounding slices (exact for the box painted here)."""
    moved = np.moveaxis(mask.astype(bool), axis, 0)
    painted = np.flatnonzero(moved.any(axis=(1, 2)))
    out = moved.copy()
    for low, high in zip(painted[:-1], painted[1:]):
        out[low:high + 1] |= moved[low] | moved[high]
    return np.moveaxis(out, 0, axis)


@pytest.fixture
def quick_fill(monkeypatch):
    from medadapt.slices import fill
    monkeypatch.setattr(fill, "interpolate_mask", quick_interpolation)


def make_case():
    """Scene with an oblique volume and the segments first, middle, last (in that order)."""
    scene, app, logics = make_scene()
    ALIVE.append((app, logics))
    angle = np.deg2rad(30)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique")
    image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    update_node_from_volume(volume, Volume(image, Geometry(tuple(reversed(SHAPE)), (0.8, 1.1, 2.5), (5.0, -7.0, 11.0),
                                                           tuple(rotation.ravel()))))
    segmentation = add_segmentation(scene, volume, {"first": FIRST, "middle": MIDDLE, "last": LAST})
    return scene, volume, segmentation


@pytest.fixture
def case():
    scene, volume, segmentation = make_case()
    ids = segment_ids(segmentation)
    assert [segmentation.GetSegmentation().GetSegment(i).GetName() for i in ids] == ["first", "middle", "last"]
    yield scene, volume, segmentation
    scene.Clear(1)


def segment_ids(segmentation) -> list[str]:
    s = segmentation.GetSegmentation()
    return [s.GetNthSegmentID(n) for n in range(s.GetNumberOfSegments())]


def by_name(segmentation, name: str) -> str:
    return segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)


def labelmaps(segmentation, volume) -> dict[str, np.ndarray]:
    """Segment ID -> its binary labelmap on the volume grid, exported by the Segmentations logic."""
    return {i: slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, i, volume) for i in segment_ids(segmentation)}


def described(segmentation) -> list[tuple]:
    """(ID, name, colour) of every segment, in order."""
    s = segmentation.GetSegmentation()
    return [(i, s.GetSegment(i).GetName(), tuple(round(c, 6) for c in s.GetSegment(i).GetColor()))
            for i in segment_ids(segmentation)]


def assert_only_changed(before: dict, after: dict, changed: dict[str, np.ndarray]) -> None:
    """Every segment in ``before`` but those in ``changed`` (ID -> expected mask) is byte-identical in
    ``after``; those in ``changed`` hold exactly the expected mask."""
    for segment_id, array in before.items():
        if segment_id in changed:
            np.testing.assert_array_equal(after[segment_id].astype(bool), changed[segment_id].astype(bool),
                                          err_msg=f"segment {segment_id}")
        else:
            assert after[segment_id].dtype == array.dtype and after[segment_id].tobytes() == array.tobytes(), \
                f"segment {segment_id} changed though {sorted(changed)} was the target"


def accept_with(via: str):
    """Accept as the module's Accept button runs it, for the Local or Remote compute mode, or the function both
    call."""
    if via == "results":
        return lambda volume, segmentation, target, editable, replace: results.accept_preview(
            segmentation, target, volume, editable, replace)
    logic = (MedAdaptLogic(SynchronousRunner()) if via == "local"
             else RemoteLogic("http://127.0.0.1:9", "unused", SynchronousRunner()))  # Accept never calls the server
    return lambda volume, segmentation, target, editable, replace: logic.accept(volume, segmentation, target,
                                                                                editable, replace)


@pytest.mark.parametrize("replace", [True, False], ids=["replace", "add"])
@pytest.mark.parametrize("editable", EDITABLE_AREAS)
@pytest.mark.parametrize("target_name", ["middle", "last"])
@pytest.mark.parametrize("via", ["results", "local", "remote"])
def test_accept_writes_the_chosen_segment_and_no_other(case, via, target_name, editable, replace):
    scene, volume, segmentation = case
    target = by_name(segmentation, target_name)
    results.show_preview(segmentation, by_name(segmentation, "first"), volume, PREVIEW["first"])  # another preview
    results.show_preview(segmentation, target, volume, PREVIEW[target_name])
    before, order = labelmaps(segmentation, volume), described(segmentation)
    target_preview = by_name(segmentation, preview_name(target_name))

    previous = accept_with(via)(volume, segmentation, target, editable, replace)

    after = labelmaps(segmentation, volume)
    assert target_preview not in after and by_name(segmentation, preview_name("first")) in after
    assert described(segmentation) == [d for d in order if d[0] != target_preview]
    np.testing.assert_array_equal(previous, before[target])
    expected = PREVIEW[target_name].astype(bool)
    if editable == "outside other segments":
        for segment_id in before:
            if segment_id not in (target, target_preview):
                expected &= ~before[segment_id].astype(bool)
    if not replace:
        expected |= before[target].astype(bool)
    assert_only_changed({k: v for k, v in before.items() if k != target_preview}, after, {target: expected})
    assert not np.array_equal(after[target], before[target])


@pytest.mark.parametrize("via", ["local", "remote"])
def test_adapt_previews_the_chosen_segment_then_accept_and_reject_touch_only_it(case, via, request, quick_fill):
    scene, volume, segmentation = case
    logic = (MedAdaptLogic(SynchronousRunner()) if via == "local"
             else RemoteLogic(request.getfixturevalue("server").url, TOKEN, SynchronousRunner()))
    middle = by_name(segmentation, "middle")
    before = labelmaps(segmentation, volume)
    job = logic.start_adapt(volume, segmentation, middle, Parameters(method="fill", device="cpu"))
    assert job.state == "done", job.error
    previewed = labelmaps(segmentation, volume)
    preview_id = by_name(segmentation, preview_name("middle"))
    assert [n for _, n, _ in described(segmentation)] == ["first", "middle", "last", preview_name("middle")]
    assert_only_changed(before, previewed, {})  # Adapt changes no segment
    preview = previewed[preview_id].astype(bool)
    np.testing.assert_array_equal(preview, FILLED_MIDDLE)  # from the middle segment's painting, no other's

    assert logic.reject(segmentation, middle)
    assert_only_changed(before, labelmaps(segmentation, volume), {})
    assert segment_ids(segmentation) == list(before)

    logic.start_adapt(volume, segmentation, middle, Parameters(method="fill", device="cpu"))
    logic.accept(volume, segmentation, middle, "outside other segments")
    after = labelmaps(segmentation, volume)
    assert segment_ids(segmentation) == list(before)
    expected = preview & ~before[by_name(segmentation, "first")].astype(bool) & ~before[by_name(segmentation,
                                                                                                "last")].astype(bool)
    assert_only_changed(before, after, {middle: expected})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = InProcessServer(ServerSettings(tmp_path_factory.mktemp("accept") / "data", port=free_port(),
                                             tokens={TOKEN: "radiologist"}))
    yield running
    running.stop()


# --- the Segment Editor effect's Apply -------------------------------------------------------------------------
def editor_on(scene, volume, segmentation, selected: str, mask_mode=None):
    """A segment editor node on the case with ``selected`` selected, nothing overwritten (Slicer's overwrite
    setting would erase other segments by design), and ``mask_mode`` (default: everywhere)."""
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volume)
    editor.SetSelectedSegmentID(by_name(segmentation, selected))
    editor.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    if mask_mode is not None:
        editor.SetMaskMode(mask_mode)
    return editor


class ScriptedEffectStandIn:
    """What the Segment Editor hands the Qt effect (``qSlicerSegmentEditorScriptedEffect``), for its
    :class:`EffectWriter`: ``modifySegmentByLabelmap`` does what Slicer's does, through the segment editor logic
    bound to the same editor node; the calls are recorded."""

    def __init__(self, editor):
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(editor.GetScene())
        self.logic.SetSegmentEditorNode(editor)
        self.calls = []

    def saveStateForUndo(self):
        self.logic.SaveStateForUndo()

    def modifySegmentByLabelmap(self, segmentation_node, segment_id, labelmap, mode, bypass_masking=False):
        assert mode == "Set"
        self.calls.append(segment_id)
        self.logic.ModifySegmentByLabelmap(segmentation_node, segment_id, labelmap, self.logic.ModificationModeSet,
                                           bypass_masking, False)


def qt_effect_writer(monkeypatch, editor):
    """The Qt effect's own writer (``SegmentEditorMedAdaptEffect.EffectWriter``) over a stand-in scripted effect;
    the Qt-only modules it imports are stood in for."""
    effects = types.ModuleType("SegmentEditorEffects")
    effects.AbstractScriptedSegmentEditorEffect = object
    monkeypatch.setitem(sys.modules, "SegmentEditorEffects", effects)
    monkeypatch.setitem(sys.modules, "qt", types.ModuleType("qt"))
    monkeypatch.setattr(slicer, "qSlicerSegmentEditorAbstractEffect",
                        types.SimpleNamespace(ModificationModeSet="Set"), raising=False)
    spec = importlib.util.spec_from_file_location("effect_under_test",
                                                  REPO / "MedAdaptSlicer" / "SegmentEditorMedAdaptEffect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stand_in = ScriptedEffectStandIn(editor)
    return module.EffectWriter(stand_in), stand_in


@pytest.mark.parametrize("writer", ["editor logic", "Qt effect"])
@pytest.mark.parametrize("selected", ["first", "middle"])
def test_effect_apply_writes_each_preview_into_its_own_segment(case, writer, selected, monkeypatch):
    scene, volume, segmentation = case
    editor = editor_on(scene, volume, segmentation, selected)
    stand_in = None
    if writer == "Qt effect":
        effect_writer, stand_in = qt_effect_writer(monkeypatch, editor)
        session = EffectSession(editor, SynchronousRunner(), effect_writer)
    else:
        session = EffectSession(editor, SynchronousRunner())
    middle, last = by_name(segmentation, "middle"), by_name(segmentation, "last")
    session.show_previews({middle: PREVIEW["middle"], last: PREVIEW["last"]})
    before = labelmaps(segmentation, volume)
    assert session.apply() == [middle, last]
    assert_only_changed(before, labelmaps(segmentation, volume), {middle: PREVIEW["middle"], last: PREVIEW["last"]})
    assert editor.GetSelectedSegmentID() == by_name(segmentation, selected)
    if stand_in is not None:
        assert stand_in.calls == [middle, last]


@pytest.mark.parametrize("selected", ["first", "middle", "last"])
def test_effect_apply_masks_relative_to_the_segment_it_writes(case, selected):
    """Editable area "outside all segments": the segment written is the one left out of "all segments", whichever
    segment the user has selected in the editor (Slicer masks relative to the selected segment)."""
    scene, volume, segmentation = case
    editor = editor_on(scene, volume, segmentation, selected,
                       slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    session = EffectSession(editor, SynchronousRunner())
    middle = by_name(segmentation, "middle")
    session.show_previews({middle: PREVIEW["middle"]})
    before = labelmaps(segmentation, volume)
    session.apply()
    first, last = by_name(segmentation, "first"), by_name(segmentation, "last")
    expected = PREVIEW["middle"].astype(bool) & ~before[first].astype(bool) & ~before[last].astype(bool)
    assert_only_changed(before, labelmaps(segmentation, volume), {middle: expected})
    assert editor.GetSelectedSegmentID() == by_name(segmentation, selected)


def test_effect_adapts_the_segments_asked_for_not_the_selected_one(case, quick_fill):
    scene, volume, segmentation = case
    editor = editor_on(scene, volume, segmentation, "last")
    session = EffectSession(editor, SynchronousRunner())
    middle = by_name(segmentation, "middle")
    before = labelmaps(segmentation, volume)
    job = session.start_adapt(Parameters(method="fill", device="cpu"), [middle])
    assert job.state == "done", job.error
    assert list(session.previews) == [middle]
    preview = session.previews[middle].astype(bool)
    np.testing.assert_array_equal(preview, FILLED_MIDDLE)
    assert_only_changed(before, labelmaps(segmentation, volume), {})  # the preview lives in its own node
    assert session.apply() == [middle]
    assert_only_changed(before, labelmaps(segmentation, volume), {middle: preview})
