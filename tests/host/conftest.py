"""Shared helpers of the host tests: ``edgezo serve ...`` started as its own process."""

import os
import socket
import subprocess
import sys
import time
import types

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], port: int | None = None):
    """``python -m edgezo serve ARGS --port P`` in its own process, not waited for: (process, url)."""
    port = port or _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgezo", "serve", *args, "--port", str(port),
                             "--log-level", "warning"],
                            env=dict(os.environ, OMP_NUM_THREADS="1", **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float = 90) -> None:
    """Until ``url/healthz`` answers 200; an AssertionError with the server's stderr if it exits first."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{url} did not start in {timeout:.0f} s")


def _serve(args: list[str], env: dict[str, str], port: int | None = None, timeout: float = 90):
    """Start ``edgezo serve ARGS`` and wait until it is healthy: (process, url)."""
    proc, url = _start(args, env, port)
    _wait_healthy(proc, url, timeout)
    return proc, url


@pytest.fixture
def serve_process():
    """``serve_process(args, env, port=None)`` starts ``edgezo serve`` in its own process (see ``_serve``)."""
    return _serve


@pytest.fixture
def free_port():
    return _free_port


@pytest.fixture
def server_steps():
    """``.start(args, env, port=None)`` → (process, url) without waiting, ``.wait(process, url)``: for tests that
    start several servers at once."""
    return types.SimpleNamespace(start=_start, wait=_wait_healthy)
