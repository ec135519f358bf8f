"""Lineage: the code, data and environment that produced a model, as values and tags.

Capturing them from the working tree is ``project.capture``'s job."""

from __future__ import annotations

import getpass
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modelyard.core.names import DURATION_FROM, LINEAGE_JSON, T_LINEAGE
from modelyard.errors import InvalidInput

KEY_PACKAGES = ("mlflow", "scikit-learn", "numpy", "pandas", "dvc", "modelyard", "xgboost",
                "lightgbm", "torch")
# `mlflow run` hands the Projects run to the entry point's process in this variable.
_RUN_ID_ENV = "MLFLOW_RUN_ID"
_RUN_ID = re.compile(r"^[A-Za-z0-9][\w-]{0,255}$")  # MLflow's own run-id rule
_CALLER, _MLFLOW_RUN, _DVC_STAGE = DURATION_FROM


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
    # "true" when code or parameters that trained the version were not all committed (what
    # the DVC pipeline itself writes does not count); the paths are in ``dirty_paths``.
    git_dirty: str = ""
    dirty_paths: list[str] = field(default_factory=list)
    data: list[DataRef] = field(default_factory=list)
    python: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    seed: str = ""
    trained_by: str = ""
    host: str = ""
    started_at: str = ""
    # Training's wall time, and where it came from (names.DURATION_FROM).
    duration_s: str = ""
    duration_from: str = ""
    # What the training process used up to the registration, and the host it ran on.
    cpu_s: str = ""
    peak_rss_mb: str = ""
    host_cpus: str = ""
    host_memory_mb: str = ""
    parent_run: str = ""

    def to_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        for key, value in asdict(self).items():
            if key == "dirty_paths":
                if value:  # a clean tree writes no tag for it
                    tags[T_LINEAGE + key] = json.dumps(value)
            elif key in LINEAGE_JSON:
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
            elif short == "dirty_paths":
                try:
                    values["dirty_paths"] = [str(p) for p in json.loads(value)]
                except (ValueError, TypeError):
                    values["dirty_paths"] = []
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


def training_time(
    now: datetime, *, duration_s: Any = None, started_at: datetime | None = None,
    run_start: datetime | None = None, process_age_s: float | None = None,
    in_dvc_stage: bool = False,
) -> tuple[datetime, float | None, str]:
    """``(started_at, wall seconds or None, where it came from)`` of the training a
    registration ends.

    The caller's word wins (``duration_s``, or ``started_at`` alone: training ran from then
    until now); then the active MLflow run the version is logged into (its start); then, in a
    DVC stage, the stage's own process (its age: the stage's command is the training). Without
    any of them the start is now and the duration unknown: a process that is neither (a
    notebook, a service) may have lived long before it trained anything.

    A duration that is not a finite number of seconds at or above zero is ``InvalidInput``.
    """
    if duration_s is not None:
        if isinstance(duration_s, bool):
            raise InvalidInput(f"duration_s must be a number of seconds, not {duration_s!r}")
        try:
            seconds = float(duration_s)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(
                f"duration_s must be a number of seconds, not {duration_s!r:.60}") from None
        if not math.isfinite(seconds) or seconds < 0 or seconds > 10**9:
            raise InvalidInput(
                f"duration_s must be a number of seconds from 0 to 1e9, not {duration_s!r:.60}")
        start = started_at or run_start or now - timedelta(seconds=seconds)
        return start, seconds, _CALLER
    if started_at is not None:
        since = _since(started_at, now)
        return started_at, since, _CALLER if since is not None else ""
    if run_start is not None:
        return run_start, _since(run_start, now), _MLFLOW_RUN
    if in_dvc_stage and process_age_s is not None and math.isfinite(process_age_s) \
            and process_age_s >= 0:
        return now - timedelta(seconds=process_age_s), process_age_s, _DVC_STAGE
    return now, None, ""


def _since(start: datetime, now: datetime) -> float | None:
    try:
        seconds = (now - start).total_seconds()
    except TypeError:  # one of them has no time zone: no honest difference
        return None
    return max(seconds, 0.0)


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
    if projects_run and _RUN_ID.fullmatch(projects_run) and projects_run != active_run_id:
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
