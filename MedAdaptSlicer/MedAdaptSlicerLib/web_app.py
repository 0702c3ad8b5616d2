"""``medadapt web``: MedAdapt in a browser, a trame-slicer app on the same slicer-core MRML scene and the same
MedAdaptSlicerLib logic as the Slicer module.

Load a volume (the one given with ``--data`` at start, or an upload), paint the segment with the segment
editor's Paint effect in the axial view (trame-slicer's own effect, brush and undo), place optional positive /
negative points, Adapt (progress bar, Cancel), see the preview segment in the slice and 3D views, Accept or
Reject, and download the segment as a NIfTI label map. Adapt runs the local core (:class:`logic.MedAdaptLogic`)
or a ``medadapt serve`` server (:class:`remote.RemoteLogic`, the Slicer module's Remote mode).

Rendering: every view is a VTK render window rendered off screen on the server (VTK picks EGL, or OSMesa, when
there is no display) and streamed to the page as JPEG images by trame-rca; the page sends mouse and keyboard
events back, which reach the views' interactors, so painting runs the real segment editor effect on the server.
This module imports trame; the rest of the library does not (it is not part of the Slicer extension build).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import tempfile
from pathlib import Path

try:
    # Mesa's software OpenGL (llvmpipe) loads its libLLVM when a view first renders; triton (loaded by
    # torch._dynamo, e.g. through torchvision, when the core runs) crashes the process if it loads after that
    importlib.import_module("triton")
except ImportError:
    pass

from trame.app import TrameApp
from trame.widgets import html
from trame.widgets.vuetify3 import (VAlert, VBtn, VCard, VCardText, VCardTitle, VDivider, VProgressLinear, VSelect,
                                    VTextField)
from trame_server.utils.typed_state import TypedState

from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import SegmentEditorLogic
from trame_slicer.app.ui import SegmentEditorToolbarUI, SegmentEditorUI, SegmentEditorUndoRedoUI, ViewerLayout
from trame_slicer.app.ui.load_volume_ui import LoadVolumeButton, LoadVolumeItemsState
from trame_slicer.app.ui.segmentation import PaintEffectState
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.segmentation import BrushDiameterMode
from trame_slicer.utils import write_client_files_to_dir
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkCommand
from vtkmodules.vtkRenderingCore import vtkRenderWindow

from medadapt.errors import InputError

from .parameters import Parameters
from .web_session import WebSession

LAYOUT = "MedAdapt"
BRUSH_MM = 10
FPS_GPU, FPS_SOFTWARE = 30, 5
"""Most frames a second a view renders: with a GPU, and with Mesa's software renderer (llvmpipe) on the CPU,
where a frame takes tens of milliseconds and a higher rate leaves the event loop no time for the page's events
(painting would lag by seconds)."""
"""Default paint brush diameter in mm (the brush slider is in mm here; a cylinder one slice thick, so a stroke
paints only the slice shown)."""
POLL_S = 0.2

log = logging.getLogger(__name__)


def software_rendering() -> bool:
    """Whether VTK renders with a software OpenGL (Mesa's llvmpipe / softpipe / swrast: no GPU)."""
    importlib.import_module("vtkmodules.vtkRenderingOpenGL2")  # the OpenGL window behind vtkRenderWindow
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(8, 8)
    window.Render()
    capabilities = (window.ReportCapabilities() or "").lower()
    window.Finalize()
    return any(name in capabilities for name in ("llvmpipe", "softpipe", "swrast", "software rasterizer"))


def _methods() -> list[str]:
    from medadapt.methods.registry import METHODS
    return list(METHODS)


class MedAdaptWebApp(TrameApp):
    """The page and its server-side state. ``jobs``: see :class:`WebSession` (``None``: the local core);
    ``mode``: what the page says Adapt runs on; ``device``: the local core's device."""

    def __init__(self, server=None, jobs=None, segment_name: str = "liver", method: str = "lora",
                 device: str = "auto", mode: str = "local core"):
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        # each frame rendered and encoded once (the interactive quality is the still one), at most fps a second
        self.fps = FPS_SOFTWARE if software_rendering() else FPS_GPU
        register_rca_factories(self.slicer_app.view_manager, self.server, target_fps=self.fps,
                               blur_fps=self.fps / 2, interactive_quality=90)
        self.session = WebSession(self.slicer_app, jobs, segment_name)
        self.device = device
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT, Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view()]))
        self.layout_manager.set_layout(LAYOUT)
        for view in self.slicer_app.view_manager.get_views():
            # fit the image (camera) to the view whenever the page gives the view its size
            view.interactor().AddObserver(vtkCommand.WindowResizeEvent, lambda *_, v=view: self._fit(v))
        self.editor_logic = SegmentEditorLogic(self.server, self.slicer_app)
        self._poller: asyncio.Task | None = None
        self._changed = False  # the segmentation changed (painted): refresh the panel at the next poll
        self.slicer_app.segmentation_editor.segmentation_modified.connect(self._segmentation_changed)

        methods = _methods()
        self.state.update({
            "trame__title": "MedAdapt", "ma_methods": methods,
            "ma_method": method if method in methods else methods[0], "ma_iterations": "",
            "ma_mode": mode, "ma_volume_name": "", "ma_volume_stem": "volume", "ma_segment": segment_name, "ma_busy": False, "ma_progress": 0, "ma_progress_text": "",
            "ma_phase": "empty", "ma_status": "Load a volume", "ma_error": "", "ma_has_preview": False,
            "ma_can_download": False, "ma_points": "no points", "ma_voxels": 0,
        })
        self._build_ui()
        self.editor_logic.set_ui(self.editor_ui)
        self.brush = TypedState(self.state, PaintEffectState)
        self.brush.data.use_sphere_brush = False
        self.brush.data.brush_diameter_mode = BrushDiameterMode.Absolute
        self.brush.data.brush_diameter_slider.value = BRUSH_MM
        self.server.controller.on_server_ready.add(self._start_polling)
        self.server.controller.on_server_exited.add(self._close)

    # -- page ------------------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        with ViewerLayout(self.server, title="MedAdapt", is_drawer_visible=True) as self.layout:
            self.layout.title.set_text("MedAdapt")
            with self.layout.appbar:
                LoadVolumeButton(name="Open a volume (NIfTI, NRRD, MHA, DICOM files)", load_directory=False,
                                 icon="mdi-file-upload",
                                 typed_state=TypedState(self.state, LoadVolumeItemsState, namespace="ma_upload"),
                                 ).on_load_volume.connect(self._on_upload)
                html.Span("{{ ma_volume_name }}", classes="text-caption ml-2", id="ma-volume-name")
            with self.layout.drawer:
                self._build_panel()
                VDivider()
                with html.Div(style="height: 620px;"):
                    self.editor_ui = SegmentEditorUI()
            with self.layout.toolbar:
                SegmentEditorToolbarUI(editor_ui=self.editor_ui)
            with self.layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=self.editor_ui)
            with self.layout.content:
                self.layout_manager.initialize_layout_grid(self.layout)

    def _build_panel(self) -> None:
        with VCard(variant="flat", id="ma-panel"):
            VCardTitle("MedAdapt ({{ ma_mode }})", classes="text-subtitle-1")
            with VCardText(classes="d-flex flex-column ga-2"):
                html.Div("1. Paint the structure on a few axial slices (Paint effect below; brush size in mm), "
                         "2. optionally add points, 3. Adapt.", classes="text-caption")
                with html.Div(id="ma-method"):
                    VSelect(label="Method", v_model=("ma_method",), items=("ma_methods",), density="compact",
                            hide_details=True, disabled=("ma_busy",))
                VTextField(label="Iterations (empty: the method's default)", v_model=("ma_iterations",),
                           type="number", density="compact", hide_details=True, id="ma-iterations",
                           disabled=("ma_busy",))
                with html.Div(classes="d-flex ga-1 align-center"):
                    VBtn("+ point", size="small", variant="tonal", id="ma-add-positive",
                         click=(self.place_point, "[true]"), disabled=("ma_phase === 'empty' || ma_busy",))
                    VBtn("- point", size="small", variant="tonal", id="ma-add-negative",
                         click=(self.place_point, "[false]"), disabled=("ma_phase === 'empty' || ma_busy",))
                    VBtn("Clear", size="small", variant="text", id="ma-clear-points", click=self.clear_points,
                         disabled=("ma_phase === 'empty' || ma_busy",))
                    html.Span("{{ ma_points }}", classes="text-caption")
                with html.Div(classes="d-flex ga-2"):
                    VBtn("Adapt", color="primary", id="ma-adapt", click=self.adapt,
                         disabled=("ma_busy || ma_phase === 'empty'",))
                    VBtn("Cancel", color="warning", variant="tonal", id="ma-cancel", click=self.cancel,
                         v_show=("ma_busy",))
                VProgressLinear(model_value=("ma_progress",), height=8, color="primary", v_show=("ma_busy",),
                                id="ma-progress")
                html.Div("{{ ma_progress_text }}", classes="text-caption", v_show=("ma_busy",))
                with html.Div(classes="d-flex ga-2"):
                    VBtn("Accept", color="success", id="ma-accept", click=self.accept,
                         disabled=("!ma_has_preview || ma_busy",))
                    VBtn("Reject", variant="tonal", id="ma-reject", click=self.reject,
                         disabled=("!ma_has_preview || ma_busy",))
                VBtn("Download label map", prepend_icon="mdi-download", variant="tonal", id="ma-download",
                     disabled=("!ma_can_download || ma_busy",),
                     click=(f"utils.download(`${{ma_volume_stem}}_${{ma_segment}}.nii.gz`, "
                            f"trigger('{self.server.controller.trigger_name(self.download)}'), 'application/gzip')"))
                html.Div("{{ ma_status }}", classes="text-body-2", id="ma-status",
                         raw_attrs=[':data-phase="ma_phase"'])
                html.Div("'{{ ma_segment }}': {{ ma_voxels }} voxels", classes="text-caption", id="ma-voxels",
                         raw_attrs=[':data-voxels="ma_voxels"'])
                VAlert(text=("ma_error",), v_show=("ma_error",), type="error", density="compact", id="ma-error")

    # -- actions ---------------------------------------------------------------------------------------------

    def load(self, paths, name: str = "") -> None:
        """Load the volume in ``paths`` (start-up ``--data``, or uploaded files; see
        :meth:`WebSession.load_volume`) and show it; ``name``: what the page calls it (default: the file's)."""
        volume = self.session.load_volume(paths)
        name = name or Path(paths if isinstance(paths, (str, Path)) else paths[0]).name
        stem = name.split(".")[0] or "volume"
        for view in self.slicer_app.view_manager.get_slice_views():
            view.set_background_volume_id(volume.GetID())
            view.set_foreground_volume_id(None)
            view.set_visible_in_3d(True)
        self.slicer_app.display_manager.set_node_visible_in_group(volume)
        for view in self.slicer_app.view_manager.get_views():
            self._fit(view)
        # 3D surfaces are built once there is a preview (on a CPU, rebuilding them after every stroke slows painting)
        self.slicer_app.segmentation_editor.set_surface_representation_enabled(False)
        self.slicer_app.segmentation_editor.trigger_all_signals()
        self.state.update({"ma_volume_name": name, "ma_volume_stem": stem,
                           "ma_segment": self.session.segment_name, "ma_error": ""})
        self._set_phase("ready", "Paint the structure on a few slices, then Adapt")

    async def _on_upload(self, files: list[dict]) -> None:
        """Load uploaded files (one image file, or the files of a DICOM series)."""
        with tempfile.TemporaryDirectory(prefix="medadapt-web-upload-") as folder:
            paths = write_client_files_to_dir(files, folder)
            with self.state:
                try:
                    self.load(paths)
                except Exception as exc:  # noqa: BLE001 - shown on the page
                    self.state.ma_error = f"could not load {', '.join(Path(p).name for p in paths)}: {exc}"
                    if self.session.volume_node is None:
                        self.state.ma_volume_name = ""
                        self._set_phase("empty", "Load a volume")

    @staticmethod
    def _fit(view) -> None:
        """Fit the view to its content: the slice, or (3D) the segments seen from the front and a little above."""
        view.fit_view_to_content()
        if view.get_view_node() is not None and view.get_view_node().IsA("vtkMRMLViewNode"):
            renderer = view.first_renderer()
            renderer.GetActiveCamera().Elevation(25)
            renderer.GetActiveCamera().OrthogonalizeViewUp()
            renderer.ResetCameraClippingRange()
        view.schedule_render()

    def _segmentation_changed(self, *_) -> None:
        self._changed = True

    def _refresh(self) -> None:
        session = self.session
        self._changed = False
        self.state.ma_has_preview = session.has_preview()
        self.state.ma_voxels = session.painted_voxels()
        self.state.ma_can_download = self.state.ma_voxels > 0
        counts = [node.GetNumberOfControlPoints() if node is not None else 0
                  for node in (session.positive_node, session.negative_node)]
        self.state.ma_points = f"{counts[0]} positive, {counts[1]} negative" if any(counts) else "no points"
        self.slicer_app.segmentation_editor.trigger_all_signals()

    def _set_phase(self, phase: str, status: str) -> None:
        self.state.ma_phase, self.state.ma_status = phase, status
        self._refresh()

    def adapt(self) -> None:
        iterations = str(self.state.ma_iterations or "").strip()
        try:
            parameters = Parameters(method=self.state.ma_method, device=self.device,
                                    iterations=int(iterations) if iterations else 0)
            self.slicer_app.segmentation_editor.deactivate_effect()
            self.session.start_adapt(parameters, self._on_progress, self._on_done)
        except (InputError, ValueError) as exc:
            self.state.ma_error = str(exc)
            return
        self.state.update({"ma_busy": True, "ma_progress": 0, "ma_progress_text": "starting", "ma_error": ""})
        self._set_phase("running", f"Adapting ({self.state.ma_method}) ...")

    def _on_progress(self, event) -> None:
        self.state.ma_progress = round(100.0 * event.step / max(1, event.total))
        eta = f", about {event.eta_s:.0f} s left" if event.eta_s else ""
        self.state.ma_progress_text = f"{event.stage} {event.step}/{event.total}{eta}"

    def _on_done(self, job) -> None:
        self.state.ma_busy = False
        if job.state == "done":
            self._set_phase("preview", "Preview ready: Accept or Reject")
            self.slicer_app.segmentation_editor.set_surface_representation_enabled(True)
            self.slicer_app.segmentation_editor.trigger_all_signals()
            for view in self.slicer_app.view_manager.get_threed_views():
                self._fit(view)
        elif job.state == "cancelled":
            self._set_phase("cancelled", "Cancelled; nothing was changed")
        else:
            self.state.ma_error = f"Adapt failed: {job.error}"
            self._set_phase("failed", "Adapt failed")

    def cancel(self) -> None:
        self.session.cancel()

    def accept(self) -> None:
        voxels = self.session.accept()
        self._set_phase("accepted", f"Accepted: {voxels} voxels in '{self.session.segment_name}'; download it")

    def reject(self) -> None:
        self.session.reject()
        self._set_phase("ready", "Preview rejected")

    def place_point(self, positive: bool) -> None:
        node = self.session.positive_node if positive else self.session.negative_node
        if node is None:
            return
        self.slicer_app.segmentation_editor.deactivate_effect()
        self.slicer_app.markups_logic.place_node(node, persistent=False)
        self.state.ma_status = f"Click in a view to place a {'positive' if positive else 'negative'} point"

    def clear_points(self) -> None:
        self.session.clear_points()
        self._refresh()

    def download(self):
        """The segment as NIfTI bytes for the page's download."""
        return self.server.protocol.addAttachment(self.session.label_map_bytes())

    def _close(self, **_) -> None:
        """The server stops: cancel a running job; Remote mode deletes its kept uploads on the server."""
        self.session.cancel()
        close = getattr(self.session.jobs, "close", None)
        if close is not None:
            close()

    # -- job polling on the event loop (the scene's thread) ---------------------------------------------------

    def _start_polling(self, **_) -> None:
        if self._poller is None:
            self._poller = asyncio.ensure_future(self._poll_forever())

    async def _poll_forever(self) -> None:
        points = None
        while True:
            await asyncio.sleep(POLL_S)
            try:
                with self.state:
                    self.session.poll()
                    counts = tuple(node.GetNumberOfControlPoints() for node in
                                   (self.session.positive_node, self.session.negative_node) if node is not None)
                    if counts != points or self._changed:
                        points = counts
                        self._refresh()
            except Exception:  # noqa: BLE001 - keep serving; the error is logged
                log.exception("medadapt web: job polling failed")


def start(port: int = 8080, host: str = "127.0.0.1", data: str | Path | None = None, server_url: str = "",
          token: str = "", segment_name: str = "liver", method: str = "lora", device: str = "auto") -> None:
    """Build the app (local core, or ``server_url`` with ``token``), load ``data`` and serve until stopped."""
    import sys

    jobs, mode = None, "local core"
    if server_url:
        from .remote import RemoteLogic
        from .remote_client import RemoteError
        try:
            jobs = RemoteLogic(server_url, token)
            print(jobs.test_connection(), flush=True)  # fail now, with the server's answer, not at the first Adapt
        except RemoteError as exc:
            raise InputError(f"--server: {exc}") from exc
        mode = f"server {jobs.client.url}"
    app = MedAdaptWebApp(jobs=jobs, segment_name=segment_name, method=method, device=device, mode=mode)
    if data:
        app.load(data)
    print(f"medadapt web: http://{host}:{port}/ (Adapt runs on the {mode})", flush=True)
    sys.argv[1:] = []  # trame would parse medadapt's own options (--port, --data, ...) again
    app.server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0)
