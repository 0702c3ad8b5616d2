"""``medadapt web``: MedAdapt in a browser, a trame-slicer app on the same slicer-core MRML scene and the same
MedAdaptSlicerLib logic as the Slicer module.

Load a volume (the one given with ``--data`` at start, or an upload), paint the segment with the segment
editor's Paint effect in the axial view (trame-slicer's own effect, brush and undo), place optional positive /
negative points, Adapt (progress bar, Cancel), see the preview segment in the slice and 3D views, Accept or
Reject, and download the segment as a NIfTI label map. Adapt runs the local core
(:class:`MedAdaptSlicerLib.logic.MedAdaptLogic`) or a ``medadapt serve`` server
(:class:`MedAdaptSlicerLib.remote.RemoteLogic`, the Slicer module's Remote mode).

Rendering: every view is a VTK render window rendered off screen on the server (VTK picks EGL, or OSMesa, when
there is no display) and streamed to the page as JPEG images by trame-rca; the page sends mouse and keyboard
events back, which reach the views' interactors, so painting runs the real segment editor effect on the server.

Access (:class:`PageAccess`): a login through wslink's hello handshake, websockets only from the page's own
origin, and one session at a time; uploads are written under names this server makes (:func:`write_uploads`).

This module imports trame; ``MedAdaptSlicerLib``, the Slicer module's library it drives, does not (the desktop
Slicer has no trame). That library must be importable first: :func:`medadapt_web.cli.run` finds it
(:func:`medadapt_web.cli.slicer_lib_folder`).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import logging
import secrets
import tempfile
from pathlib import Path

try:
    # Mesa's software OpenGL (llvmpipe) loads its libLLVM when a view first renders; triton (loaded by
    # torch._dynamo, e.g. through torchvision, when the core runs) crashes the process if it loads after that
    importlib.import_module("triton")
except ImportError:
    pass

from aiohttp import web
from trame.app import TrameApp
from trame.app.file_upload import ClientFile
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
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkCommand
from vtkmodules.vtkRenderingCore import vtkRenderWindow
from wslink.websocket import LinkProtocol

from medadapt.errors import InputError
from medadapt.io.headers import MAX_VOXELS, checked_reader
from medadapt.server.settings import is_loopback

from MedAdaptSlicerLib.parameters import Parameters

from .session import WebSession

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

UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".dcm")
"""The uploads accepted, by the end of the client's file name (single-file formats: a written file keeps no
link to another file's name)."""
ENTRY_PATHS = ("/", "/index.html")
"""The page's entry: where a browser arrives, with the secret in the URL or to be asked for it."""
RELOAD_S = 2.0
"""How long the page's entry waits for an open session to close (a reloaded page's closes as the new one
loads) before refusing it."""
SINGLE_USER = ("medadapt web is single-user and a session is open (another tab or user): close it first (a "
               "dropped connection ends within about a minute)")
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                    "Referrer-Policy": "no-referrer"}
"""On every HTTP answer: no other site may frame the page, and the secret in its URL is never sent as a
Referer."""
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>MedAdapt login</title></head>
<body style="font-family: sans-serif; max-width: 26em; margin: 4em auto">
<h2>MedAdapt</h2><p>This page needs one of the login tokens that <code>medadapt web</code> was started with.</p>
<p style="color: #b00020">{message}</p>
<form action="./" method="get"><input type="password" name="secret" placeholder="token" autofocus required>
<button type="submit">Log in</button></form></body></html>"""


class PageAccess(LinkProtocol):
    """Who may use the page, enforced on the websocket that carries everything but the static files.

    - **Login**: wslink's hello handshake, the first message of every websocket, carries a ``secret``; it must
      be one of ``tokens`` (token -> name: the ``--token-file`` / ``MEDADAPT_TOKEN`` login tokens, compared in
      constant time), else wslink answers "Authentication failed" and serves nothing to that websocket. trame's
      page reads the secret from its URL (``/?secret=TOKEN``, removed from the address bar once read); the
      page's entry without a valid one shows a form asking for it. Without login tokens the only secret is a
      random one made at start, which the entry hands to the page (there, requests must name this computer:
      see :meth:`refusal`).
    - **Origin**: a websocket whose ``Origin`` is not the page's own (``http(s)://`` and the request's Host) is
      refused before the upgrade (403), so another web site open in the user's browser cannot connect.
    - **One session**: while an authenticated session is open, other websockets are refused (409), a second
      hello fails, and the page's entry says so (409): the app has one scene, which two tabs would share."""

    def __init__(self, tokens: dict[str, str]):
        super().__init__()
        self.login = bool(tokens)
        self.secret = "" if tokens else secrets.token_urlsafe(32)
        self.tokens = dict(tokens) if tokens else {self.secret: "local"}
        self.session: str | None = None
        """The wslink client id of the open session."""

    def protect(self, server) -> None:
        """Guard the trame ``server`` (before it starts): the hello check, the HTTP middleware, the headers."""
        server.add_protocol_to_configure(lambda protocol: protocol.registerLinkProtocol(self))
        server.controller.on_server_bind.add(lambda web_server: web_server.app.middlewares.append(self.guard))
        for name, value in SECURITY_HEADERS.items():
            server.http_headers.set_header(name, value)

    def name_of(self, secret) -> str | None:
        """The name of the login token ``secret`` is, else ``None``."""
        given = secret.encode() if isinstance(secret, str) else b""
        matches = [name for token, name in self.tokens.items() if hmac.compare_digest(token.encode(), given)]
        return matches[0] if matches else None

    async def validateToken(self, secret, client_id: str) -> bool:  # noqa: N802 - wslink's hook
        """wslink's hello: ``secret`` is a login token and no other session is open; the session opens."""
        name = self.name_of(secret)
        if name is None:
            log.warning("medadapt web: login refused: wrong token")
            return False
        if self.session not in (None, client_id):
            log.warning("medadapt web: login refused (%s): another session is open (single-user)", name)
            return False
        self.session = client_id
        print(f"medadapt web: session opened ({name})", flush=True)
        return True

    def onClose(self, client_id: str) -> None:  # noqa: N802 - wslink's hook
        if client_id == self.session:
            self.session = None
            print("medadapt web: session closed", flush=True)

    def refusal(self, request: web.Request) -> tuple[int, str] | None:
        """(HTTP status, reason) refusing ``request``, or ``None``: without a login every request must name this
        computer (so a web site whose name resolves to 127.0.0.1 cannot read the secret the entry hands out); a
        websocket must come from the page's own origin and find no session open."""
        host = request.host
        if not self.login and not is_loopback(request.url.host or ""):
            return 403, (f"medadapt web without a login answers only to localhost, 127.0.0.1 or ::1, not {host}: "
                         "start it with --token-file to reach it by another name")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        origin = request.headers.get("Origin", "")
        if origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
            return 403, f"websocket refused: Origin {origin or '(none)'} is not this page's (http(s)://{host})"
        if self.session is not None:
            return 409, f"websocket refused: {SINGLE_USER}"
        return None

    async def entry(self, request: web.Request) -> web.StreamResponse | None:
        """The page's entry: ``None`` (load the page) when its URL holds a valid secret and no session is open
        (after :data:`RELOAD_S`), else 409 saying so, the login form (403 when the token was wrong) or, without
        a login, a redirect to the page with this start's secret."""
        deadline = asyncio.get_running_loop().time() + RELOAD_S
        while self.session is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.session is not None:
            return web.Response(status=409, text=SINGLE_USER)
        secret = request.query.get("secret")
        if self.name_of(secret) is not None:
            return None
        if not self.login:
            raise web.HTTPFound(f"index.html?secret={self.secret}", headers={"Cache-Control": "no-store"})
        return web.Response(status=200 if secret is None else 403, content_type="text/html",
                            text=LOGIN_PAGE.format(message="" if secret is None else "Wrong token."))

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Every HTTP request: refused as :meth:`refusal` says; the page's entry as :meth:`entry` says."""
        refusal = self.refusal(request)
        if refusal is not None:
            log.warning("medadapt web: refused %s %s from %s: %s", request.method, request.path, request.remote,
                        refusal[1])
            return web.Response(status=refusal[0], text=refusal[1])
        answer = await self.entry(request) if request.path in ENTRY_PATHS else None
        return answer if answer is not None else await handler(request)


def upload_suffix(name) -> str:
    """The suffix (lower case) of :data:`UPLOAD_SUFFIXES` that the client's file ``name`` ends with, else
    :class:`InputError`."""
    suffix = next((s for s in UPLOAD_SUFFIXES if str(name).lower().endswith(s)), None)
    if suffix is None:
        raise InputError(f"{name}: not an image file this page takes (expected a name ending in "
                         f"{', '.join(UPLOAD_SUFFIXES)})")
    return suffix


def upload_bytes(file) -> int:
    """The bytes of one uploaded file (a trame file dict; its ``content`` in one piece or a list of pieces)."""
    content = ClientFile(file).content if isinstance(file, dict) else None
    return len(content) if isinstance(content, (bytes, bytearray)) else 0


def write_uploads(files: list[dict], folder: Path, max_voxels: int = MAX_VOXELS) -> list[Path]:
    """Write uploaded files (trame file dicts) to ``folder`` as ``upload-<n><suffix>``: names this server makes,
    the client's names only choosing the suffix (:func:`upload_suffix`); :class:`InputError` before writing
    anything when a file is refused, and before any voxel is read when a written file's header names another
    file or declares more than ``max_voxels`` voxels (:func:`medadapt.io.headers.checked_reader`)."""
    if not files or not all(isinstance(f, dict) for f in files):
        raise InputError("the upload holds no files")
    uploads = [(ClientFile(f), upload_suffix(f.get("name"))) for f in files]
    for file, _ in uploads:
        if not isinstance(file.content, (bytes, bytearray)):
            raise InputError(f"{file.name}: the upload holds no content")
    paths = [folder / f"upload-{number}{suffix}" for number, (_, suffix) in enumerate(uploads)]
    for path, (file, _) in zip(paths, uploads):
        path.write_bytes(file.content)
    for path, (file, _) in zip(paths, uploads):
        try:
            checked_reader(path, max_voxels=max_voxels)
        except InputError as exc:  # named as the page names it, not by the server's folder
            raise InputError(str(exc).replace(str(path), str(file.name))) from exc
    return paths


class UploadButton(LoadVolumeButton):
    """trame-slicer's upload button, which keeps the chunks of an upload in memory until the last: here an
    upload whose files hold more than ``max_bytes`` is dropped as its chunks arrive, and ``on_too_large`` is
    called at its end."""

    def __init__(self, max_bytes: int, on_too_large, **kwargs):
        super().__init__(**kwargs)
        self.max_bytes, self.on_too_large, self.too_large = max_bytes, on_too_large, False

    async def load_chunk(self, files: list[dict]) -> None:
        """A chunk of files (an empty one ends the upload), as trame-slicer's, within ``max_bytes``."""
        if files and not self.too_large:
            self.too_large = sum(map(upload_bytes, [*self.files, *files])) > self.max_bytes
        if not self.too_large:
            await super().load_chunk(files)
            return
        self.files = []
        if not files:
            self.too_large = False
            self.on_too_large()


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
    ``mode``: what the page says Adapt runs on; ``device``: the local core's device; ``login_tokens``: see
    :class:`PageAccess`; ``max_upload_mb``: the most one upload may hold; ``max_voxels``: the largest grid an
    uploaded header may declare."""

    def __init__(self, server=None, jobs=None, segment_name: str = "liver", method: str = "lora",
                 device: str = "auto", mode: str = "local core", login_tokens: dict[str, str] | None = None,
                 max_upload_mb: int = 1024, max_voxels: int = MAX_VOXELS):
        super().__init__(server)
        self.access = PageAccess(login_tokens or {})
        self.access.protect(self.server)
        self.max_upload_mb, self.max_voxels = max_upload_mb, max_voxels
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
                UploadButton(max_bytes=self.max_upload_mb * 2**20, on_too_large=self._on_too_large,
                             name="Open a volume (NIfTI, NRRD, MHA, DICOM files)", load_directory=False,
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
        """Load uploaded files (one image file, or the files of a DICOM series), written by
        :func:`write_uploads` to a new temporary folder; the client's file names are only shown."""
        with tempfile.TemporaryDirectory(prefix="medadapt-web-upload-") as folder, self.state:
            try:
                paths = write_uploads(files, Path(folder), self.max_voxels)
            except InputError as exc:
                self.state.ma_error = f"upload refused: {exc}"
                return
            names = ", ".join(str(f["name"]) for f in files)
            try:
                self.load(paths, name=str(files[0]["name"]))
            except Exception as exc:  # noqa: BLE001 - shown on the page
                self.state.ma_error = f"could not load {names}: {exc}"
                if self.session.volume_node is None:
                    self.state.ma_volume_name = ""
                    self._set_phase("empty", "Load a volume")

    def _on_too_large(self) -> None:
        with self.state:
            self.state.ma_error = (f"upload refused: the files hold more than {self.max_upload_mb} MB (the most one "
                                   "upload may hold; medadapt web --max-upload-mb)")

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


def start(  # nosec B107  # the --server's token defaults to none, not a password
          port: int = 8080, host: str = "127.0.0.1", data: str | Path | None = None, server_url: str = "",
          token: str = "", segment_name: str = "liver", method: str = "lora", device: str = "auto",
          login_tokens: dict[str, str] | None = None, max_upload_mb: int = 1024,
          max_voxels: int = MAX_VOXELS) -> None:
    """Build the app (local core, or ``server_url`` with ``token``), load ``data`` and serve until stopped;
    ``login_tokens``: see :class:`PageAccess`."""
    import sys

    jobs, mode = None, "local core"
    if server_url:
        from MedAdaptSlicerLib.remote import RemoteLogic
        from MedAdaptSlicerLib.remote_client import RemoteError
        try:
            jobs = RemoteLogic(server_url, token)
            print(jobs.test_connection(), flush=True)  # fail now, with the server's answer, not at the first Adapt
        except RemoteError as exc:
            raise InputError(f"--server: {exc}") from exc
        mode = f"server {jobs.client.url}"
    app = MedAdaptWebApp(jobs=jobs, segment_name=segment_name, method=method, device=device, mode=mode,
                         login_tokens=login_tokens, max_upload_mb=max_upload_mb, max_voxels=max_voxels)
    if data:
        app.load(data)
    login = f"login with one of {len(login_tokens)} token(s)" if login_tokens else "no login: this computer only"
    print(f"medadapt web: http://{host}:{port}/ ({login}; single-user; Adapt runs on the {mode})", flush=True)
    sys.argv[1:] = []  # trame would parse medadapt's own options (--port, --data, ...) again
    app.server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0)
