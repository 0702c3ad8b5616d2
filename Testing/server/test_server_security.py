"""Attacks on ``medadapt serve`` and on reading untrusted volume files. Each test drives a real server on
127.0.0.1 in this process (so its memory is this process's) with raw HTTP, and each failed on the code before
the fix it guards: files read through an image header (A), decompression bombs (B), token name collisions (C),
concurrent uploads past the quota (D), base models from the working directory (E), refusals that misstate the
size (F), and malformed or foreign IDs and chunked oversized uploads (G)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import free_port, run_cli
from medadapt.errors import InputError
from medadapt.io.volume import read_volume
from medadapt.server.settings import Limits, ServerSettings, read_tokens
from medadapt.server.store import write_json
from hostile_files import mha_naming, nifti_bomb
from server_fixtures import InProcessServer

ALICE, BOB = "alice-secret-token-0123456789", "bob-secret-token-0123456789ab"
SECRET = b"TOKENS " * 100
MB = 1024 * 1024
HEX = "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two tokens, a 4 MB upload limit, a folder of base models holding ``clinic``, and a secret file two
    folders above every uploaded file (``../../../secret.txt`` from ``volumes/<id>/image.mha``)."""
    root = tmp_path_factory.mktemp("security")
    (root / "secret.txt").write_bytes(SECRET)
    (root / "models" / "clinic").mkdir(parents=True)
    running = InProcessServer(ServerSettings(root / "data", port=free_port(), tokens={ALICE: "alice", BOB: "bob"},
                                             limits=Limits(max_upload_mb=4, max_storage_mb=64),
                                             models=root / "models"))
    running.data, running.root = root / "data", root
    yield running
    running.stop()


def call(server, method: str, path: str, token: str | None = ALICE, body=None, headers: dict | None = None
         ) -> tuple[int, object]:
    """(status, JSON or text) of a request sent as given: no quoting, a generator body sent chunked."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    try:
        connection.request(method, path, body=body, headers=headers, encode_chunked=not isinstance(
            body, (bytes, str, type(None))))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered before the whole body was sent; its answer is still there to read
    response = connection.getresponse()
    text = response.read().decode(errors="replace")
    connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def upload(server, data: bytes, name: str, token: str = ALICE) -> tuple[int, object]:
    return call(server, "POST", f"/v1/volumes?name={name}", token, data)


def tiny(seed: int = 0, shape=(8, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, shape).astype(np.uint8)


def image_bytes(array: np.ndarray, suffix: str, folder: Path) -> bytes:
    path = folder / f"volume{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path.read_bytes()


def stored_files(server) -> list[Path]:
    return sorted(p for p in (server.data / "volumes").rglob("*") if p.is_file())


# A. A header that names another file ---------------------------------------------------------------------------

def nrrd_naming(field: str, target: str) -> bytes:
    header = f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 8 8 8\nencoding: raw\n{field}: {target}\n\n".encode()
    return header + bytes(512)


def nifti_pair_header() -> bytes:
    """A NIfTI-1 header with magic ``ni1``: its voxels would be read from the ``.img`` beside it."""
    import nibabel
    header = nibabel.Nifti1Header()
    header.set_data_shape((8, 8, 8))
    header.set_data_dtype(np.uint8)
    block = bytearray(header.binaryblock)
    block[344:348] = b"ni1\0"
    return bytes(block) + bytes(4 + 512)


@pytest.mark.parametrize("name, make, expected", [
    ("leak.mha", lambda root: mha_naming("../../../secret.txt"), "ElementDataFile = ../../../secret.txt"),
    ("leak.mha", lambda root: mha_naming(str(root / "secret.txt")), "ElementDataFile = /"),
    ("leak.mha", lambda root: mha_naming("LIST\n../../../secret.txt"), "ElementDataFile = LIST"),
    ("leak.nrrd", lambda root: nrrd_naming("data file", "../../../secret.txt"), "data file: ../../../secret.txt"),
    ("leak.nrrd", lambda root: nrrd_naming("datafile", str(root / "secret.txt")), "data file: /"),
    ("leak.nii", lambda root: nifti_pair_header(), "voxels are in a separate .img file"),
])
def test_an_upload_whose_header_names_another_file_is_refused(server, name, make, expected):
    """Before: ITK followed the header to the secret file and the upload was stored with its bytes as voxels."""
    status, answer = upload(server, make(server.root), name)
    assert status == 400, answer
    assert answer["detail"].startswith(f"{name}: the upload: a ") and expected in answer["detail"], answer
    assert not stored_files(server) or all(SECRET[:64] not in p.read_bytes() for p in stored_files(server))
    assert not any((server.data / "staging").iterdir())


def test_a_self_contained_upload_is_still_read(server, tmp_path):
    for suffix in (".mha", ".nrrd", ".nii", ".nii.gz"):
        status, answer = upload(server, image_bytes(tiny(), suffix, tmp_path), f"ok{suffix}")
        assert status == 201 and answer["size"] == [8, 8, 8], (suffix, answer)
        assert call(server, "DELETE", f"/v1/volumes/{answer['id']}")[0] == 200


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_command_line_reads_header_files_only_when_allowed(capsys, small_case, suffix):
    """``medadapt adapt`` refuses an image whose header takes its voxels from another file (exit 2, one line
    naming the file and the flag) unless ``--allow-header-files`` says those files are the user's."""
    image, painted = small_case
    detached = image.with_suffix(suffix)
    sitk.WriteImage(sitk.ReadImage(str(image)), str(detached))
    argv = ["adapt", detached, "--exemplars", painted, "-o", image.parent / "out.nii.gz", "--method", "fill",
            "--quiet"]
    code, _, err = run_cli(capsys, *argv)
    field = "ElementDataFile = ct.raw" if suffix == ".mhd" else "data file: ct.raw"
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{detached}: a " in err and field in err and "--allow-header-files" in err, err
    assert not (image.parent / "out.nii.gz").exists()
    if suffix == ".mhd":  # one run with the flag is enough: the same reader reads both
        code, _, err = run_cli(capsys, *argv, "--allow-header-files")
        assert code == 0 and (image.parent / "out.nii.gz").exists(), err


def test_reading_refuses_other_formats_that_may_read_other_files(tmp_path):
    analyze = tmp_path / "scan.hdr"
    sitk.WriteImage(sitk.GetImageFromArray(tiny()), str(analyze))  # writes scan.hdr + scan.img
    with pytest.raises(InputError, match=r"scan.hdr: a NIfTI / Analyze header whose voxels are in a separate"):
        read_volume(analyze)
    assert read_volume(analyze, allow_header_files=True).array.shape == (8, 8, 8)


# B. Decompression bombs ----------------------------------------------------------------------------------------

def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) * 1024


def reset_peak_rss() -> bool:
    """Make the peak resident memory the current one (Linux: ``clear_refs`` 5); whether that was possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def test_a_decompression_bomb_is_refused_from_its_header(server, tmp_path):
    """Before: a 1 MB .nii.gz declaring 1024^3 voxels was read in full (2 GB more server memory) and stored."""
    bomb = nifti_bomb(tmp_path / "bomb.nii.gz")
    with gzip.open(bomb) as stream:  # a real gzip stream of the declared size
        stream.seek(352 + 1024 ** 3 - 1)
        assert len(stream.read(2)) == 1
    data = bomb.read_bytes()
    measured = reset_peak_rss()  # Linux; elsewhere only the refusal is checked
    before = peak_rss() if measured else 0
    status, answer = upload(server, data, "bomb.nii.gz")
    grown = peak_rss() - before if measured else 0
    assert status in (400, 413), answer
    assert "1024 x 1024 x 1024 = 1,073,741,824 voxels" in answer["detail"], answer
    assert "limit is 524,288,000 voxels (--max-voxels)" in answer["detail"], answer
    assert grown < len(data) + 64 * MB, f"server memory grew by {grown / MB:.0f} MB"
    assert not any((server.data / "staging").iterdir())


def test_text_headers_declaring_huge_grids_are_refused_before_reading(tmp_path):
    nrrd = tmp_path / "huge.nrrd"
    nrrd.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 4096 4096 4096\nendian: little\nencoding: gzip\n\n"
                     + gzip.compress(bytes(1000)))
    with pytest.raises(InputError, match=r"huge.nrrd: the header declares 4096 x 4096 x 4096 = 68,719,476,736 "):
        read_volume(nrrd, max_voxels=10 ** 6)
    absurd = tmp_path / "absurd.mha"
    absurd.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_UCHAR\n"
                       b"CompressedData = True\nCompressedDataSize = 999999999999\nElementDataFile = LOCAL\n")
    with pytest.raises(InputError, match=r"absurd.mha: unreadable .* \(CompressedDataSize 999999999999 is larger"):
        read_volume(absurd)


META = b"ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_UCHAR\n"


@pytest.mark.parametrize("name, header, expected", [
    ("split.mha", META + b"Element\nDataFile = ../secret.txt\n", "MetaImage header line 5 is not 'Key = Value'"),
    ("return.mha", META + b"ElementDataFile = LOCAL\r../secret.txt\n", "line 5 holds a carriage return"),
    ("spaced.mha", META + b"  elementdatafile=../secret.txt\n", "ElementDataFile = ../secret.txt"),
    ("case.nrrd", b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 8 8 8\nData  File: ../secret.txt\n\n",
     "(data file: ../secret.txt)"),
    ("nrrd.mha", b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 8 8 8\nencoding: raw\n\n",
     "MetaImage header line 1 is not 'Key = Value'"),
    ("long.nrrd", b"NRRD0004\n" + b"# comment\n" * 30000, "header longer than 256 KB"),
])
def test_header_tricks_are_refused(tmp_path, name, header, expected):
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / name).write_bytes(header + bytes(512))
    with pytest.raises(InputError) as refused:
        read_volume(tmp_path / name)
    assert str(refused.value).startswith(f"{tmp_path / name}: ") and expected in str(refused.value)


# C. Token names -------------------------------------------------------------------------------------------------

def test_two_tokens_never_share_a_name(tmp_path):
    """Before: a bare token was named ``user<N>`` (N = tokens so far + 1), so ``user2 C`` then a bare ``D``
    made C and D one user, seeing each other's volumes."""
    one, two, three = ("c" * 20, "d" * 20, "e" * 20)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"user2 {one}\n{two}\n")
    names = read_tokens(str(tokens), {})
    assert names == {one: "user2", two: f"token-{hashlib.sha256(two.encode()).hexdigest()[:12]}"}
    tokens.write_text(f"# clinic\n{three}\n\n{two}  # moved\n")  # the name follows the token, not its line
    assert read_tokens(str(tokens), {})[two] == names[two]


@pytest.mark.parametrize("lines, environment, expected", [
    ("alice {A}\nalice {B}\n", {}, "line 2: the name 'alice' is already given to --token-file {F}: line 1"),
    ("alice {A}\nbob {A}\n", {}, "line 2: the same token as --token-file {F}: line 1"),
    ("{A}\n{A}\n", {}, "line 2: the same token as --token-file {F}: line 1"),
    ("alice {A}\n", {"MEDADAPT_TOKEN": "{A}"}, "MEDADAPT_TOKEN: the same token as --token-file {F}: line 1"),
    ("default {A}\n", {"MEDADAPT_TOKEN": "{B}"}, "MEDADAPT_TOKEN: the name 'default' is already given"),
])
def test_a_repeated_name_or_token_refuses_to_start(capsys, tmp_path, lines, environment, expected):
    tokens = tmp_path / "tokens.txt"
    values = {"A": "a" * 20, "B": "b" * 20, "F": tokens}
    tokens.write_text(lines.format(**values))
    environment = {k: v.format(**values) for k, v in environment.items()}
    with pytest.raises(InputError, match=None) as refused:
        read_tokens(str(tokens), environment)
    assert expected.format(**values) in str(refused.value)
    if not environment:
        code, _, err = run_cli(capsys, "serve", "--data", tmp_path / "data", "--port", free_port(), "--token-file",
                               tokens)
        assert code == 2 and expected.format(**values) in err and not (tmp_path / "data").exists(), err


# D. Quota under concurrent uploads -----------------------------------------------------------------------------

@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
def test_concurrent_uploads_never_pass_the_storage_quota(tmp_path, sized):
    """Before: each upload measured the room left when it began, so four 0.9 MB uploads at once were all
    stored under a 2 MB quota. With a Content-Length the whole upload is reserved at once (two fit); a chunked
    one reserves as its bytes arrive."""
    running = InProcessServer(ServerSettings(tmp_path / "data", port=free_port(), tokens={ALICE: "alice"},
                                             limits=Limits(max_upload_mb=2, max_storage_mb=2)))
    try:
        data = image_bytes(tiny(1, (100, 96, 96)), ".nii", tmp_path)  # 0.88 MB
        start, answers = threading.Barrier(4), []

        def chunks():
            start.wait()
            for offset in range(0, len(data), 64 * 1024):
                yield data[offset:offset + 64 * 1024]
                time.sleep(0.01)

        def one():
            answers.append(call(running, "POST", "/v1/volumes?name=scan.nii", ALICE, chunks(),
                                {"Content-Length": str(len(data))} if sized else None))
        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        statuses = sorted(status for status, _ in answers)
        stored = sum(p.stat().st_size for p in (tmp_path / "data" / "volumes").rglob("*") if p.is_file())
        assert stored <= 2 * MB, (statuses, stored)
        assert statuses == [201, 201, 413, 413] if sized else set(statuses) <= {201, 413} and 413 in statuses, answers
        refusal = next(answer for status, answer in answers if status == 413)["detail"]
        assert refusal.startswith("upload of " if sized else "upload of more than "), refusal
        assert "counting uploads in flight" in refusal, refusal
        assert not any((tmp_path / "data" / "staging").iterdir())
        assert call(running, "GET", "/v1/whoami")[1]["usage"]["storage_mb"] <= 2
    finally:
        running.stop()


# E. Base models --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base_model, status, expected", [
    ("stolen", 400, "options.base_model: 'stolen' is not a model this server offers; expected one of litemedsam, "
                    "medsam, sam_vit_b, sam_vit_h, sam_vit_l, swinunetr, clinic (a name, never a file"),
    ("litemedsam", 404, "volume " + HEX + ": not found"),
    ("clinic", 400, "models/clinic: not a MedAdapt lineage"),
    ("../models/clinic", 400, "a name, never a file or folder on the server"),
])
def test_base_model_comes_from_the_registry_or_the_models_folder_only(server, tmp_path, monkeypatch, base_model,
                                                                       status, expected):
    """Before: a name was looked up as a folder in the server's working directory (a folder named like a
    registry model shadowed it)."""
    for folder in ("stolen", "litemedsam"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "lineage.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    job = {"kind": "adapt", "image": HEX, "exemplars": HEX, "options": {"method": "fill", "base_model": base_model}}
    answer = call(server, "POST", "/v1/jobs", body=json.dumps(job), headers={"Content-Type": "application/json"})
    assert answer[0] == status and expected in answer[1]["detail"], answer


def test_command_line_base_model_may_still_be_a_folder(tmp_path):
    from medadapt.options import AdaptOptions, build_config
    (tmp_path / "mine").mkdir()
    with pytest.raises(InputError, match="mine: not a MedAdapt lineage"):
        build_config(AdaptOptions(method="fill", device="cpu", base_model=str(tmp_path / "mine")))


# F. What a refusal says -------------------------------------------------------------------------------------------

def test_a_refused_upload_says_its_real_size(server, tmp_path):
    """Before: ``upload of 0 MB refused`` for anything under half a megabyte."""
    from medadapt.server.routes.volumes import _too_large
    assert _too_large(300 * 1024, 100 * 1024, Limits()).startswith("upload of 300.0 KB refused")
    assert "(100.0 KB left" in _too_large(300 * 1024, 100 * 1024, Limits())
    status, answer = upload(server, bytes(4 * MB + 512 * 1024), "big.nii.gz")
    assert status == 413 and answer["detail"].startswith("upload of 4.5 MB refused: the limit is 4 MB"), answer


# G. IDs, ownership and chunked uploads ----------------------------------------------------------------------------

ID_ROUTES = [("DELETE", "/v1/volumes/{}", "volume ID"), ("GET", "/v1/jobs/{}", "job ID"),
             ("POST", "/v1/jobs/{}/cancel", "job ID"), ("GET", "/v1/jobs/{}/result", "job ID"),
             ("DELETE", "/v1/jobs/{}", "job ID"), ("GET", "/v1/adapters/{}", "adapter ID"),
             ("DELETE", "/v1/adapters/{}", "adapter ID")]
BAD_IDS = ["..%2F", "../..", HEX + "/../../etc/passwd", HEX + "%2F..%2F..%2Fetc%2Fpasswd", HEX + "%0A",
           HEX.upper(), HEX[:31], HEX + "0"]


@pytest.mark.parametrize("method, route, what", ID_ROUTES)
def test_every_route_refuses_a_malformed_id_with_400(server, method, route, what):
    """Before: ``re.match`` with ``$`` let ``<32 hex>\\n`` through (404), and an ID with a slash never reached
    the check (the router's 404)."""
    for bad in BAD_IDS:
        status, answer = call(server, method, route.format(bad))
        assert status == 400, (bad, status, answer)
        assert answer["detail"].startswith(f"{what}: expected an ID of 32 hex digits"), (bad, answer)


@pytest.mark.parametrize("field", ["image", "exemplars", "adapter"])
def test_every_id_in_a_job_is_checked(server, field):
    for bad in ("../" + HEX, HEX + "\n", HEX.upper(), HEX[:31], HEX + "0", 7):
        job = {"kind": "predict", "image": HEX, "exemplars": HEX, "adapter": HEX, field: bad}
        status, answer = call(server, "POST", "/v1/jobs", body=json.dumps(job))
        assert status == 400 and answer["detail"].startswith(f"{field}: expected an ID"), (bad, answer)


@pytest.fixture()
def alices(server, tmp_path):
    """Alice's volume, finished job (with result) and adapter: their IDs by kind."""
    status, volume = upload(server, image_bytes(tiny(), ".nii.gz", tmp_path), "mine.nii.gz")
    assert status == 201, volume
    job_id, adapter_id = os.urandom(16).hex(), os.urandom(16).hex()
    (server.data / "jobs" / job_id).mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(tiny()), str(server.data / "jobs" / job_id / "result.nii.gz"))
    write_json(server.data / "jobs" / f"{job_id}.json", {
        "id": job_id, "owner": "alice", "kind": "adapt", "state": "done", "created": time.time(),
        "request": {"kind": "adapt", "image": volume["id"]}, "adapter": adapter_id, "error": "", "facts": {}})
    (server.data / "adapters" / adapter_id).mkdir()
    (server.data / "adapters" / adapter_id / "manifest.json").write_text("{}")
    write_json(server.data / "adapters" / f"{adapter_id}.json", {"id": adapter_id, "owner": "alice", "job": job_id,
                                                                 "created": time.time(), "method": "lora"})
    return {"volume": volume["id"], "job": job_id, "adapter": adapter_id}


def test_another_tokens_ids_answer_404_everywhere(server, alices, tmp_path):
    ids = {"volume ID": alices["volume"], "job ID": alices["job"], "adapter ID": alices["adapter"]}
    for method, route, what in ID_ROUTES:
        status, answer = call(server, method, route.format(ids[what]), token=BOB)
        assert status == 404 and "not found" in answer["detail"], (method, route, answer)
    status, own = upload(server, image_bytes(tiny(), ".nii.gz", tmp_path), "bobs.nii.gz", token=BOB)
    for job in ({"kind": "adapt", "image": alices["volume"], "exemplars": own["id"], "options": {"method": "fill"}},
                {"kind": "adapt", "image": own["id"], "exemplars": alices["volume"], "options": {"method": "fill"}},
                {"kind": "predict", "image": own["id"], "adapter": alices["adapter"]}):
        status, answer = call(server, "POST", "/v1/jobs", token=BOB, body=json.dumps(job))
        assert status == 404 and "not found" in answer["detail"], (job, answer)
    assert call(server, "GET", "/v1/jobs", token=BOB)[1] == []
    for method, route, what in ID_ROUTES[1:4:2] + ID_ROUTES[5:6]:  # alice still reaches all of it
        assert call(server, method, route.format(ids[what]))[0] == 200, route


def test_a_chunked_oversized_upload_is_refused_and_leaves_nothing(server):
    before = stored_files(server)

    def body():
        for _ in range(6 * 16):  # 6 MB in 64 KB chunks, no Content-Length
            yield bytes(64 * 1024)
    status, answer = call(server, "POST", "/v1/volumes?name=big.nii.gz", body=body())
    assert status == 413 and re.match(r"upload of more than 4\.\d MB refused", answer["detail"]), answer
    assert stored_files(server) == before and not any((server.data / "staging").iterdir())
