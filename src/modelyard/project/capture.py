"""Capturing lineage at registration: git state, package versions, data hashes."""

from __future__ import annotations

import functools
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path

from modelyard.core.lineage import KEY_PACKAGES, DataRef, Lineage, current_user
from modelyard.errors import InvalidInput
from modelyard.store.files import sha256_file


def git_state(cwd: Path) -> tuple[str, str, str]:
    """(commit, branch, dirty) of the repository around ``cwd``, or empty strings."""
    from modelyard.project import git

    return git.state(cwd)


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
    from modelyard.project import dvc as dvc_support

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
