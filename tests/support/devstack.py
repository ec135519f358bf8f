"""Real-services test stack: PostgreSQL, an S3 endpoint (moto) and an MLflow tracking server.

Everything runs as local processes on free loopback ports, with data, sockets and logs under one
root directory. :meth:`Stack.stop` (or leaving the ``with`` block, or interpreter exit) stops every
process by PID and removes the root directory if the stack created it.

>>> with Stack() as stack:  # doctest: +SKIP
...     os.environ.update(stack.env())
...     ...

``python -m tests.support.devstack`` (``make stack``, from the repository root) starts a stack,
prints ``export K=V`` lines and waits for Ctrl-C.

PostgreSQL comes from Debian's ``postgresql-15`` package. ``initdb`` refuses to run as root, so
when this process is root, initdb and the server run as the ``postgres`` OS user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

__all__ = ["PortTaken", "Service", "Stack", "find_postgres_bindir", "free_port", "main"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
PG_USER = "postgres"
PG_DATABASE = "mlflow"
PREFERRED_PG_MAJOR = 15
PG_INSTALL_HINT = "apt-get install postgresql-15"

POSTGRES_TIMEOUT = 30.0
S3_TIMEOUT = 30.0
MLFLOW_TIMEOUT = 60.0
# ``mlflow server`` starts this many uvicorn workers unless told otherwise
# (``mlflow/server/__init__.py``: ``workers or 4``): a team's tracking server, as benchmarks
# measure it. The test suite's stacks run one (three stacks share two cores).
MLFLOW_DEFAULT_WORKERS = 4
STOP_TIMEOUT = 15.0
# Where the tracking server tells clients their artifacts go: itself, proxying to the bucket.
MLFLOW_ARTIFACT_ROOT = "mlflow-artifacts:/"
PORT_ATTEMPTS = 3

_PORT_ATTRIBUTE = {"postgres": "pg_port", "s3": "s3_port", "mlflow": "mlflow_port"}
# How PostgreSQL, werkzeug (moto) and uvicorn/gunicorn (MLflow) say their port is taken.
_PORT_TAKEN = ("already in use", "Errno 98")

# Longest unix socket path the kernel accepts is 107 bytes; ".s.PGSQL.NNNNN.lock" is 19 of them.
_MAX_SOCKET_DIR = 107 - 20

# Variables that would let the developer's own AWS / MLflow setup leak into the stack's processes.
_SCRUBBED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_DEFAULT_ARTIFACT_ROOT",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGDATA",
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    """One started process, leader of its own process group (``start_new_session=True``)."""

    name: str
    pid: int
    port: int
    log_path: Path
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    stopped: bool = field(default=False, compare=False)

    def is_running(self) -> bool:
        """Whether the leader process is still alive (and not a zombie)."""
        if self.stopped:
            return False
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the process to exit, wait, SIGKILL its group if needed. Safe to call twice."""
        if self.stopped:
            return
        if self.is_running():
            log.debug("stopping %s (pid %d)", self.name, self.pid)
            if self.signal_group:
                _signal_group(self.pid, self.stop_signal)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, self.stop_signal)
            if not self._wait_leader(timeout):
                log.warning(
                    "%s (pid %d) ignored signal %d; killing", self.name, self.pid, self.stop_signal
                )
        # Whatever is left in the group (workers, a killed leader's children) goes now.
        _signal_group(self.pid, signal.SIGKILL)
        self._wait_leader(timeout)
        deadline = time.monotonic() + 5.0
        while _group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stopped = True

    def _wait_leader(self, timeout: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(self.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def find_postgres_bindir(base: str = "/usr/lib/postgresql") -> Path:
    """Directory with ``initdb`` and ``postgres``: version 15 if present, else the newest."""
    found: dict[int, Path] = {}
    for entry in glob.glob(os.path.join(base, "*", "bin")):
        bindir = Path(entry)
        match = re.fullmatch(r"\d+", bindir.parent.name)
        if match and all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            found[int(bindir.parent.name)] = bindir
    if not found:
        raise RuntimeError(
            f"PostgreSQL {PREFERRED_PG_MAJOR} server binaries not found "
            f"(no {base}/*/bin/initdb): {PG_INSTALL_HINT}"
        )
    return found.get(PREFERRED_PG_MAJOR, found[max(found)])


def _wait_until(
    check: Callable[[], bool],
    service: Service,
    timeout: float,
    what: str,
) -> None:
    """Poll ``check`` until it is true; fail fast (with the log tail) if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            if not service.is_running() or not _listens(service):
                # Something else answered on the port we probed: parallel workers raced for it.
                raise PortTaken(f"port {service.port} is already in use by another process")
            return
        if not service.is_running():
            if any(sign in service.log_tail() for sign in _PORT_TAKEN):
                raise PortTaken(f"port {service.port} is already in use")
            raise RuntimeError(
                f"{service.name} exited before {what} (log {service.log_path}):\n"
                f"{service.log_tail()}"
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{service.name} did not {what} within {timeout:.0f}s "
                f"(log {service.log_path}):\n{service.log_tail()}"
            )
        time.sleep(0.1)


class PortTaken(RuntimeError):
    """The port a service was to listen on was taken by another process first."""


def _listens(service: Service) -> bool:
    """Whether a process of the service's process group listens on its port (Linux /proc).

    Without /proc (not Linux) this cannot be told, and the answer is yes."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as rows:
                for row in list(rows)[1:]:
                    fields = row.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == service.port:
                        inodes.add(f"socket:[{inode}]")
    except OSError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != service.pid:
                continue
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in fds):
                return True
        except OSError:  # gone, or not ours to look at
            continue
    return False


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class Stack:
    """PostgreSQL + moto S3 + MLflow tracking server, each on a free loopback port."""

    def __init__(self, root: Path | None = None, bucket: str = "modelyard", *,
                 mlflow_workers: int = 1) -> None:
        self._owns_root = root is None
        self.mlflow_workers = mlflow_workers
        self._root_arg = Path(root) if root is not None else None
        self._root: Path | None = None
        self._bucket = bucket
        self.postgres: Service | None = None
        self.s3: Service | None = None
        self.mlflow: Service | None = None
        self.pg_port = 0
        self.s3_port = 0
        self.mlflow_port = 0
        self.pg_bindir: Path | None = None
        self.timings: dict[str, float] = {}

    # -- public properties -------------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("stack not started")
        return self._root

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def s3_endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def backend_store_uri(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@{HOST}:{self.pg_port}/{PG_DATABASE}"

    @property
    def services(self) -> list[Service]:
        return [s for s in (self.postgres, self.s3, self.mlflow) if s is not None]

    def env(self) -> dict[str, str]:
        """What a client needs to use the stack."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "MODELYARD_VAULT": f"s3://{self._bucket}/vault",
        }

    def s3_client(self) -> Any:
        """A boto3 S3 client pointed at the stack's endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Stack:
        """Start PostgreSQL, then S3, then MLflow. On failure everything started is stopped."""
        if self._root is not None:
            raise RuntimeError("Stack.start() called twice: a Stack runs once, create a new one")
        self.pg_bindir = find_postgres_bindir()
        self._make_root()
        _LIVE_STACKS.append(self)
        try:
            for step, run in self._steps():
                self._timed(step, run)
        except BaseException:
            self.stop()
            raise
        return self

    def _steps(self) -> list[tuple[str, Callable[[], None]]]:
        """What ``start`` brings up, in order (a stack without PostgreSQL lists fewer)."""
        return [
            ("initdb", self._init_postgres),
            ("postgres", lambda: self._on_a_free_port("postgres", self._start_postgres)),
            ("s3", lambda: self._on_a_free_port("s3", self.start_s3)),
            ("mlflow", lambda: self._on_a_free_port("mlflow", self._start_mlflow)),
        ]

    def stop(self) -> None:
        """Stop every process (MLflow, S3, PostgreSQL) and remove the root if we created it."""
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception:  # keep going: the other services must still be stopped
                log.exception("failed to stop %s", service.name)
        if self._root is not None and self._owns_root:
            shutil.rmtree(self._root, ignore_errors=True)
        if self in _LIVE_STACKS:
            _LIVE_STACKS.remove(self)

    def stop_s3(self) -> None:
        """Stop the S3 endpoint (its data is lost)."""
        if self.s3 is not None:
            self.s3.stop()

    def start_s3(self) -> None:
        """(Re)start the S3 endpoint on the same port and recreate the bucket."""
        if self.s3 is not None and self.s3.is_running():
            return
        if not self.s3_port:
            self.s3_port = free_port()
        self.s3 = self._spawn(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.s3_port)],
            port=self.s3_port,
            env=self._child_env(),
        )
        _wait_until(
            lambda: _http_status(f"{self.s3_endpoint_url}/moto-api/data.json") is not None,
            self.s3,
            S3_TIMEOUT,
            f"answer on port {self.s3_port}",
        )
        self.s3_client().create_bucket(Bucket=self._bucket)

    def restart_mlflow(self) -> None:
        """Stop the tracking server and start it again on the same port."""
        if self.mlflow is not None:
            self.mlflow.stop()
        self._timed("mlflow_restart", self._start_mlflow)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _on_a_free_port(self, service: str, start: Callable[[], None]) -> None:
        """Start a service on a free port; if another process took the port between our probe
        and the service's bind (parallel test workers start stacks at once), take another."""
        attribute = _PORT_ATTRIBUTE[service]
        for attempt in range(1, PORT_ATTEMPTS + 1):
            setattr(self, attribute, free_port())
            try:
                start()
                return
            except PortTaken as exc:
                failed: Service | None = getattr(self, service)
                if failed is not None:
                    failed.stop()
                if attempt == PORT_ATTEMPTS:
                    raise RuntimeError(str(exc)) from exc
                log.warning("%s: %s; trying another port", service, exc)

    def _timed(self, name: str, start: Callable[[], None]) -> None:
        began = time.monotonic()
        start()
        self.timings[name] = time.monotonic() - began
        log.info("%s up in %.2fs", name, self.timings[name])

    def _make_root(self) -> None:
        if self._root_arg is None:
            root = Path(tempfile.mkdtemp(prefix="modelyard-stack-"))
        else:
            root = self._root_arg.resolve()
            root.mkdir(parents=True, exist_ok=True)
        self._root = root
        (root / "logs").mkdir(exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            # The postgres user must be able to reach its data dir: traverse, not list.
            root.chmod(0o711)

    def _child_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(self.root / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.root / "aws-credentials"),
            TMPDIR=str(self.root / "tmp"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        env: dict[str, str],
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
    ) -> Service:
        log_path = self.root / "logs" / f"{name}.log"
        log_file: IO[bytes]
        with open(log_path, "ab") as log_file:
            log_file.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log_file.flush()
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                start_new_session=True,
                **_as_user(user),
            )
        return Service(
            name=name,
            pid=process.pid,
            port=port,
            log_path=log_path,
            stop_signal=stop_signal,
            signal_group=signal_group,
            process=process,
        )

    def _postgres_env(self) -> tuple[dict[str, str], str | None]:
        user = PG_USER if os.geteuid() == 0 else None
        env = self._child_env(LC_ALL="C", LANG="C")
        if user is not None:
            env.update(HOME=str(self.root), USER=user, LOGNAME=user)
        return env, user

    def _init_postgres(self) -> None:
        """Create the PostgreSQL data directory (once; the server may start more than once)."""
        assert self.pg_bindir is not None
        root = self.root
        data_dir = root / "pgdata"
        socket_dir = root / "pgsock"
        if len(str(socket_dir)) > _MAX_SOCKET_DIR:
            raise RuntimeError(
                f"stack root {root} is too long for a unix socket path; use a shorter root"
            )
        env, user = self._postgres_env()
        for directory in (data_dir, socket_dir):
            directory.mkdir(mode=0o700)
            if user is not None:
                entry = _pg_account()
                os.chown(directory, entry.pw_uid, entry.pw_gid)
        initdb_log = root / "logs" / "initdb.log"
        with open(initdb_log, "wb") as out:
            result = subprocess.run(
                [
                    str(self.pg_bindir / "initdb"),
                    "-D",
                    str(data_dir),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
                check=False,
                **_as_user(user),
            )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{_tail(initdb_log)}")

    def _start_postgres(self) -> None:
        assert self.pg_bindir is not None
        data_dir = self.root / "pgdata"
        socket_dir = self.root / "pgsock"
        env, user = self._postgres_env()
        self.postgres = self._spawn(
            "postgres",
            [
                str(self.pg_bindir / "postgres"),
                "-D",
                str(data_dir),
                "-h",
                HOST,
                "-p",
                str(self.pg_port),
                "-k",
                str(socket_dir),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "max_connections=50",
                "-c",
                "logging_collector=off",
            ],
            port=self.pg_port,
            env=env,
            user=user,
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
            stop_signal=signal.SIGINT,
            signal_group=False,
        )
        _wait_until(self._create_database, self.postgres, POSTGRES_TIMEOUT, "accept connections")

    def _create_database(self) -> bool:
        import psycopg2

        try:
            conn = psycopg2.connect(
                host=HOST, port=self.pg_port, user=PG_USER, dbname="postgres", connect_timeout=2
            )
        except psycopg2.OperationalError:
            return False
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        finally:
            conn.close()
        return True

    def _start_mlflow(self) -> None:
        """The tracking server: what ``mlflow server --workers N`` runs, without the ``mlflow``
        process that would only create the schema and start it (an interpreter importing
        MLflow, 3 CPU-seconds a start). The schema is created here; uvicorn serves MLflow's app
        with the settings ``mlflow server`` hands its workers (``mlflow/server/__init__.py``,
        ``_run_server``): artifacts proxied to the bucket, no job execution. ``mlflow_workers``
        uvicorn workers: 1 for the suite, ``MLFLOW_DEFAULT_WORKERS`` for benchmarks."""
        import mlflow

        if not self.mlflow_port:
            self.mlflow_port = free_port()
        self._create_mlflow_schema()
        env = self._child_env(
            MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint_url,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_ENABLE_WORKSPACES="false",
            _MLFLOW_SERVER_FILE_STORE=self.backend_store_uri,
            _MLFLOW_SERVER_REGISTRY_STORE=self.backend_store_uri,
            _MLFLOW_SERVER_ARTIFACT_ROOT=MLFLOW_ARTIFACT_ROOT,
            _MLFLOW_SERVER_SERVE_ARTIFACTS="true",
            _MLFLOW_SERVER_ARTIFACT_DESTINATION=f"s3://{self._bucket}/mlflow",
            _MLFLOW_SERVER_BOOT_ID=uuid.uuid4().hex,
            _MLFLOW_SGI_NAME="uvicorn",
            _MLFLOW_IN_JOB_EXECUTOR="false",
        )
        log_config = Path(mlflow.__file__).parent / "server" / "uvicorn_log_config.yaml"
        self.mlflow = self._spawn(
            "mlflow",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--log-config",
                str(log_config),
                "--host",
                HOST,
                "--port",
                str(self.mlflow_port),
                "--workers",
                str(self.mlflow_workers),
                "mlflow.server.fastapi_app:app",
            ],
            port=self.mlflow_port,
            env=env,
        )
        _wait_until(
            lambda: _http_status(f"{self.tracking_uri}/health") == 200,
            self.mlflow,
            MLFLOW_TIMEOUT,
            f"answer 200 on {self.tracking_uri}/health",
        )

    def _create_mlflow_schema(self) -> None:
        """Create (or check) MLflow's tables and default experiment in the backend database, as
        ``mlflow server`` does before it starts its workers."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(self.backend_store_uri, MLFLOW_ARTIFACT_ROOT)
        store.engine.dispose()  # no connection of this process stays open


def _pg_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, but there is no '{PG_USER}' OS user to run PostgreSQL as: "
            f"{PG_INSTALL_HINT}"
        ) from None


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen keyword arguments that drop root privileges to ``user`` (None: stay as we are)."""
    if user is None:
        return {}
    entry = _pg_account()
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


_LIVE_STACKS: list[Stack] = []


@atexit.register
def _stop_live_stacks() -> None:
    for stack in list(_LIVE_STACKS):
        stack.stop()


def main() -> None:
    """Start a stack, print ``export`` lines for it, and stop it on Ctrl-C (or SIGTERM)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Install SIGINT explicitly too: a shell starts background jobs with SIGINT ignored.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in stop_signals:
        signal.signal(signum, _terminate)
    stack = Stack()
    try:
        stack.start()
        for key, value in stack.env().items():
            print(f"export {key}={value}", flush=True)
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in stack.timings.items())
        print(
            f"# stack up ({timings}); logs in {stack.root}/logs; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for signum in stop_signals:  # a second Ctrl-C must not interrupt the clean-up
            signal.signal(signum, signal.SIG_IGN)
        stack.stop()
        print("# stack stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
