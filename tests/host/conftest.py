"""Shared helpers of the host tests: ``edgezo serve ...`` started as its own process."""

import os
import socket
import subprocess
import sys
import time

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args: list[str], env: dict[str, str], port: int | None = None, timeout: float = 90):
    """``python -m edgezo serve ARGS --port P`` until ``/healthz`` answers 200: (process, url)."""
    import httpx

    port = port or _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgezo", "serve", *args, "--port", str(port),
                             "--log-level", "warning"],
                            env=dict(os.environ, OMP_NUM_THREADS="1", **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"edgezo serve {args[0]} exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"edgezo serve {args[0]} did not start in {timeout:.0f} s")


@pytest.fixture
def serve_process():
    """``serve_process(args, env, port=None)`` starts ``edgezo serve`` in its own process (see ``_serve``)."""
    return _serve


@pytest.fixture
def free_port():
    return _free_port
