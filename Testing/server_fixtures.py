"""A real ``medadapt serve`` on 127.0.0.1 inside the test process (uvicorn in a thread), shared by the server
tests and the Slicer Remote-mode tests."""

from __future__ import annotations

import threading
import time

from medadapt.server.settings import ServerSettings


class InProcessServer:
    """``create_app`` served by uvicorn in a thread of this process."""

    def __init__(self, settings: ServerSettings):
        import uvicorn

        from medadapt.server.app import create_app
        self.url = f"http://127.0.0.1:{settings.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
