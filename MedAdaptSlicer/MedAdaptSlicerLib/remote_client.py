"""HTTP client of ``medadapt serve`` in the standard library only, so Remote mode needs neither torch nor the
core installed in Slicer (README: Server and remote use). Every failure is a :class:`RemoteError` whose
message says what the server or the network answered."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class RemoteError(RuntimeError):
    """The server refused a request (``status`` is its HTTP status) or could not be reached (``status`` 0)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class RemoteClient:
    """One server (``url`` such as ``http://gpu-box:8790``) and one bearer ``token`` ("" when it has none)."""

    def __init__(self, url: str, token: str = "", timeout: float = 60.0):
        parsed = urllib.parse.urlparse(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"server URL: expected http://HOST:PORT or https://HOST:PORT, got {url!r}")
        self.url, self.token, self.timeout = url.strip().rstrip("/"), token.strip(), timeout

    def _request(self, method: str, path: str, body=None, headers: dict | None = None, timeout: float | None = None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if isinstance(body, (dict, list)):
            body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout, context=ssl.create_default_context())
        except urllib.error.HTTPError as exc:
            raise RemoteError(f"server: {_detail(exc)} (HTTP {exc.code})", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"server {self.url}: cannot connect ({reason})") from None

    def _json(self, method: str, path: str, body=None, timeout: float | None = None):
        with self._request(method, path, body, timeout=timeout) as response:
            return json.loads(response.read())

    def health(self) -> dict:
        """The server's version and devices (no token needed)."""
        return self._json("GET", "/v1/health")

    def whoami(self) -> dict:
        """This token's name, limits and usage: "Test connection"."""
        return self._json("GET", "/v1/whoami")

    def upload(self, path: str | Path) -> dict:
        """Upload an image file (streamed); returns the volume record with its ``id``."""
        path = Path(path)
        size = path.stat().st_size
        try:
            with path.open("rb") as stream:
                with self._request("POST", f"/v1/volumes?name={urllib.parse.quote(path.name)}", stream,
                                   {"Content-Length": str(size), "Content-Type": "application/octet-stream"},
                                   timeout=max(self.timeout, size / 1e6)) as response:
                    return json.loads(response.read())
        except RemoteError as exc:
            if exc.status:
                raise
            self._refused_size(path, size)  # a server refusing a large upload may close before its answer is read
            raise

    def _refused_size(self, path: Path, size: int) -> None:
        """:class:`RemoteError` (413) when ``size`` bytes exceed this token's upload limit or storage left."""
        try:
            facts = self.whoami()
        except RemoteError:
            return
        limits, used = facts.get("limits", {}), facts.get("usage", {}).get("storage_mb", 0)
        room = min(limits.get("max_upload_mb", float("inf")), limits.get("max_storage_mb", float("inf")) - used)
        if size > room * 1024 * 1024:
            raise RemoteError(f"server: upload of {path.name} ({size / 2 ** 20:.0f} MB) refused: the limit is "
                              f"{limits.get('max_upload_mb')} MB per upload and {limits.get('max_storage_mb')} MB "
                              f"stored per token ({max(room, 0):.0f} MB left) (HTTP 413)", 413) from None

    def submit(self, job: dict) -> dict:
        """Queue a job (see the server's ``POST /v1/jobs``); returns its record with its ``id``."""
        return self._json("POST", "/v1/jobs", job)

    def job(self, job_id: str, wait: float = 0.0) -> dict:
        """The job's state and progress; with ``wait`` seconds, once it finishes or the wait ends."""
        return self._json("GET", f"/v1/jobs/{_quoted(job_id)}?wait={wait:g}", timeout=self.timeout + wait)

    def cancel(self, job_id: str) -> dict:
        """Ask the server to stop the job."""
        return self._json("POST", f"/v1/jobs/{_quoted(job_id)}/cancel")

    def download(self, path: str, target: str | Path) -> Path:
        """Save a file route's body to ``target`` atomically (a temporary file beside it, then renamed)."""
        target = Path(target)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as stream, self._request("GET", path) as response:
                shutil.copyfileobj(response, stream, CHUNK)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def result(self, job_id: str, target: str | Path) -> Path:
        """Download a finished job's label map (NIfTI) to ``target``."""
        return self.download(f"/v1/jobs/{_quoted(job_id)}/result", target)

    def adapter(self, adapter_id: str, target: str | Path) -> Path:
        """Download a kept adapter folder as a zip file to ``target``."""
        return self.download(f"/v1/adapters/{_quoted(adapter_id)}", target)

    def adapters(self) -> list[dict]:
        """This token's kept adapters."""
        return self._json("GET", "/v1/adapters")

    def delete(self, kind: str, item_id: str) -> dict:
        """Delete a volume, job or adapter (``kind``: ``volumes``, ``jobs``, ``adapters``) on the server."""
        return self._json("DELETE", f"/v1/{kind}/{_quoted(item_id)}")


def _quoted(item_id: str) -> str:
    return urllib.parse.quote(str(item_id), safe="")


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if isinstance(detail, list):  # a FastAPI validation error
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail or exc.reason)
