"""Fresh processes for the tests that need a process boundary (races, kills), without a new
interpreter each.

A spawned process (or ``python -c``) imports modelyard's backend, MLflow and SQLAlchemy again:
about 3 CPU-seconds each, and the suite starts dozens. Here they are forked by one server
process (``multiprocessing``'s forkserver) that imported those modules once; each child is
still a process of its own (its own PID, memory, database connections and signals: it can be
killed with SIGKILL or stopped with SIGSTOP), and it runs with exactly the environment and
working folder the test hands it, not the server's.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["Forked", "call", "context", "in_env", "start"]

# What the children's work imports: loaded once by the fork server, before any child exists.
# Only imports: nothing is opened (no engine, no client, no thread), so each child starts clean.
PRELOAD = [
    "tests.support.workers",
    "mlflow",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.pyfunc",
    "sqlalchemy",
    "alembic",
    "boto3",
    "modelyard",
    "modelyard.backend.tracking",
    "modelyard.yard",
]


def context() -> Any:
    """The forkserver context (its server starts at the first process, preloading once)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def in_env(env: dict[str, str], cwd: str, stderr: str | None, target: Callable[..., Any],
           *args: Any) -> Any:
    """Run ``target(*args)`` in this (forked) process with exactly ``env`` and ``cwd``, as a
    process started by the test with them would; stderr goes to the file ``stderr``."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    if stderr is not None:
        with open(stderr, "ab") as out:
            os.dup2(out.fileno(), 2)
    return target(*args)


def call(args: tuple[dict[str, str], str, Callable[..., Any], Any]) -> Any:
    """For ``Pool.map``: ``in_env`` with one argument tuple ``(env, cwd, target, arg)``."""
    env, cwd, target, arg = args
    return in_env(env, cwd, None, target, arg)


class Forked:
    """A forked child with the parts of ``subprocess.Popen`` the tests use."""

    def __init__(self, process: Any, stderr_path: Path) -> None:
        self.process = process
        self.pid: int = process.pid
        self._stderr_path = stderr_path

    @property
    def returncode(self) -> int | None:
        code: int | None = self.process.exitcode
        return code

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise TimeoutError(f"process {self.pid} still runs after {timeout} s")
        return int(self.process.exitcode)

    def kill(self) -> None:
        self.process.kill()

    @property
    def stderr(self) -> IO[bytes]:
        return self._stderr_path.open("rb")

    def __del__(self) -> None:
        self._stderr_path.unlink(missing_ok=True)


def start(target: Callable[..., Any], *args: Any, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Forked:
    """Start ``target(*args)`` in a fresh process with ``env`` (default: this process's
    environment now) and ``cwd`` (default: the working folder now)."""
    handle, stderr_path = tempfile.mkstemp(prefix="forked-", suffix=".err")
    os.close(handle)
    process = context().Process(
        target=in_env,
        args=(dict(os.environ if env is None else env), str(cwd or Path.cwd()), stderr_path,
              target, *args),
        daemon=True)
    process.start()
    return Forked(process, Path(stderr_path))

