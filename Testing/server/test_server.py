"""``medadapt serve``: a real server on 127.0.0.1 (in-process, or a child process where it must be killed),
driven by the Slicer module's standard-library client and by raw HTTP where a client would refuse to send."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

from assertions import assert_same_grid
from conftest import LIVER, REPO, free_port, liver_crop, oblique_image

sys.path.insert(0, str(REPO / "MedAdaptSlicer"))
from MedAdaptSlicerLib.remote_client import RemoteClient, RemoteError  # noqa: E402

from medadapt.errors import InputError  # noqa: E402
from medadapt.server.settings import Limits, ServerSettings, check_settings, read_tokens  # noqa: E402
from server_fixtures import InProcessServer  # noqa: E402

ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdefgh"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with two tokens (alice, bob), a 1 MB upload limit and 3 jobs per token."""
    data = tmp_path_factory.mktemp("server") / "data"
    running = InProcessServer(ServerSettings(data, port=free_port(), tokens={ALICE: "alice", BOB: "bob"},
                                             limits=Limits(max_upload_mb=1, max_jobs=3)))
    running.data = data
    yield running
    running.stop()


@pytest.fixture(scope="module")
def case(sample, tmp_path_factory):
    """A real liver crop on an oblique, anisotropic grid with three painted slices: (image, painted) files and
    the painted array."""
    folder = tmp_path_factory.mktemp("case")
    image, labels = liver_crop(sample, slice(10, 19))  # 9 slices: enough to paint 3 and find the rest
    liver = labels.array == LIVER
    rows = np.flatnonzero(liver.any(axis=(1, 2)))
    painted = np.zeros(liver.shape, np.uint8)
    for z in (rows[1], rows[len(rows) // 2], rows[-2]):
        painted[z] = liver[z]
    sitk.WriteImage(oblique_image(image.array), str(folder / "ct.nrrd"))
    sitk.WriteImage(oblique_image(painted), str(folder / "painted.nii.gz"))
    return folder / "ct.nrrd", folder / "painted.nii.gz", painted


def raw(server, method: str, path: str, token: str | None = ALICE, body: bytes | None = None) -> tuple[int, str]:
    """(status, body) of a request sent as given (no client-side quoting or checks)."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read().decode(errors="replace")


def finished(client: RemoteClient, job: dict, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        state = client.job(job["id"], wait=min(20.0, max(0.1, deadline - time.monotonic())))
        if state["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return state


def test_tokens_are_required_and_checked(server):
    assert raw(server, "GET", "/v1/health", token=None)[0] == 200
    assert raw(server, "GET", "/v1/whoami", token=None)[0] == 401
    assert raw(server, "GET", "/v1/whoami", token="wrong-token-0123456789abcdef")[0] == 401
    assert raw(server, "GET", "/v1/volumes", token=ALICE[:-1])[0] == 401
    assert RemoteClient(server.url, ALICE).whoami()["name"] == "alice"
    with pytest.raises(RemoteError) as refused:
        RemoteClient(server.url, "").whoami()
    assert refused.value.status == 401 and "bearer token" in str(refused.value)


def test_a_server_beyond_loopback_needs_a_long_token(tmp_path):
    with pytest.raises(InputError, match="--host 0.0.0.0: listening beyond this machine needs a token"):
        check_settings(ServerSettings(tmp_path / "d", host="0.0.0.0"))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# clinic\nalice short\n")
    with pytest.raises(InputError, match=r"tokens.txt: line 2: a token needs at least 16"):
        read_tokens(str(tokens), {})
    tokens.write_text(f"alice {ALICE}\n{BOB}\n")
    bare = f"token-{hashlib.sha256(BOB.encode()).hexdigest()[:12]}"  # a bare token's name follows the token
    assert read_tokens(str(tokens), {}) == {ALICE: "alice", BOB: bare}
    check_settings(ServerSettings(tmp_path / "d", host="0.0.0.0", tokens=read_tokens(str(tokens), {})))


def test_oversized_and_broken_uploads_are_refused_and_leave_nothing(server, tmp_path):
    client = RemoteClient(server.url, ALICE)
    big = tmp_path / "big.nii.gz"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    with pytest.raises(RemoteError, match="limit is 1 MB per upload") as refused:
        client.upload(big)
    assert refused.value.status == 413
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(RemoteError, match=r"broken.nii.gz: .*\(HTTP 400\)"):
        client.upload(broken)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(RemoteError, match=r"name: expected a file name ending in .nii.gz"):
        client.upload(notes)
    assert client.whoami()["usage"]["storage_mb"] == 0
    assert not any((server.data / "staging").iterdir())


@pytest.mark.parametrize("path", ["/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/%2Fetc%2Fpasswd",
                                  "/v1/volumes/..", "/v1/adapters/..%2Fjobs", "/v1/jobs/../../etc/passwd"])
def test_ids_cannot_traverse_paths(server, path):
    for method in ("GET", "DELETE"):
        status, body = raw(server, method, path)
        assert status in (400, 404, 405), (method, path, status, body)
    assert "root:" not in raw(server, "GET", path)[1]


def test_job_fields_are_checked_before_queueing(server, case):
    client = RemoteClient(server.url, ALICE)
    image = client.upload(case[0])["id"]
    for job, message in (({"kind": "adapt", "image": "../../etc/passwd", "exemplars": image}, "image: expected an ID"),
                         ({"kind": "adapt", "image": "/" + "a" * 31, "exemplars": image}, "image: expected an ID"),
                         ({"kind": "adapt", "image": image}, "exemplars: adapt needs"),
                         ({"kind": "train", "image": image}, "kind: expected one of adapt"),
                         ({"kind": "adapt", "image": image, "exemplars": image, "options": {"rank": 0}},
                          "--rank: expected an integer 1..256"),
                         ({"kind": "adapt", "image": image, "exemplars": image,
                           "options": {"checkpoint": "/etc/passwd"}}, "never a file or folder on the server"),
                         ({"kind": "adapt", "image": image, "exemplars": image, "options": {"base_model": ".."}},
                          "never a file or folder on the server"),
                         ({"kind": "adapt", "image": image, "exemplars": image, "colour": 1}, "unknown field"),
                         ({"kind": "adapt", "image": image, "exemplars": image, "options": {"atlas": False}},
                          "--no-atlas .*only with --save-model \\(save_adapter\\)"),
                         ({"kind": "adapt", "image": image, "exemplars": image, "save_adapter": True,
                           "options": {"atlas": "no"}}, "atlas: expected true or false"),
                         ({"kind": "adapt", "image": image, "exemplars": image, "save_adapter": True,
                           "options": {"method": "fill"}}, "save_adapter: method 'fill' trains no model to save"),
                         ({"kind": "predict", "image": image, "adapter": "f" * 32}, "adapter f+: not found")):
        with pytest.raises(RemoteError, match=message):
            client.submit(job)
    with pytest.raises(RemoteError, match="not found"):  # bob cannot use alice's volume
        RemoteClient(server.url, BOB).submit({"kind": "adapt", "image": image, "exemplars": image})
    assert client.whoami()["usage"]["active_jobs"] == 0


def test_two_clients_jobs_both_finish_with_their_own_correct_results(server, case, tmp_path):
    from medadapt.io.exemplars import find_exemplars
    from medadapt.io.volume import read_volume
    from medadapt.pipeline import adapt
    from medadapt.config import AdaptConfig
    image_path, painted_path, painted = case
    expected = adapt(read_volume(image_path), find_exemplars(read_volume(image_path),
                                                            read_volume(painted_path, label=True)),
                     AdaptConfig(method="fill")).segmentation.array
    outcome = {}

    def one_client(token: str, name: str) -> None:
        client = RemoteClient(server.url, token)
        image, labels = client.upload(image_path)["id"], client.upload(painted_path)["id"]
        job = finished(client, client.submit({"kind": "adapt", "image": image, "exemplars": labels,
                                              "options": {"method": "fill"}}))
        outcome[name] = (job, client.result(job["id"], tmp_path / f"{name}.nii.gz") if job["state"] == "done"
                         else None)
    clients = [threading.Thread(target=one_client, args=(t, n)) for t, n in ((ALICE, "alice"), (BOB, "bob"))]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(300)
    source = sitk.ReadImage(str(image_path))
    for name in ("alice", "bob"):
        job, path = outcome[name]
        assert job["state"] == "done", job
        result = sitk.ReadImage(str(path))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected)
        assert_same_grid(result, source)
    with pytest.raises(RemoteError, match="not found") as hidden:  # bob's job is invisible to alice
        RemoteClient(server.url, ALICE).job(outcome["bob"][0]["id"])
    assert hidden.value.status == 404


def test_cancel_mid_job_leaves_no_result_and_no_adapter(server, case):
    client = RemoteClient(server.url, ALICE)
    image, labels = client.upload(case[0])["id"], client.upload(case[1])["id"]
    job = client.submit({"kind": "adapt", "image": image, "exemplars": labels, "save_adapter": True,
                         "options": {"method": "lora", "iterations": 5000, "synthetic": 1}})
    deadline = time.monotonic() + 240
    while not ((state := client.job(job["id"]))["state"] == "running" and state["progress"]):
        assert time.monotonic() < deadline and state["state"] in ("queued", "running"), state
        time.sleep(0.2)
    client.cancel(job["id"])
    state = finished(client, job, 120)
    assert state["state"] == "cancelled" and state["error"] == "cancelled by the user"
    with pytest.raises(RemoteError, match="is cancelled: no result") as refused:
        client.result(job["id"], server.data.parent / "never.nii.gz")
    assert refused.value.status == 409 and not (server.data.parent / "never.nii.gz").exists()
    assert not (server.data / "jobs" / job["id"]).exists()
    assert not (server.data / "adapters" / state["adapter"]).exists() and client.adapters() == []


def test_a_killed_server_keeps_finished_results_and_fails_the_running_job(case, tmp_path):
    port, data = free_port(), tmp_path / "data"
    (tmp_path / "tokens").write_text(f"alice {ALICE}\n")
    command = [sys.executable, "-m", "medadapt.cli", "serve", "--data", str(data), "--port", str(port),
               "--token-file", str(tmp_path / "tokens")]

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client, deadline = RemoteClient(f"http://127.0.0.1:{port}", ALICE, timeout=5), time.monotonic() + 120
        while True:
            try:
                client.health()
                return process
            except RemoteError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.3)
    process = start()
    client = RemoteClient(f"http://127.0.0.1:{port}", ALICE)
    image, labels = client.upload(case[0])["id"], client.upload(case[1])["id"]
    done = finished(client, client.submit({"kind": "adapt", "image": image, "exemplars": labels,
                                           "options": {"method": "fill"}}))
    assert done["state"] == "done", done
    before = sitk.GetArrayFromImage(sitk.ReadImage(str(client.result(done["id"], tmp_path / "before.nii.gz"))))
    slow = client.submit({"kind": "adapt", "image": image, "exemplars": labels,
                          "options": {"method": "lora", "iterations": 5000, "synthetic": 1}})
    while client.job(slow["id"])["state"] != "running":
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    process = start()
    try:
        after = client.result(done["id"], tmp_path / "after.nii.gz")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(after))), before)
        state = client.job(slow["id"])
        assert state["state"] == "failed" and "server stopped while this job ran" in state["error"]
        assert not (data / "jobs" / slow["id"]).exists()
        assert {v["id"] for v in RemoteClient(f"http://127.0.0.1:{port}", ALICE)._json("GET", "/v1/volumes")} == {
            image, labels}
    finally:
        process.terminate()
        process.wait(30)


def test_kept_adapter_predicts_and_reprompts_reuse_the_volume(server, case, tmp_path):
    """adapt keeps a (zero-shot) adapter; predict runs it from painted slices, propagate and slice run the base
    model; the adapter downloads as a zip of its folder and can be deleted."""
    import zipfile
    client = RemoteClient(server.url, BOB)
    image_path, painted_path, painted = case
    image, labels = client.upload(image_path)["id"], client.upload(painted_path)["id"]
    kept = finished(client, client.submit({"kind": "adapt", "image": image, "exemplars": labels,
                                           "save_adapter": True, "options": {"method": "zero-shot"}}))
    assert kept["state"] == "done", kept
    assert [a["id"] for a in client.adapters()] == [kept["adapter"]]
    with zipfile.ZipFile(client.adapter(kept["adapter"], tmp_path / "adapter.zip")) as archive:
        assert {"manifest.json", "adapter.safetensors"} <= set(archive.namelist())
        assert not any("atlas" in name for name in archive.namelist())  # zero-shot keeps no atlas (keeps_atlas)
    z = int(np.flatnonzero(painted.any(axis=(1, 2)))[1])
    y, x = (int(v.mean()) for v in np.nonzero(painted[z]))
    click = {"coordinates": "voxel", "points": [{"position": [x, y, z]}]}
    jobs = {"predict": {"kind": "predict", "image": image, "exemplars": labels, "adapter": kept["adapter"]},
            "propagate": {"kind": "propagate", "image": image, "exemplars": labels},
            "slice": {"kind": "slice", "image": image, "index": z, "points": click}}
    for name, job in jobs.items():
        state = finished(client, client.submit(job))
        assert state["state"] == "done", (name, state)
        result = sitk.GetArrayFromImage(sitk.ReadImage(str(client.result(state["id"], tmp_path / f"{name}.nii.gz"))))
        on_painted = result[painted.any(axis=(1, 2))] > 0
        if name == "slice":
            assert result.any(axis=(1, 2)).sum() == 1 and result[z].any()
        else:  # the painted slices are kept as painted
            np.testing.assert_array_equal(on_painted, painted[painted.any(axis=(1, 2))] > 0)
            assert result.any(axis=(1, 2)).sum() > painted.any(axis=(1, 2)).sum()
    client.delete("adapters", kept["adapter"])
    assert client.adapters() == []
    with pytest.raises(RemoteError, match="not found"):
        client.submit(jobs["predict"])
