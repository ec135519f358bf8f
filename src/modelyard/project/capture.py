"""Capturing lineage at registration: git state, package versions, data hashes, and the time
and resources the training took."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.core.lineage import KEY_PACKAGES, DataRef, Lineage, current_user, training_time
from modelyard.errors import InvalidInput
from modelyard.store.files import sha256_file

# DVC gives every stage command this variable (the stage's address).
_DVC_STAGE_ENV = "DVC_STAGE"
# Listed dirty paths at most: a tag has room for a review, not for a whole tree.
MAX_DIRTY_LISTED = 50


def git_state(cwd: Path) -> tuple[str, str, str, list[str]]:
    """``(commit, branch, dirty, dirty paths)`` of the repository around ``cwd``, or empty.

    Dirty means a tracked file differs from HEAD, other than what the project's DVC pipeline
    writes itself (its stages' outs, metrics and plots, and ``dvc.lock``): a stage that writes
    ``metrics/train.json`` before it registers would otherwise mark every version it trains,
    and a flag that is always true tells a reviewer nothing. The paths are relative to the
    repository's top folder."""
    from modelyard.project import git

    tree = git.work_tree(cwd)
    if not tree.commit:
        return "", "", "", []
    if tree.changed is None:
        return tree.commit, tree.branch, "", []
    paths = _code_changes(tree.changed, tree.top, cwd)
    if len(paths) > MAX_DIRTY_LISTED:
        paths = [*paths[:MAX_DIRTY_LISTED], f"... and {len(paths) - MAX_DIRTY_LISTED} more"]
    return tree.commit, tree.branch, "true" if paths else "false", paths


def _code_changes(changed: list[str], top: Path | None, cwd: Path) -> list[str]:
    if not changed or top is None:
        return list(changed)
    from modelyard.project import dvc as dvc_support

    root = dvc_support.find_root(cwd)
    if root is None:
        return list(changed)
    try:
        inside = root.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        return list(changed)
    prefix = "" if inside == "." else inside + "/"
    local = [path[len(prefix):] for path in changed if path.startswith(prefix)]
    files = dvc_support.pipeline_files(root, near=local)
    return [path for path in changed
            if not (path.startswith(prefix) and files.writes(path[len(prefix):]))]


@dataclass(frozen=True)
class Usage:
    """What the process used so far (CPU seconds, its own and its waited-for children's; peak
    resident memory in MiB), its age in seconds, and the host's cores and memory (MiB). None
    where the platform cannot say."""

    cpu_s: float | None
    peak_rss_mb: float | None
    age_s: float | None
    host_cpus: int | None
    host_memory_mb: int | None


def process_usage() -> Usage:
    """:class:`Usage` of this process, from the standard library (``os.times``, ``resource``,
    ``/proc``); psutil only answers what they cannot, and only when it is installed."""
    times = os.times()
    cpu = times.user + times.system + times.children_user + times.children_system
    return Usage(cpu, _peak_rss_mb(), _process_age(), os.cpu_count(), _host_memory_mb())


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return _psutil(lambda p: p.Process().memory_info().peak_wset / 2**20)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _process_age() -> float | None:
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Field 22, start time in clock ticks after boot; fields count from after "(comm)".
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        return max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return _psutil(lambda p: max(time.time() - p.Process().create_time(), 0.0))


def _host_memory_mb() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
    except (AttributeError, ValueError, OSError):
        return _psutil(lambda p: int(p.virtual_memory().total // 2**20))


def _psutil(read: Any) -> Any:
    if importlib.util.find_spec("psutil") is None:
        return None
    import psutil

    try:
        return read(psutil)
    except (psutil.Error, AttributeError, OSError):
        return None


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
    run_start: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    trained_here: bool = True,
) -> Lineage:
    """What produced a model, read from ``cwd`` (an absolute folder: its git work tree, and
    the folder relative ``data`` paths are taken in). Nothing here reads the process's working
    directory; ``parent_run`` comes from :func:`parent_run_of`.

    The training's wall time is the caller's (``started_at`` / ``duration_s``), else the
    active run's (``run_start``), else the DVC stage's (``environ`` names one: this process
    is its command); CPU time and peak memory are this process's so far. Without
    ``trained_here`` (a model saved or logged elsewhere) this process's own figures are not
    the training's and are left out; the host's cores and memory are kept (they describe
    ``host``)."""
    cwd = _absolute(cwd)
    usage = process_usage()
    if not trained_here:
        usage = Usage(None, None, None, usage.host_cpus, usage.host_memory_mb)
    start, seconds, source = training_time(
        datetime.now(timezone.utc), duration_s=duration_s, started_at=started_at,
        run_start=run_start, process_age_s=usage.age_s,
        in_dvc_stage=bool((environ or {}).get(_DVC_STAGE_ENV)))
    commit, branch, dirty, dirty_paths = git_state(cwd)
    return Lineage(
        git_commit=commit,
        git_branch=branch,
        git_dirty=dirty,
        dirty_paths=dirty_paths,
        data=hash_data(list(data or []), cwd),
        python=platform.python_version(),
        packages=package_versions(),
        seed="" if seed is None else str(seed),
        trained_by=current_user(user),
        host=socket.gethostname(),
        started_at=start.isoformat(timespec="seconds"),
        duration_s="" if seconds is None else f"{seconds:.3f}",
        duration_from=source,
        cpu_s="" if usage.cpu_s is None else f"{usage.cpu_s:.3f}",
        peak_rss_mb="" if usage.peak_rss_mb is None else f"{usage.peak_rss_mb:.1f}",
        host_cpus="" if usage.host_cpus is None else str(usage.host_cpus),
        host_memory_mb="" if usage.host_memory_mb is None else str(usage.host_memory_mb),
        parent_run=parent_run or "",
    )
