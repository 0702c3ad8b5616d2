"""``medadapt web``'s access rules and uploads over the real protocol: two ``medadapt web --data none``
processes (one with a ``--token-file`` login, one without) spoken to as the page speaks to them, over HTTP and
wslink's websocket protocol (msgpack messages in chunks, the ``wslink.hello`` handshake with its secret, then
rpc calls such as ``trame.trigger``, the call trame-slicer's upload button makes for each chunk of files).

Checked: a login token is needed (the hello fails without it, and trame's public default secret never works);
without a login the page gets a random secret and answers only to this computer's names; a foreign ``Origin``
is refused before the upgrade; one session at a time; uploads named ``../..`` or absolute are written under
names the server makes (or refused), never where their names point; too large an upload is dropped; a
non-loopback ``--host`` without a token does not start; SIGTERM stops the app at once."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, run_cli
from hostile_files import mha_naming, nifti_bomb
from web_strokes import IMAGE

pytest.importorskip("trame_slicer", reason="the browser UI needs trame-slicer (requirements.txt)")

import aiohttp  # noqa: E402
import msgpack  # noqa: E402
from wslink.chunking import UnChunker, generate_chunks  # noqa: E402

TOKEN = "alice-login-token-0123456789abcdef"
START_S = 240
CHUNK = 2**20


class App:
    """A ``medadapt web`` child process; its output goes to ``log``."""

    def __init__(self, folder: Path, *options: str):
        self.port, self.log = free_port(), folder / "web.log"
        env = {k: v for k, v in os.environ.items() if k != "MEDADAPT_TOKEN"} | {"PYTHONUNBUFFERED": "1"}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medadapt.cli", "web", "--data", "none", "--device", "cpu",
                 "--port", str(self.port), *options], stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self) -> None:
        """Wait until the app answers HTTP."""
        deadline = time.monotonic() + START_S
        while True:
            assert self.process.poll() is None, f"medadapt web exited ({self.process.returncode}):\n{self.output()}"
            assert time.monotonic() < deadline, f"medadapt web did not answer:\n{self.output()}"
            try:
                with urllib.request.urlopen(f"{self.url}/", timeout=5):
                    return
            except OSError:
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """``login``: started with a token file; ``local``: without a login (both start at once)."""
    folder = tmp_path_factory.mktemp("web-security")
    (folder / "tokens").write_text(f"alice {TOKEN}\n")
    (folder / "login").mkdir()
    (folder / "local").mkdir()
    started = {"login": App(folder / "login", "--token-file", str(folder / "tokens"), "--max-upload-mb", "1",
                              "--max-voxels", "1000000"),
               "local": App(folder / "local")}
    try:
        for app in started.values():
            app.wait_ready()
        yield started
    finally:
        for app in started.values():
            app.stop()


class Wslink:
    """A websocket client speaking wslink's protocol (as the page's JavaScript client does)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.unchunker, self.ids = ws, UnChunker(), itertools.count(1)
        self.unchunker.set_max_message_size(2**31)
        self.hello_reply: dict = {}

    async def call(self, method: str, *args, timeout_s: float = 60) -> dict:
        """Send one rpc (``wslink.hello`` as a system call) and return its reply (``result`` or ``error``)."""
        rpc_id = "system:c0:0" if method == "wslink.hello" else f"rpc:c0:{next(self.ids)}"
        message = msgpack.packb({"wslink": "1.0", "id": rpc_id, "method": method, "args": list(args), "kwargs": {}})
        for chunk in generate_chunks(message, CHUNK):
            await self.ws.send_bytes(chunk)
        deadline = time.monotonic() + timeout_s
        while True:
            received = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert received.type == aiohttp.WSMsgType.BINARY, f"the websocket ended: {received}"
            reply = self.unchunker.process_chunk(received.data)
            if reply is not None and reply.get("id") == rpc_id:
                return reply

    async def hello(self, secret) -> None:
        self.hello_reply = await self.call("wslink.hello", {"secret": secret})


def in_session(app: App, secret, body, origin: str | None = "own") -> None:
    """Run ``await body(client)`` on a websocket to ``app`` (from ``origin``; ``"own"``: the page's own) once
    it said hello with ``secret``."""
    async def main():
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{app.url.replace('http', 'ws')}/ws", origin=app.url if origin == "own" else origin) as ws:
            client = Wslink(ws)
            await client.hello(secret)
            await body(client)
    asyncio.run(main())


def handshake(app: App, origin: str | None, host: str | None = None) -> tuple[int, str]:
    """(status, body) of a websocket upgrade request to ``app`` from ``origin`` (no websocket opens on 101)."""
    async def main():
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        headers |= {"Origin": origin} if origin else {}
        headers |= {"Host": host} if host else {}
        async with aiohttp.ClientSession() as http, http.get(f"{app.url}/ws", headers=headers) as response:
            return response.status, (await response.text() if response.status != 101 else "")
    return asyncio.run(main())


def http_get(app: App, path: str, **headers) -> tuple[int, dict, str]:
    """(status, headers, body) of GET ``path`` without following redirects."""
    async def main():
        async with aiohttp.ClientSession() as http, http.get(f"{app.url}{path}", headers=headers,
                                                             allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.text()
    return asyncio.run(main())


async def page_state(client: Wslink) -> dict:
    reply = await client.call("trame.state.get")
    return reply["result"]["state"]


async def upload(client: Wslink, files: list[tuple[str, bytes]]) -> dict:
    """Upload ``files`` (name, content) as the page's upload button does; the page's state afterwards."""
    state = await page_state(client)
    template = next(v for v in state.values() if isinstance(v, str) and "load_files_by_chunks" in v)
    trigger = re.search(r"trigger_name: '(trigger__\d+)'", template).group(1)
    chunks = [[{"name": name, "size": len(content), "type": "application/octet-stream", "lastModified": 0,
                "content": content}] for name, content in files]
    for chunk in [*chunks, []]:  # a chunk a file, then the empty chunk that ends the upload
        reply = await client.call("trame.trigger", trigger, [chunk], {})
        assert "error" not in reply, reply
    return await page_state(client)


# -- login ------------------------------------------------------------------------------------------------------


def test_the_login_token_opens_the_session_and_nothing_else_does(apps):
    app = apps["login"]

    async def refused(client):
        assert client.hello_reply["error"]["message"] == "Authentication failed", client.hello_reply
        state = await client.call("trame.state.get")
        assert state["error"]["message"] == "Unauthorized: Skip message processing"
    for wrong in ("wslink-secret", "", TOKEN[:-1], 12345):
        in_session(app, wrong, refused)

    async def allowed(client):
        assert "clientID" in client.hello_reply["result"], client.hello_reply
        assert "ma_status" in await page_state(client)
    in_session(app, TOKEN, allowed)
    assert "session opened (alice)" in app.output()


def test_the_page_asks_for_the_token_and_keeps_it_out_of_other_sites(apps):
    status, headers, body = http_get(apps["login"], "/")
    assert status == 200 and 'name="secret"' in body and TOKEN not in body
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
    status, headers, _ = http_get(apps["login"], f"/?secret={TOKEN}")
    assert status == 302 and headers["Location"] == f"index.html?secret={TOKEN}"  # trame's page reads it
    status, _, body = http_get(apps["login"], f"/index.html?secret={TOKEN}")
    assert status == 200 and "trame" in body
    status, _, body = http_get(apps["login"], "/index.html?secret=wslink-secret")
    assert status == 403 and "Wrong token." in body and 'name="secret"' in body


def test_without_a_login_the_page_gets_a_random_secret_on_this_computer_only(apps):
    app = apps["local"]
    status, headers, _ = http_get(app, "/")
    assert status == 302 and headers["Location"].startswith("index.html?secret=")
    secret = headers["Location"].split("=", 1)[1]
    assert len(secret) >= 32 and secret != "wslink-secret"

    async def refused(client):
        assert client.hello_reply["error"]["message"] == "Authentication failed"
    in_session(app, "wslink-secret", refused)

    async def allowed(client):
        assert "clientID" in client.hello_reply["result"]
    in_session(app, secret, allowed)
    # a web site whose name resolves to 127.0.0.1 (DNS rebinding) reads neither the secret nor the page
    status, _, body = http_get(app, "/", Host=f"evil.example:{app.port}")
    assert status == 403 and "--token-file" in body
    assert handshake(app, f"http://evil.example:{app.port}", host=f"evil.example:{app.port}")[0] == 403


def test_each_start_makes_its_own_secret_and_one_hello_holds_the_session():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MedAdaptSlicer"))
    from medadapt_web.app import PageAccess

    first, second = PageAccess({}), PageAccess({})
    assert first.secret != second.secret and "wslink-secret" not in (first.secret, second.secret)
    access = PageAccess({TOKEN: "alice", "bob-login-token-0123456789abc": "bob"})
    assert not access.secret and access.name_of(TOKEN) == "alice" and access.name_of(None) is None

    async def hellos():
        # two websockets that both connected before either said hello: the second hello fails
        assert await access.validateToken(TOKEN, "c1") and access.session == "c1"
        assert not await access.validateToken("bob-login-token-0123456789abc", "c2")
        access.onClose("c2")
        assert access.session == "c1"
        access.onClose("c1")
        assert await access.validateToken("bob-login-token-0123456789abc", "c2")
    asyncio.run(hellos())


# -- origin and sessions ----------------------------------------------------------------------------------------


def test_a_websocket_from_a_foreign_origin_is_refused(apps):
    app = apps["login"]
    for origin in ("http://evil.example", f"http://evil.example:{app.port}", "null", None):
        status, body = handshake(app, origin)
        assert status == 403 and "websocket refused: Origin" in body, (origin, status, body)
    assert handshake(app, app.url)[0] == 101
    assert handshake(app, f"http://localhost:{app.port}", host=f"localhost:{app.port}")[0] == 101

    with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
        in_session(app, TOKEN, None, origin="http://evil.example")
    assert refusal.value.status == 403


def test_a_second_session_is_refused_while_one_is_open(apps):
    app = apps["login"]

    async def first(client):
        assert "clientID" in client.hello_reply["result"]
        status, body = await asyncio.to_thread(handshake, app, app.url)
        assert status == 409 and "single-user" in body, (status, body)
        status, _, body = await asyncio.to_thread(http_get, app, f"/index.html?secret={TOKEN}")
        assert status == 409 and body.startswith("medadapt web is single-user and a session is open")
    in_session(app, TOKEN, first)
    time.sleep(0.5)  # the first session's close reaches the server

    async def next_one(client):
        assert "clientID" in client.hello_reply["result"], client.hello_reply
    in_session(app, TOKEN, next_one)


# -- uploads ----------------------------------------------------------------------------------------------------


def test_uploads_are_written_under_names_the_server_makes(apps):
    app = apps["login"]
    target = Path(f"/tmp/medadapt-web-attack-{secrets.token_hex(4)}")
    target.mkdir()
    relative = "../" * 12 + f"{target.relative_to('/')}/x.nii.gz"
    image = IMAGE.read_bytes()

    async def attack(client):
        loaded = await upload(client, [(relative, image)])
        assert not loaded["ma_error"] and loaded["ma_phase"] == "ready", loaded["ma_error"]
        assert loaded["ma_volume_name"] == relative  # shown as a label only
        refused = await upload(client, [(str(target / "x.txt"), b"pwned"), ("../x.txt", b"pwned")])
        assert refused["ma_error"].startswith(f"upload refused: {target / 'x.txt'}: not an image file")
        assert ".nii.gz" in refused["ma_error"] and refused["ma_volume_name"] == relative  # the volume stays
        too_large = await upload(client, [("big.nii.gz", bytes(600_000)), ("big2.nii.gz", bytes(600_000))])
        assert "more than 1 MB" in too_large["ma_error"] and too_large["ma_volume_name"] == relative
        failed = await upload(client, [(str(target / "y.nrrd"), b"not an image")])
        assert failed["ma_error"].startswith(f"upload refused: {target / 'y.nrrd'}: "), failed["ma_error"]
        leak = await upload(client, [("leak.mha", mha_naming("/etc/hostname"))])
        assert "ElementDataFile = /etc/hostname" in leak["ma_error"] and leak["ma_volume_name"] == relative
        bomb = await upload(client, [("bomb.nii.gz", nifti_bomb(target.parent / f"{target.name}.nii.gz", 128)
                                      .read_bytes())])
        assert "limit is 1,000,000 voxels (--max-voxels)" in bomb["ma_error"], bomb["ma_error"]
    try:
        in_session(app, TOKEN, attack)
        assert list(target.iterdir()) == []
    finally:
        for path in target.iterdir():
            path.unlink()
        target.rmdir()
        Path(f"{target}.nii.gz").unlink(missing_ok=True)


# -- start and stop ---------------------------------------------------------------------------------------------


def test_a_host_beyond_this_machine_needs_a_login_token(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MEDADAPT_TOKEN", raising=False)
    code, _, err = run_cli(capsys, "web", "--host", "0.0.0.0", "--data", "none")
    assert code == 2 and "--host 0.0.0.0" in err and "--token-file" in err and "MEDADAPT_TOKEN" in err
    (tmp_path / "short").write_text("alice short\n")
    code, _, err = run_cli(capsys, "web", "--host", "0.0.0.0", "--token-file", tmp_path / "short")
    assert code == 2 and "at least 16 characters" in err


def test_sigterm_stops_the_app_at_once(apps):
    """Last: stops the ``login`` app."""
    app = apps["login"]
    start = time.monotonic()
    app.process.send_signal(signal.SIGTERM)
    code = app.process.wait(10)
    assert time.monotonic() - start < 2.0 and code == 0, (time.monotonic() - start, code, app.output())
