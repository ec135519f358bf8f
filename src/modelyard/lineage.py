"""Lineage: code, data and environment that produced a model, captured automatically."""

from __future__ import annotations

import functools
import getpass
import json
import os
import platform
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.vault import sha256_file

LINEAGE_PREFIX = "modelyard.lineage."
KEY_PACKAGES = ("mlflow", "scikit-learn", "numpy", "pandas", "dvc", "modelyard", "xgboost",
                "lightgbm", "torch")


@dataclass
class DataRef:
    path: str
    hash: str
    source: str  # "dvc" or "sha256"
    git_commit: str = ""  # commit of the .dvc / dvc.lock file that recorded it


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(cwd: Path) -> tuple[str, str, str]:
    """(commit, branch, dirty) of the repository around cwd, or empty strings."""
    out = _git(["rev-parse", "HEAD", "--abbrev-ref", "HEAD"], cwd)
    if not out:
        return "", "", ""
    lines = out.splitlines()
    commit = lines[0] if lines else ""
    branch = lines[1] if len(lines) > 1 else ""
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    dirty = "" if status is None else ("true" if status else "false")
    return commit, branch, dirty


def current_user(configured: str | None = None) -> str:
    """MODELYARD_USER, else MLflow's user, else the OS user."""
    if configured:
        return configured
    for var in ("MODELYARD_USER", "MLFLOW_TRACKING_USERNAME", "LOGNAME", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
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


def hash_data(paths: list[str | Path], cwd: Path) -> list[DataRef]:
    """DVC-tracked paths use DVC's recorded hash; others are hashed with SHA-256."""
    refs: list[DataRef] = []
    for item in paths:
        path = Path(item)
        full = path if path.is_absolute() else cwd / path
        shown = str(item)
        dvc = _dvc_hash(full)
        if dvc is not None:
            refs.append(DataRef(shown, dvc[0], "dvc", dvc[1]))
            continue
        if full.is_file():
            refs.append(DataRef(shown, sha256_file(full), "sha256"))
        elif full.is_dir():
            refs.append(DataRef(shown, _hash_tree(full), "sha256"))
        else:
            raise InvalidInput(f"training data path not found: {shown}")
    return refs


def _hash_tree(root: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _dvc_hash(path: Path) -> tuple[str, str] | None:
    """(md5 recorded by DVC, git commit of the file that records it) or None."""
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
