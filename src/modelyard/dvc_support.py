"""DVC: read the hash DVC recorded for a path, and restore a recorded version of it.

Reading needs no DVC import (the .dvc / dvc.lock files are YAML); restoring uses DVC itself.
"""

from __future__ import annotations

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

    from modelyard.vault import sha256_file  # noqa: F401 - same hashing module family

    path = path.absolute()
    root = find_root(path.parent)
    if root is None:
        raise UserError(f"{path} is not inside a DVC project")
    repo = _dvc_repo(root)
    try:
        cache_path = Path(repo.cache.local.oid_to_path(md5))
        if not cache_path.is_file():
            # Not in the local cache: ask DVC to fetch it from the default remote.
            done = subprocess.run(
                [sys.executable, "-m", "dvc", "fetch", "-q"], cwd=root, capture_output=True,
                text=True, check=False,
            )
            if not cache_path.is_file():
                detail = done.stderr.strip().splitlines()[-1:] or ["not in cache or remote"]
                raise InvalidInput(
                    f"DVC has no copy of {path.name} at md5 {md5}: {detail[0]}"
                )
        tmp = path.with_name(f".{path.name}.modelyard-restore")
        shutil.copyfile(cache_path, tmp)
        tmp.replace(path)
    finally:
        repo.close()
    _update_dvc_file(path, md5)
    return path


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
