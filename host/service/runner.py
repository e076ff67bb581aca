"""Run an ASGI app with uvicorn: in the foreground (CLI) or on a background thread (tests, embedding)."""

from __future__ import annotations

import threading
import time

import uvicorn


def serve(app, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM run the app's shutdown, which stops the worker cleanly)."""
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class ServerThread:
    """``uvicorn.Server`` on a daemon thread; ``port=0`` binds a free port (read it from ``.port``).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"):
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                                    lifespan="on"))
        self.host = host
        self.port: int | None = None
        self._thread = threading.Thread(target=self.server.run, name="edgezo-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped while starting (port taken?)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {timeout} s")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
