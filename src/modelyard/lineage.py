"""Lineage: code, data and environment that produced a model, captured automatically."""

from __future__ import annotations

import functools
import getpass
import json
import os
import platform
import re
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.vault import sha256_file

LINEAGE_PREFIX = "modelyard.lineage."
KEY_PACKAGES = ("mlflow", "scikit-learn", "numpy", "pandas", "dvc", "modelyard", "xgboost",
                "lightgbm", "torch")
# `mlflow run` hands the Projects run to the entry point's process in this variable.
_RUN_ID_ENV = "MLFLOW_RUN_ID"
_RUN_ID = re.compile(r"^[A-Za-z0-9][\w-]{0,255}$")  # MLflow's own run-id rule


@dataclass
class DataRef:
    path: str
    hash: str
    source: str  # "dvc" or "sha256"
    git_commit: str = ""  # commit of the .dvc / dvc.lock file that recorded it
    columns: list[str] = field(default_factory=list)  # a table's header, when it has one


@dataclass
class Lineage:
    git_commit: str = ""
    git_branch: str = ""
    git_dirty: str = ""
    data: list[DataRef] = field(default_factory=list)
    python: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    seed: str = ""
    trained_by: str = ""
    host: str = ""
    started_at: str = ""
    duration_s: str = ""
    parent_run: str = ""

    def to_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        for key, value in asdict(self).items():
            if key == "data" or key == "packages":
                tags[LINEAGE_PREFIX + key] = json.dumps(value, sort_keys=True)
            elif value not in ("", None):
                tags[LINEAGE_PREFIX + key] = str(value)
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lineage:
        values: dict[str, Any] = {}
        for key, value in tags.items():
            if not key.startswith(LINEAGE_PREFIX):
                continue
            short = key[len(LINEAGE_PREFIX):]
            if short == "data":
                try:
                    values["data"] = [DataRef(**item) for item in json.loads(value)]
                except (ValueError, TypeError):
                    values["data"] = []
            elif short == "packages":
                try:
                    values["packages"] = dict(json.loads(value))
                except (ValueError, TypeError):
                    values["packages"] = {}
            elif short in cls.__dataclass_fields__:
                values[short] = value
        return cls(**values)

    def data_hashes(self) -> dict[str, str]:
        return {ref.path: ref.hash for ref in self.data}

    def data_columns(self) -> dict[str, list[str]]:
        """Header of each table among the training data (what the model could see, even
        when it was registered without an input schema)."""
        return {ref.path: list(ref.columns) for ref in self.data if ref.columns}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def git_state(cwd: Path) -> tuple[str, str, str]:
    """(commit, branch, dirty) of the repository around ``cwd``, or empty strings."""
    from modelyard import git

    return git.state(cwd)


def parent_run_of(
    environ: Mapping[str, str], active_run_id: str | None, active_parent: str | None = None
) -> str | None:
    """The run a registration ran under, for ``Lineage.parent_run``.

    ``active_parent`` is the ``mlflow.parentRunId`` tag of the caller's active run (looked up by
    the caller, which owns the tracking client); it wins when set. Otherwise, inside an MLflow
    Projects run (``mlflow run . -e train`` exports ``MLFLOW_RUN_ID`` to the entry point's
    process) the Projects run is the parent, unless it is the active run itself (the entry
    point resumed it with ``mlflow.start_run()``, so modelyard logs into it). ``environ`` is
    only read.
    """
    if active_parent:
        return active_parent
    projects_run = (environ.get(_RUN_ID_ENV) or "").strip()
    if projects_run and _RUN_ID.match(projects_run) and projects_run != active_run_id:
        return projects_run
    return None


def current_user(configured: str | None = None) -> str:
    """MODELYARD_USER, else MLflow's user, else the OS user."""
    if configured:
        return configured
    for var in ("MODELYARD_USER", "MLFLOW_TRACKING_USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    return os_user()


def os_user() -> str:
    """The operating system's user (LOGNAME, USER, then the password database)."""
    for var in ("LOGNAME", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata  # only when recording lineage: it costs a start-up

    found: list[tuple[str, str]] = []
    for name in KEY_PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def package_versions() -> dict[str, str]:
    """Versions of the packages that matter for a model (read once per process)."""
    return dict(_installed_versions())


def _absolute(folder: Path) -> Path:
    if not folder.is_absolute():
        raise ValueError(f"lineage needs an absolute folder, not {folder}")
    return folder


def hash_data(paths: list[str | Path], cwd: Path) -> list[DataRef]:
    """Hash each training-data path (relative ones are taken inside ``cwd``, an absolute
    folder). A DVC-tracked path whose bytes are what DVC recorded keeps DVC's hash and the
    first commit that recorded it; anything else is hashed with SHA-256."""
    cwd = _absolute(cwd)
    refs: list[DataRef] = []
    for item in paths:
        path = Path(item)
        full = path if path.is_absolute() else cwd / path
        shown = str(item)
        dvc = _dvc_hash(full)
        if dvc is not None:
            refs.append(DataRef(shown, dvc[0], "dvc", dvc[1], table_columns(full)))
            continue
        if full.is_file():
            refs.append(DataRef(shown, sha256_file(full), "sha256", columns=table_columns(full)))
        elif full.is_dir():
            refs.append(DataRef(shown, _hash_tree(full), "sha256"))
        else:
            raise InvalidInput(f"training data path not found: {shown}")
    return refs


_MAX_COLUMNS = 500


def table_columns(path: Path) -> list[str]:
    """The header of a CSV/TSV file (empty for anything else, or a header too wide to keep
    in a tag)."""
    import csv

    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            first = handle.readline(256 * 1024)
    except (OSError, UnicodeDecodeError):
        return []
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        header = next(csv.reader([first], delimiter=delimiter), [])
    except csv.Error:
        return []
    header = [h.strip() for h in header]
    return header if 0 < len(header) <= _MAX_COLUMNS and all(header) else []


def _hash_tree(root: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _dvc_hash(path: Path) -> tuple[str, str] | None:
    """(md5 recorded by DVC, first git commit that records it or "") or None."""
    from modelyard import dvc_support

    return dvc_support.recorded_hash(path)


def capture(
    *,
    cwd: Path,
    data: list[str | Path] | None,
    seed: int | str | None,
    user: str | None,
    started_at: datetime | None,
    duration_s: float | None,
    parent_run: str | None,
) -> Lineage:
    """What produced a model, read from ``cwd`` (an absolute folder: its git work tree, and
    the folder relative ``data`` paths are taken in). Nothing here reads the process's working
    directory; ``parent_run`` comes from :func:`parent_run_of`."""
    cwd = _absolute(cwd)
    commit, branch, dirty = git_state(cwd)
    return Lineage(
        git_commit=commit,
        git_branch=branch,
        git_dirty=dirty,
        data=hash_data(list(data or []), cwd),
        python=platform.python_version(),
        packages=package_versions(),
        seed="" if seed is None else str(seed),
        trained_by=current_user(user),
        host=socket.gethostname(),
        started_at=(started_at or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        duration_s="" if duration_s is None else f"{duration_s:.3f}",
        parent_run=parent_run or "",
    )
