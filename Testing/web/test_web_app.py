"""``medadapt web`` without a browser: the real trame-slicer app (its server built, not started) on the sample CT.
The brush strokes the browser test drags are sent through the same path the page's mouse events take (the
view's remote-controlled-area adapter, into the slice view's interactor and the Paint effect), so the stroke
plan is checked here; then Adapt -> preview -> Accept -> label map bytes, Cancel and Reject, and Remote mode
against an in-process ``medadapt serve``."""

from __future__ import annotations

import itertools
import sys
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, free_port
from web_strokes import BRUSH_MM, IMAGE, PAINTED_SLICES, SliceGeometry, dice, reference_liver, view_strokes

pytest.importorskip("trame_slicer", reason="the browser UI needs trame-slicer (requirements.txt)")
sys.path.insert(0, str(REPO / "MedAdaptSlicer"))

from MedAdaptSlicerLib.conversion import segment_array  # noqa: E402
from medadapt_web.app import MedAdaptWebApp  # noqa: E402
from trame.app import get_server  # noqa: E402
from trame_slicer.segmentation import SegmentationEffectPaint  # noqa: E402

VIEW_SIZE = (520, 760)
_names = itertools.count()


def new_app(**kwargs) -> MedAdaptWebApp:
    """The app on a fresh trame server (not started) with the sample loaded and the axial view sized."""
    app = MedAdaptWebApp(server=get_server(f"medadapt-web-test-{next(_names)}", client_type="vue3"), **kwargs)
    app.load(IMAGE)
    axial(app).view_adapter.update_size("test", {"w": VIEW_SIZE[0], "h": VIEW_SIZE[1], "p": 1})
    return app


def axial(app):
    """The axial view's remote-controlled area (its ``view_adapter`` receives the page's events)."""
    factory = next(f for f in app.slicer_app.view_manager._factories if f.has_view("Red"))
    return factory.get_factory_view("Red")


def drag(adapter, start, end, steps: int = 1) -> None:
    """A left-button drag as the page sends it: positions in view pixels from the bottom-left."""
    width, height = VIEW_SIZE

    def send(kind, x, y, left):
        adapter.on_interaction(None, {"type": kind, "x": x, "y": height - y, "w": width, "h": height,
                                      "buttonLeft": left, "ctrlKey": False, "shiftKey": False, "altKey": False})
    send("MouseMove", *start, 0)
    send("LeftButtonPress", *start, 1)
    for step in range(1, steps + 1):
        send("MouseMove", *(s + (e - s) * step / steps for s, e in zip(start, end)), 1)
    send("LeftButtonRelease", *end, 0)


def paint_liver(app) -> np.ndarray:
    """Paint the liver on the three slices with the Paint effect; returns the painted mask."""
    app.brush.data.brush_diameter_slider.value = BRUSH_MM
    app.slicer_app.segmentation_editor.set_active_effect_type(SegmentationEffectPaint)
    area = axial(app)
    liver = reference_liver()
    low, _ = area.slicer_view.get_slice_range()
    for k in PAINTED_SLICES:
        area.slicer_view.set_slice_value(low + k * area.slicer_view.get_slice_step())
        for start, end in view_strokes(k, *VIEW_SIZE, liver=liver):
            drag(area.view_adapter, start, end)
    session = app.session
    return segment_array(session.segmentation_node, session.segment_id, session.volume_node)


def run_job(app, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while app.session.poll():
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def painted_app():
    app = new_app(method="fill")
    painted = paint_liver(app)
    return app, painted


def test_the_stroke_plan_paints_the_liver_on_exactly_the_three_slices(painted_app):
    app, painted = painted_app
    liver = reference_liver()
    assert sorted(np.flatnonzero(painted.any(axis=(1, 2)))) == list(PAINTED_SLICES)
    for k in PAINTED_SLICES:
        assert dice(painted[k], liver[k]) >= 0.88, k


def test_adapt_preview_accept_and_download(painted_app, tmp_path):
    app, painted = painted_app
    app.state.ma_method = "fill"
    app.adapt()
    assert app.state.ma_busy and app.state.ma_phase == "running"
    run_job(app)
    assert not app.state.ma_busy and app.state.ma_phase == "preview" and app.state.ma_has_preview
    session = app.session
    preview = segment_array(session.segmentation_node, app.session.segmentation_node.GetSegmentation()
                            .GetSegmentIdBySegmentName("liver (MedAdapt)"), session.volume_node)
    assert preview.sum() > painted.sum()
    assert (segment_array(session.segmentation_node, session.segment_id, session.volume_node) == painted).all()

    app.accept()
    assert app.state.ma_phase == "accepted" and not app.state.ma_has_preview and app.state.ma_can_download
    accepted = segment_array(session.segmentation_node, session.segment_id, session.volume_node)
    assert (accepted == preview).all()

    (tmp_path / "liver.nii.gz").write_bytes(session.label_map_bytes())
    downloaded, image = sitk.ReadImage(str(tmp_path / "liver.nii.gz")), sitk.ReadImage(str(IMAGE))
    for field in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(downloaded, field)(), getattr(image, field)(), atol=1e-4), field
    labels = sitk.GetArrayFromImage(downloaded)
    assert set(np.unique(labels)) == {0, 1} and (labels == accepted).all()
    assert dice(labels, reference_liver()) > 0.6  # fill between three slices: a rough liver


def test_cancel_leaves_the_scene_unchanged_and_reject_removes_the_preview(painted_app):
    app, _ = painted_app
    session = app.session
    before = segment_array(session.segmentation_node, session.segment_id, session.volume_node)
    app.adapt()
    app.cancel()
    run_job(app)
    assert app.state.ma_phase == "cancelled" and not app.state.ma_busy and not session.has_preview()
    app.adapt()
    run_job(app)
    assert app.state.ma_phase == "preview" and session.has_preview()
    app.reject()
    assert app.state.ma_phase == "ready" and not session.has_preview()
    assert (segment_array(session.segmentation_node, session.segment_id, session.volume_node) == before).all()


def test_adapt_with_nothing_painted_says_so():
    app = new_app()
    app.adapt()
    assert "empty: paint" in app.state.ma_error and not app.state.ma_busy and app.state.ma_phase == "ready"


def test_points_are_placed_by_clicks_in_the_slice_view():
    app = new_app()
    area, session = axial(app), app.session
    k, (i, j) = 15, (40, 50)
    low, _ = area.slicer_view.get_slice_range()
    area.slicer_view.set_slice_value(low + k * area.slicer_view.get_slice_step())
    geometry = SliceGeometry.of()
    app.place_point(True)
    click = geometry.to_view(i, j, *VIEW_SIZE)
    drag(area.view_adapter, click, click, steps=0)
    app.place_point(False)
    drag(area.view_adapter, geometry.to_view(i + 20, j, *VIEW_SIZE), geometry.to_view(i + 20, j, *VIEW_SIZE), 0)
    assert session.positive_node.GetNumberOfControlPoints() == 1
    assert session.negative_node.GetNumberOfControlPoints() == 1
    position = [0.0, 0.0, 0.0]
    session.positive_node.GetNthControlPointPositionWorld(0, position)
    expected = (geometry.ras_x0 + geometry.ras_dx * i, geometry.ras_y0 + geometry.ras_dy * j, low + 3.0 * k)
    assert np.allclose(position, expected, atol=1.5), (position, expected)
    app._refresh()
    assert app.state.ma_points == "1 positive, 1 negative"
    app.clear_points()
    assert app.state.ma_points == "no points"


def test_an_uploaded_file_replaces_the_volume_and_a_bad_one_is_reported():
    import asyncio

    app = new_app()
    first = app.session.volume_node
    upload = [{"name": "upload.nii.gz", "size": IMAGE.stat().st_size, "type": "application/gzip",
               "content": IMAGE.read_bytes()}]
    asyncio.run(app._on_upload(upload))
    assert app.state.ma_volume_name == "upload.nii.gz" and app.state.ma_phase == "ready" and not app.state.ma_error
    assert app.session.volume_node is not first and first.GetScene() is None
    assert len(list(app.slicer_app.scene.GetNodesByClass("vtkMRMLSegmentationNode"))) == 1
    asyncio.run(app._on_upload([{"name": "notes.txt", "size": 5, "type": "text/plain", "content": b"hello"}]))
    assert app.state.ma_error.startswith("upload refused: notes.txt: not an image file")
    assert app.session.volume_node.GetScene() is not None and app.state.ma_phase == "ready"  # nothing was loaded
    asyncio.run(app._on_upload([{"name": "notes.nii.gz", "size": 5, "type": "text/plain", "content": b"hello"}]))
    assert app.state.ma_error.startswith("upload refused: notes.nii.gz: ")  # its header is checked before loading
    assert app.session.volume_node.GetScene() is not None and app.state.ma_phase == "ready"
    empty = MedAdaptWebApp(server=get_server(f"medadapt-web-test-{next(_names)}", client_type="vue3"))
    empty.adapt()
    assert "load a volume first" in empty.state.ma_error


def test_remote_mode_runs_adapt_on_a_medadapt_server(painted_app, tmp_path):
    import uvicorn

    from MedAdaptSlicerLib.remote import RemoteLogic
    from medadapt.server.app import create_app
    from medadapt.server.settings import ServerSettings

    _, painted = painted_app
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServerSettings(tmp_path / "data", port=port)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        remote = RemoteLogic(f"http://127.0.0.1:{port}")
        app = new_app(jobs=remote, method="fill", mode="server")
        session = app.session
        from MedAdaptSlicerLib.conversion import write_segment_array
        write_segment_array(session.segmentation_node, session.segment_id, session.volume_node, painted)
        app.adapt()
        run_job(app, 120)
        assert app.state.ma_phase == "preview", app.state.ma_error
        app.accept()
        accepted = segment_array(session.segmentation_node, session.segment_id, session.volume_node)
        assert dice(accepted, reference_liver()) > 0.6
        # the job and the painted label map are deleted once used; the image stays for re-prompts until close
        assert remote.client._json("GET", "/v1/jobs") == [] and len(remote.client._json("GET", "/v1/volumes")) == 1
        app._close()
        assert remote.client._json("GET", "/v1/volumes") == []
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_command_checks_its_options_before_starting(tmp_path, capsys, monkeypatch):
    from medadapt.cli.main import build_parser, main
    from medadapt_web import cli as web

    monkeypatch.delenv("MEDADAPT_TOKEN", raising=False)
    assert main(["web", "--data", str(tmp_path / "missing.nii.gz")]) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "token").write_text("alice alice-token-0123456789abcdef\n")
    assert main(["web", "--server-token-file", str(tmp_path / "token")]) == 2
    assert "--server-token-file: only with --server" in capsys.readouterr().err
    assert main(["web", "--method", "magic"]) == 2
    assert main(["web", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb: expected at least 1, got 0" in capsys.readouterr().err
    parser = build_parser()
    args = parser.parse_args(["web", "--server", "http://127.0.0.1:1", "--server-token-file",
                              str(tmp_path / "token")])
    assert web.server_token_of(args) == "alice-token-0123456789abcdef"
    assert web.login_tokens(parser.parse_args(["web", "--token-file", str(tmp_path / "token")])) == {
        "alice-token-0123456789abcdef": "alice"}
    assert web.data_of(parser.parse_args(["web"])).name == "ct_abdomen_image.nii.gz"
    assert web.data_of(parser.parse_args(["web", "--data", "none"])) is None
    monkeypatch.setenv("MEDADAPT_SLICER_LIB", str(tmp_path))
    assert web.slicer_lib_folder() == REPO / "MedAdaptSlicer"  # no library there: the checkout's
