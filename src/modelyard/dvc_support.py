"""DVC: read the hash DVC recorded for a path, and restore a recorded version of it.

Reading needs no DVC import (the .dvc / dvc.lock files are YAML); restoring uses DVC itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput, MissingDependency, UserError


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def find_root(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _git_commit_of(file: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", file.name],
            cwd=file.parent, capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def commit_recording(start: Path, md5: str) -> str:
    """The first git commit whose .dvc / dvc.lock files record ``md5`` ("" if none yet).

    At registration time inside ``dvc repro`` the lock file is not committed yet, so the
    commit is looked up when lineage is read.
    """
    root = find_root(start)
    if root is None:
        return ""
    try:
        done = subprocess.run(
            ["git", "log", "--reverse", "--format=%H", "-S", md5, "--", "dvc.lock", "*.dvc"],
            cwd=root, capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else ""


def _out_hash(out: dict[str, Any]) -> str | None:
    value = out.get("md5") or out.get("etag") or out.get("checksum")
    return str(value) if value else None


def recorded_hash(path: Path) -> tuple[str, str] | None:
    """(hash DVC recorded for path, git commit of the recording file), or None if untracked."""
    path = path.absolute()
    dvc_file = path.with_name(path.name + ".dvc")
    if dvc_file.is_file():
        data = _load_yaml(dvc_file) or {}
        for out in data.get("outs", []) or []:
            if Path(str(out.get("path", ""))).name == path.name and _out_hash(out):
                return str(_out_hash(out)), _git_commit_of(dvc_file)
    root = find_root(path.parent)
    if root is None:
        return None
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    data = _load_yaml(lock) or {}
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return None
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs", []) or []:
            if str(out.get("path")) == rel and _out_hash(out):
                return str(_out_hash(out)), _git_commit_of(lock)
    return None


def _dvc_repo(root: Path) -> Any:
    try:
        from dvc.repo import Repo
    except ImportError as exc:
        raise MissingDependency(
            feature="lineage --checkout", package="dvc", install="modelyard[dvc]"
        ) from exc
    return Repo(str(root))


def checkout(path: Path, md5: str) -> Path:
    """Put the bytes DVC recorded as ``md5`` back at ``path``, from DVC's cache or remote."""
    import shutil

    path = path.absolute()
    root = find_root(path.parent)
    if root is None:
        raise UserError(f"{path} is not inside a DVC project")
    repo = _dvc_repo(root)
    try:
        cache_path = Path(repo.cache.local.oid_to_path(md5))
        if not cache_path.is_file():
            _fetch(root, md5)
            if not cache_path.is_file():
                raise InvalidInput(
                    f"DVC has no copy of {path.name} at md5 {md5} in its cache or remote"
                )
        tmp = path.with_name(f".{path.name}.modelyard-restore")
        shutil.copyfile(cache_path, tmp)
        tmp.replace(path)
    finally:
        repo.close()
    _update_dvc_file(path, md5)
    return path


def _fetch(root: Path, md5: str) -> None:
    """Ask DVC to fetch one object from the default remote into the cache.

    `dvc fetch` works on tracked outputs, so a throwaway .dvc file names the object.
    """
    import yaml

    marker = root / f".modelyard-fetch-{md5[:12]}.dvc"
    # `hash: md5` marks DVC 3's hashing; without it DVC reads the entry as 2.x md5-dos2unix.
    out = {"md5": md5, "hash": "md5", "path": marker.stem + ".data"}
    marker.write_text(yaml.safe_dump({"outs": [out]}))
    try:
        subprocess.run([sys.executable, "-m", "dvc", "fetch", "-q", marker.name], cwd=root,
                       capture_output=True, text=True, check=False, timeout=600,
                       env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    finally:
        marker.unlink(missing_ok=True)


def _update_dvc_file(path: Path, md5: str) -> None:
    """Keep path.dvc in step with the restored bytes so `dvc status` agrees."""
    import yaml

    dvc_file = path.with_name(path.name + ".dvc")
    if not dvc_file.is_file():
        return
    data = _load_yaml(dvc_file) or {}
    for out in data.get("outs", []) or []:
        if Path(str(out.get("path", ""))).name == path.name:
            out["md5"] = md5
            out["size"] = path.stat().st_size
    dvc_file.write_text(yaml.safe_dump(data, sort_keys=False))
