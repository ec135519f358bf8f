"""Lineage: the code, data and environment that produced a model, as values and tags.

Capturing them from the working tree is ``project.capture``'s job."""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard.core.names import T_LINEAGE

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
                tags[T_LINEAGE + key] = json.dumps(value, sort_keys=True)
            elif value not in ("", None):
                tags[T_LINEAGE + key] = str(value)
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lineage:
        values: dict[str, Any] = {}
        for key, value in tags.items():
            if not key.startswith(T_LINEAGE):
                continue
            short = key[len(T_LINEAGE):]
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
