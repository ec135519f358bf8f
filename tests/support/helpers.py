"""Helpers shared by tests.

``run_cli`` runs the ``modelyard`` command in this process through click's ``CliRunner`` (a
fraction of a second instead of the 3-5 s a new interpreter needs to import MLflow);
``run_cli_subprocess`` runs the real ``python -m modelyard`` process, for the few tests that are
about the process itself (start-up, ``--version``, exit codes and stderr of a user error).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class ProcessStateLeak(UserWarning):
    """A command run in-process changed state that a real process would have taken with it
    (``os.environ``, the working directory, MLflow's globals, logging handlers). The library
    must not touch process-wide state: the warning names what changed; run_cli puts it back."""


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``modelyard ARGS`` in this process: exit code, stdout and stderr, as a real process.

    ``env`` is laid over ``os.environ`` and ``cwd`` is the working directory for this call only.
    An exception that escapes the command (anything but ``SystemExit``) propagates, so the test
    fails with its traceback instead of seeing exit code 1.
    """
    from click.testing import CliRunner

    from modelyard.cli import main

    try:  # click < 8.2 mixes stderr into stdout unless told not to
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2 always keeps them apart
        runner = CliRunner()
    with _process_state_kept(cwd):
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False,
                               prog_name="modelyard")
    done = subprocess.CompletedProcess(["modelyard", *args], result.exit_code,
                                       result.stdout, result.stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"modelyard {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def run_cli_subprocess(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                       check: bool = False,
                       timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real ``python -m modelyard`` process (exit code, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd,
        timeout=timeout, check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"modelyard {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


class Forwarder:
    """A TCP forwarder on a loopback port: ``stop()`` makes the service behind it vanish
    while its URI stays the same (a real outage, not a mock)."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.target = (host, port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import socket
        import threading

        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: object, dest: object) -> None:
        import socket

        assert isinstance(source, socket.socket) and isinstance(dest, socket.socket)
        try:
            while data := source.recv(65536):
                dest.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, dest):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        import socket

        self.running = False
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
# -- what a real process would have taken with it ----------------------------------------------

_MLFLOW_UNTOUCHED: dict[str, Any] = {
    "tracking_uri": None, "registry_uri": None, "experiment_id": None, "active_runs": 0}


def _mlflow_globals() -> dict[str, Any]:
    """MLflow's process-wide tracking / registry URIs and active runs (if MLflow is loaded)."""
    if "mlflow" not in sys.modules:
        return {}
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return {
        "tracking_uri": tracking_utils._tracking_uri,
        "registry_uri": registry_utils._registry_uri,
        "experiment_id": fluent._active_experiment_id,
        "active_runs": len(fluent._active_run_stack.get()),
    }


def _restore_mlflow_globals(saved: dict[str, Any]) -> None:
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    while _mlflow_globals()["active_runs"] > saved["active_runs"]:
        mlflow.end_run()
    # Assigned directly: the mlflow.set_* functions would also export them to os.environ.
    tracking_utils._tracking_uri = saved["tracking_uri"]
    registry_utils._registry_uri = saved["registry_uri"]
    fluent._active_experiment_id = saved["experiment_id"]


def _handlers() -> dict[str, list[logging.Handler]]:
    names = ["", "modelyard", *(n for n in logging.root.manager.loggerDict
                                 if n.startswith("modelyard."))]
    return {name: list(logging.getLogger(name).handlers) for name in names}


@contextmanager
def _process_state_kept(cwd: Path | None) -> Iterator[None]:
    """Run a block in ``cwd``, then put back (and report) what it changed in the process."""
    environ = dict(os.environ)
    start = os.getcwd()
    mlflow_before = _mlflow_globals()
    handlers = _handlers()
    leaks: list[str] = []
    if cwd is not None:
        os.chdir(cwd)
    expected_cwd = os.getcwd()
    try:
        yield
    finally:
        if os.getcwd() != expected_cwd:
            leaks.append(f"working directory changed to {os.getcwd()}")
        os.chdir(start)
        changed = sorted(k for k in {*environ, *os.environ} if environ.get(k) != os.environ.get(k))
        if changed:
            leaks.append("os.environ changed: " + ", ".join(changed))
            for key in changed:
                if key in environ:
                    os.environ[key] = environ[key]
                else:
                    del os.environ[key]
        mlflow_after = _mlflow_globals()
        mlflow_before = {**_MLFLOW_UNTOUCHED, **mlflow_before}
        if mlflow_after and mlflow_after != mlflow_before:
            leaks.append(f"MLflow globals changed: {mlflow_before} -> {mlflow_after}")
            _restore_mlflow_globals(mlflow_before)
        for name, before in handlers.items():
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if h not in before]:
                leaks.append(f"logging handler added to {name or 'root'}: {handler!r}")
                logger.removeHandler(handler)
        for leak in leaks:
            warnings.warn(leak, ProcessStateLeak, stacklevel=4)


def corrupt_version(yard: Any, name: str, ref: str = "production") -> None:
    """Flip a byte in the middle of a version's biggest artifact file, in the artifact store."""
    import shutil
    import uuid

    mv = yard.get(name, ref)
    folder = Path(str(uuid.uuid4()))
    local = yard.tracking.artifacts.download(mv.source, folder)
    victim = max((p for p in local.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    yard.tracking.artifacts.put_artifacts(mv.artifact_location, local)
    shutil.rmtree(folder)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on a free loopback port; yield its base URL."""
    import threading
    import time

    import uvicorn

    from tests.support.devstack import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def fail_first_alias_write(yard: Any, monkeypatch: Any) -> Callable[[], None]:
    """The registry refuses the first alias move, raised at the edge moves write through as a
    dropped connection would be translated (MLflow's client on the embedded default, the lean
    REST writer on a server); the rest go through. Returns the undo."""
    from modelyard.errors import BackendError

    edge = type(yard.ctx.writes)
    original = edge.set_alias
    calls = {"n": 0}

    def failing(self: Any, model: str, alias: str, version: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise BackendError(detail="connection dropped")
        original(self, model, alias, version)

    monkeypatch.setattr(edge, "set_alias", failing)
    return lambda: monkeypatch.setattr(edge, "set_alias", original)


def project_shell(root: Path) -> tuple[Callable[..., str], tuple[str, ...], tuple[str, ...]]:
    """``(sh, git, dvc)`` for a project at ``root``: ``sh(*argv)`` runs a command there
    (asserting it succeeds, returning its stdout); ``git`` / ``dvc`` are the argv prefixes to
    run them with (a test identity for git, this Python's DVC)."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ["PATH"]])}

    def sh(*argv: str) -> str:
        done = subprocess.run(list(argv), cwd=root, env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        return done.stdout

    return sh, ("git", "-c", "user.name=t", "-c", "user.email=t@example.com"), (
        sys.executable, "-m", "dvc")


def git_dvc_project(root: Path) -> tuple[Callable[..., str], tuple[str, ...], tuple[str, ...]]:
    """A git + DVC project initialised at ``root``: ``project_shell(root)`` once both are."""
    sh, git, dvc = project_shell(root)
    sh(*git, "init", "-q", "-b", "main")
    sh(*dvc, "init", "-q")
    (root / ".gitignore").write_text(".modelyard/\n")
    return sh, git, dvc


# A one-stage DVC pipeline whose train.py fits a small model and registers it as NAME.
LOGREG_TRAIN = '''\
import json
import pandas as pd
from sklearn.linear_model import LogisticRegression
from modelyard import Yard

frame = pd.read_csv("data.csv")
X, y = frame[["a", "b"]], frame["label"]
model = LogisticRegression().fit(X, y)
accuracy = float(model.score(X, y))
with open("metrics.json", "w") as handle:
    json.dump({"accuracy": accuracy}, handle)
Yard().register(model, "NAME", metrics={"accuracy": accuracy}, input_example=X.head(20),
                data=["data.csv"], pip_requirements=["scikit-learn"])
'''

TRAIN_STAGE = '''\
stages:
  train:
    cmd: python train.py
    deps: [train.py, data.csv]
    metrics:
      - metrics.json:
          cache: false
'''
