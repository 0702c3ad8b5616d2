"""Remote mode (MedAdaptSlicerLib.remote) on a real MRML scene against a real ``medadapt serve`` on 127.0.0.1
with a token: Test connection, Adapt (fill: no model, fast) equal to Local mode on an oblique anisotropic
volume, Cancel of a long LoRA job (the server's job cancelled, the scene unchanged), errors as clear messages,
the Segment Editor effect's remote Adapt, and the whole round trip in a Python where torch, MONAI and the
``medadapt`` core cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import slicer

from conftest import ANISOTROPIC_SPACING, LIVER, OBLIQUE_DIRECTION, free_port, liver_crop
from slicer_fixtures import REPO, add_points, add_roi, add_segmentation, make_scene, node_ids, segment_arrays
from server_fixtures import InProcessServer
from MedAdaptSlicerLib import remote as remote_module
from MedAdaptSlicerLib.conversion import Grid, node_grid, update_node_from_volume
from MedAdaptSlicerLib.effect import PREVIEW_NODE_NAME, EffectSession
from MedAdaptSlicerLib.jobs import SynchronousRunner, ThreadRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.parameters import Parameters
from MedAdaptSlicerLib.remote import RemoteLogic, read_result, write_image
from MedAdaptSlicerLib.remote_client import RemoteClient, RemoteError
from MedAdaptSlicerLib.results import preview_name
from medadapt.errors import CancelledError, InputError
from medadapt.io.volume import Geometry, Volume
from medadapt.server.settings import ServerSettings

TOKEN = "remote-test-token-0123456789abcdef"
ALIVE = []


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server with one token ("radiologist") on the CPU."""
    data = tmp_path_factory.mktemp("remote") / "data"
    running = InProcessServer(ServerSettings(data, port=free_port(), tokens={TOKEN: "radiologist"}))
    running.data = data
    yield running
    running.stop()


@pytest.fixture(scope="module")
def liver(sample):
    """(CT crop array, liver mask, painted mask on three slices) of the bundled sample."""
    image, labels = liver_crop(sample)
    liver = labels.array == LIVER
    rows = np.flatnonzero(liver.any(axis=(1, 2)))
    painted = np.zeros(liver.shape, np.uint8)
    for z in (rows[1], rows[len(rows) // 2], rows[-2]):
        painted[z] = liver[z]
    return image.array, liver, painted


def oblique_case(liver):
    """A scene with the CT crop on a rotated, anisotropic grid and a 'liver' segment painted on three slices."""
    array, _, painted = liver
    scene, app, logics = make_scene()
    ALIVE.append((app, logics))  # the application and module logics must outlive the scene's markups nodes
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    size = tuple(reversed(array.shape))
    update_node_from_volume(volume, Volume(array, Geometry(size, ANISOTROPIC_SPACING, (-12.5, 40.25, 7.0),
                                                           OBLIQUE_DIRECTION)))
    segmentation = add_segmentation(scene, volume, {"liver": painted, "spleen": np.zeros_like(painted)})
    return scene, volume, segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("liver")


@pytest.fixture(scope="module")
def local_fill(liver):
    """The preview Local mode's fill gives on the oblique case (the reference of the remote runs)."""
    scene, volume, segmentation, liver_id = oblique_case(liver)
    job = MedAdaptLogic(SynchronousRunner()).start_adapt(volume, segmentation, liver_id,
                                                         Parameters(method="fill", device="cpu"))
    assert job.state == "done", job.error
    expected = segment_arrays(segmentation, volume)[preview_name("liver")]
    scene.Clear(1)
    return expected


def remote_logic(server, runner=None) -> RemoteLogic:
    return RemoteLogic(server.url, TOKEN, runner or SynchronousRunner())


def test_test_connection_says_who_and_names_what_is_wrong(server):
    answer = remote_logic(server).test_connection()
    assert "as 'radiologist'" in answer and "devices: cpu" in answer and server.url in answer
    with pytest.raises(RemoteError, match="refused the token") as refused:
        RemoteLogic(server.url, "wrong-token-0123456789abcdef").test_connection()
    assert refused.value.status == 401
    with pytest.raises(RemoteError, match="cannot connect"):
        RemoteLogic(f"http://127.0.0.1:{free_port()}", TOKEN).test_connection()
    with pytest.raises(RemoteError, match="server URL: expected http://HOST:PORT"):
        RemoteLogic("gpu-box:8790", TOKEN)


def test_test_connection_runs_in_the_job_thread(server):
    runner = ThreadRunner()
    finished = []
    job = remote_logic(server, runner).start_test_connection(finished.append)
    deadline = time.monotonic() + 30
    while runner.poll() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finished == [job] and job.state == "done" and "as 'radiologist'" in job.result
    unreachable = RemoteLogic(f"http://127.0.0.1:{free_port()}", TOKEN, SynchronousRunner())
    job = unreachable.start_test_connection()
    assert job.state == "failed" and "cannot connect" in str(job.error)


@pytest.mark.parametrize("with_roi", [False, True])
def test_remote_fill_equals_local_fill_on_an_oblique_grid(server, liver, local_fill, with_roi):
    scene, volume, segmentation, liver_id = oblique_case(liver)
    painted = liver[2]
    rows = np.flatnonzero(painted.any(axis=(1, 2)))
    expected, roi = local_fill, None
    if with_roi:  # the liver's box, 3 voxels wider
        y, x = (np.flatnonzero(liver[1].any(axis=axes)) for axes in ((0, 2), (0, 1)))
        roi = add_roi(scene, volume, (rows[0], y[0] - 3, x[0] - 3), (rows[-1], y[-1] + 3, x[-1] + 3))
        local = MedAdaptLogic(SynchronousRunner())
        job = local.start_adapt(volume, segmentation, liver_id, Parameters(method="fill", device="cpu"), roi_node=roi)
        assert job.state == "done", job.error
        expected = segment_arrays(segmentation, volume)[preview_name("liver")]
        assert not expected[:, :y[0] - 3].any() and expected.any()  # nothing outside the ROI
        local.reject(segmentation, liver_id)

    client = RemoteClient(server.url, TOKEN)
    volumes, jobs = (lambda: {v["id"] for v in client._json("GET", "/v1/volumes")},
                     lambda: {j["id"] for j in client._json("GET", "/v1/jobs")})
    kept, ran = volumes(), jobs()
    logic, progress = remote_logic(server), []
    job = logic.start_adapt(volume, segmentation, liver_id, Parameters(method="fill"), roi_node=roi,
                            on_progress=progress.append)
    assert job.state == "done", job.error
    arrays = segment_arrays(segmentation, volume)
    np.testing.assert_array_equal(arrays[preview_name("liver")], expected)
    np.testing.assert_array_equal(arrays[preview_name("liver")][rows], painted[rows])  # on the volume's grid
    assert arrays["liver"].tobytes() == painted.tobytes() and not arrays["spleen"].any()
    assert progress[0].stage == "uploading to the server" and all(e.step <= e.total for e in progress)
    assert logic.model is None  # fill trains nothing: Apply keeps needing a model
    # only the image stays on the server (reused by the next job); the painting and the result are deleted
    assert len(volumes() - kept) == 1 and jobs() == ran
    logic.accept(volume, segmentation, liver_id)
    np.testing.assert_array_equal(segment_arrays(segmentation, volume)["liver"], expected)
    logic.close()
    assert volumes() == kept
    scene.Clear(1)


def test_the_result_must_lie_on_the_volume_grid(tmp_path):
    grid = Grid((4, 3, 2), ANISOTROPIC_SPACING, (1.0, 2.0, 3.0), OBLIQUE_DIRECTION)
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[1, 1, 2] = 1
    np.testing.assert_array_equal(read_result(write_image(labels, grid, tmp_path / "same.nrrd"), grid), labels)
    shifted = Grid(grid.size, grid.spacing, (1.0, 2.5, 3.0), grid.direction)
    with pytest.raises(RemoteError, match=r"its origin \(1.0, 2.5, 3.0\) is not the volume's"):
        read_result(write_image(labels, shifted, tmp_path / "shifted.nrrd"), grid)
    rotated = Grid(grid.size, grid.spacing, grid.origin, (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    with pytest.raises(RemoteError, match="its direction"):
        read_result(write_image(labels, rotated, tmp_path / "rotated.nii.gz"), grid)


def test_cancel_of_a_long_remote_job_cancels_it_on_the_server_and_changes_nothing(server, liver):
    scene, volume, segmentation, liver_id = oblique_case(liver)
    nodes, arrays = node_ids(scene), segment_arrays(segmentation, volume)
    logic, progress, done = RemoteLogic(server.url, TOKEN), [], []  # a worker thread, as in Slicer
    job = logic.start_adapt(volume, segmentation, liver_id,
                            Parameters(method="lora", iterations=5000, synthesis_per_exemplar=1),
                            on_progress=progress.append, on_done=done.append)
    deadline = time.monotonic() + 240
    while not [e for e in progress if e.stage not in ("uploading to the server", "queued on the server")]:
        assert logic.runner.poll() and time.monotonic() < deadline, (job.state, job.error, progress)
        time.sleep(0.1)
    job.cancel()
    assert not logic.runner.poll() and job.state == "cancelled" and done == [job]
    client = RemoteClient(server.url, TOKEN)
    deadline = time.monotonic() + 60
    while (state := client.job(logic.last_job["id"], wait=1.0))["state"] != "cancelled":
        assert state["state"] == "running" and time.monotonic() < deadline, state
    assert state["error"] == "cancelled by the user" and client.adapters() == []
    assert client.whoami()["usage"]["active_jobs"] == 0
    assert node_ids(scene) == nodes and logic.model is None
    after = segment_arrays(segmentation, volume)
    assert after.keys() == arrays.keys() and all(np.array_equal(after[k], arrays[k]) for k in arrays)
    scene.Clear(1)


def test_errors_arrive_as_clear_messages_and_change_nothing(server, liver):
    scene, volume, segmentation, liver_id = oblique_case(liver)
    logic = remote_logic(server)
    outside = add_points(scene, "far away", [(900.0, 900.0, 900.0)])
    nodes = node_ids(scene)
    spleen_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("spleen")
    with pytest.raises(InputError, match="segment 'spleen' of 'Segmentation' is empty: paint the structure"):
        logic.start_adapt(volume, segmentation, spleen_id, Parameters(method="fill"))
    with pytest.raises(InputError, match="checkpoint file: Remote mode runs the server's own copy"):
        logic.start_adapt(volume, segmentation, liver_id, Parameters(checkpoint="/data/lite_medsam.pth"))
    with pytest.raises(InputError, match="base model: Remote mode needs a model name"):
        logic.start_adapt(volume, segmentation, liver_id, Parameters(base_model="/data/lineages/abdomen"))
    with pytest.raises(InputError, match="no adapted model: run Adapt"):
        logic.start_apply(volume, segmentation, liver_id)
    # refused by the server when submitted: the option's checker names it
    job = logic.start_adapt(volume, segmentation, liver_id, Parameters(method="fill", rank=0))
    assert job.state == "failed" and "--rank: expected an integer 1..256, got 0 (HTTP 400)" in str(job.error)
    # failed while running on the server: a click outside the image
    job = logic.start_adapt(volume, segmentation, liver_id, Parameters(method="fill"), positive_node=outside)
    assert job.state == "failed", job.error
    assert "the server's adapt job failed: points: point 0 at [900.0, 900.0, 900.0] (RAS) lies outside" in str(
        job.error)
    assert node_ids(scene) == nodes
    assert preview_name("liver") not in segment_arrays(segmentation, volume)
    with pytest.raises(InputError, match="adapter f+: not among this token's adapters on the server"):
        logic.use_adapter("f" * 32)
    scene.Clear(1)


def test_a_kept_adapter_serves_apply_save_the_interactive_slice_and_propagate(server, liver, tmp_path):
    """A model kept on the server (linear-probe heads: quick to train on three slices) is used by Apply, listed
    by Load adapter, downloaded by Save adapter, and runs the clicked slice and Propagate."""
    image, mask, painted = liver
    z = int(np.flatnonzero(painted.any(axis=(1, 2)))[1])
    three = slice(z - 1, z + 2)
    middle = np.zeros_like(painted[three])
    middle[1] = painted[z]
    scene, volume, segmentation, liver_id = oblique_case((image[three], mask[three], middle))
    logic = remote_logic(server)
    job = logic.start_adapt(volume, segmentation, liver_id,
                            Parameters(method="linear-probe", iterations=2, synthesis_per_exemplar=0))
    assert job.state == "done", job.error
    model = logic.model
    assert model.method == "linear-probe" and model.adapter_id
    assert [a["id"] for a in logic.server_adapters()] == [model.adapter_id]
    logic.reject(segmentation, liver_id)
    logic.model = None
    assert logic.use_adapter(model.adapter_id) == model
    job = logic.start_apply(volume, segmentation, liver_id)
    assert job.state == "done", job.error
    assert segment_arrays(segmentation, volume)[preview_name("liver")].any()
    saved = logic.save_adapter(tmp_path / "adapter")
    assert {"manifest.json", "heads.safetensors"} <= {f.name for f in saved.iterdir()}
    assert json.loads((saved / "manifest.json").read_text())["config"]["method"] == "linear-probe"

    inside = np.argwhere(mask[three][0])
    row, column = inside[len(inside) // 2]
    lps = node_grid(volume).index_to_world((column, row, 0))
    click = add_points(scene, "positive", [(-lps[0], -lps[1], lps[2])])
    before = segment_arrays(segmentation, volume)[preview_name("liver")]
    assert logic.update_slice(volume, segmentation, liver_id, click) == 0
    after = segment_arrays(segmentation, volume)[preview_name("liver")]
    np.testing.assert_array_equal(after[1:], before[1:])
    assert after[0, row, column] == 1  # the clicked voxel, mapped through the oblique grid, is segmented
    job = logic.start_propagate(volume, segmentation, liver_id, 0)
    assert job.state == "done", job.error
    assert segment_arrays(segmentation, volume)[preview_name("liver")][0, row, column] == 1
    logic.close()
    scene.Clear(1)


def test_the_effect_adapts_each_painted_segment_remotely(server, liver, local_fill):
    scene, volume, segmentation, liver_id = oblique_case(liver)
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volume)
    editor.SetSelectedSegmentID(liver_id)
    expected = local_fill  # Local mode's effect and module give the same fill
    nodes, progress = node_ids(scene), []
    session = EffectSession(editor, SynchronousRunner())
    job = session.start_adapt(Parameters(method="fill"), on_progress=progress.append, logic=remote_logic(server))
    assert job.state == "done", job.error
    np.testing.assert_array_equal(session.previews[liver_id], expected)
    assert scene.GetFirstNodeByName(PREVIEW_NODE_NAME) is not None
    assert progress and all(e.stage.startswith("liver (1/1): ") for e in progress)
    session.remove_preview()
    assert node_ids(scene) == nodes
    scene.Clear(1)


class SavedSettings(dict):
    """Stand-in for ``QSettings``: ``value`` of a saved key."""

    def value(self, key, default=None):
        return self.get(key, default)


def test_logic_for_picks_the_saved_mode_and_keeps_the_current_logic_while_it_fits(server):
    from MedAdaptSlicerLib.base_logic import logic_for
    local = logic_for(SavedSettings({"MedAdapt/computeMode": "Local"}))
    assert isinstance(local, MedAdaptLogic) and logic_for(SavedSettings(), local) is local
    remote = SavedSettings({"MedAdapt/computeMode": "Remote", "MedAdapt/serverUrl": server.url + "/",
                            "MedAdapt/serverToken": TOKEN})
    chosen = logic_for(remote, local)
    assert isinstance(chosen, RemoteLogic) and chosen.client.url == server.url and chosen.client.token == TOKEN
    assert logic_for(remote, chosen) is chosen
    other = logic_for(SavedSettings({**remote, "MedAdapt/serverToken": "another-token-0123456789abcdef"}), chosen)
    assert isinstance(other, RemoteLogic) and other is not chosen
    assert isinstance(logic_for(SavedSettings(), chosen), MedAdaptLogic)


def test_method_lists_match_the_core_registry():
    from MedAdaptSlicerLib.logic import SAVABLE_METHODS
    from medadapt.methods.registry import METHODS
    assert remote_module.METHOD_NAMES == tuple(METHODS)
    assert set(remote_module.KEPT_ADAPTER_METHODS) == set(SAVABLE_METHODS)
    assert not hasattr(remote_module, "ATLAS_METHODS")  # the server keeps the atlas by Method.keeps_atlas


CHILD = textwrap.dedent(r'''
    import importlib.abc, json, sys
    BLOCKED = {"torch", "torchvision", "monai", "medadapt", "segment_anything", "peft", "timm"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (a Slicer without MedAdapt's packages)")
            return None

    sys.meta_path.insert(0, Blocker())
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import numpy as np
    import slicer
    from slicer_fixtures import make_scene
    from MedAdaptSlicerLib import core_types
    from MedAdaptSlicerLib.conversion import Grid, ijk_to_ras_matrix, segment_array, write_segment_array
    from MedAdaptSlicerLib.base_logic import logic_for
    from MedAdaptSlicerLib.effect import EffectSession
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.parameters import Parameters
    from MedAdaptSlicerLib.remote import RemoteLogic
    from MedAdaptSlicerLib.results import preview_segment_id

    case = np.load(sys.argv[3])
    scene, _, _ = make_scene()
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    grid = Grid(tuple(reversed(case["image"].shape)), tuple(case["spacing"]), tuple(case["origin"]),
                tuple(case["direction"]))
    volume.SetIJKToRASMatrix(ijk_to_ras_matrix(grid))
    slicer.util.updateVolumeFromArray(volume, case["image"])
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    liver = segmentation.GetSegmentation().AddEmptySegment("liver", "liver")
    write_segment_array(segmentation, liver, volume, case["painted"])
    logic = RemoteLogic(sys.argv[4], sys.argv[5], SynchronousRunner())
    connection = logic.test_connection()
    job = logic.start_adapt(volume, segmentation, liver, Parameters(method="fill"))
    preview = segment_array(segmentation, preview_segment_id(segmentation, liver), volume)
    np.save(sys.argv[6], preview)
    # the Segment Editor effect, given the logic the saved Remote choice picks, adapts the same way
    class Settings(dict):
        def value(self, key, default=None):
            return self.get(key, default)
    chosen = logic_for(Settings({"MedAdapt/computeMode": "Remote", "MedAdapt/serverUrl": sys.argv[4],
                                 "MedAdapt/serverToken": sys.argv[5]}))
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volume)
    editor.SetSelectedSegmentID(liver)
    session = EffectSession(editor, SynchronousRunner())
    effect = session.start_adapt(Parameters(method="fill"), logic=chosen)
    print(json.dumps({"state": job.state, "error": str(job.error), "core": core_types.CORE, "connection": connection,
                      "effect": [type(chosen).__name__, effect.state, str(effect.error),
                                 bool(np.array_equal(session.previews.get(liver), preview))],
                      "heavy": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
''')


def test_remote_mode_runs_in_a_slicer_without_torch_monai_or_the_core(server, liver, local_fill, tmp_path):
    scene, volume, _, _ = oblique_case(liver)
    grid = node_grid(volume)
    np.savez(tmp_path / "case.npz", image=liver[0], painted=liver[2], spacing=grid.spacing, origin=grid.origin,
             direction=grid.direction)
    script = tmp_path / "stock_slicer.py"
    script.write_text(CHILD)
    child = subprocess.run([sys.executable, str(script), str(REPO / "MedAdaptSlicer"), str(REPO / "Testing"),
                            str(tmp_path / "case.npz"), server.url, TOKEN, str(tmp_path / "preview.npy")],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["state"] == "done", report["error"]
    assert report["core"] is False and report["heavy"] == [] and "as 'radiologist'" in report["connection"]
    assert report["effect"] == ["RemoteLogic", "done", "None", True]
    np.testing.assert_array_equal(np.load(tmp_path / "preview.npy"), local_fill)
    scene.Clear(1)


def test_cancelled_error_is_the_core_one_when_the_core_is_installed():
    from MedAdaptSlicerLib import core_types
    assert core_types.CORE and core_types.CancelledError is CancelledError and core_types.InputError is InputError
