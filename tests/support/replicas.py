"""`modelyard serve` as a separate process on a free loopback port: a replica for the tests.

Each replica inherits the test's environment and working folder (the embedded registry in
``.modelyard/`` or the team stack's variables), runs in its own session so the test stops it
and only it by its process group, and logs to a file the failure message shows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One ``modelyard serve NAME ...`` process; ``url`` answers once ``wait_ready`` returned."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelyard", "serve", name, "--port", str(self.port),
                 "--log-level", "warning", *args],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> tuple[dict[str, Any], int]:
        """Poll ``/ready`` until 200; returns its body and how many polls were not 200 first
        (refused connections and 503s alike)."""
        deadline = time.monotonic() + timeout
        not_ready = 0
        while True:
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"never ready:\n{self.output()}"
            with contextlib.suppress(httpx.HTTPError):
                reply = httpx.get(f"{self.url}/ready", timeout=2)
                if reply.status_code == 200:
                    return dict(reply.json()), not_ready
            not_ready += 1
            time.sleep(0.1)

    def about(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/version", timeout=10).json())

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a replica: it drains, then flushes its capture."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise AssertionError(f"did not stop on SIGTERM:\n{self.output()}") from None

    def stop(self) -> None:
        self.terminate()
        with contextlib.suppress(AssertionError):
            self.wait()
