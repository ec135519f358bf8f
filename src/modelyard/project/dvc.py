"""DVC: read the hash DVC recorded for a path, and restore a recorded version of it.

Reading needs no DVC import (the .dvc / dvc.lock files are YAML); restoring uses DVC itself.
Every function takes the path or folder to work on (absolute); none reads the process's
working directory, and subprocesses run with ``cwd=`` the DVC root.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelyard.core.reading import read_capped
from modelyard.errors import InvalidInput, MissingDependency, UserError

# A DVC hash: md5 hex (".dir" for a directory listing), or a cloud etag / checksum.
_HASH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_DVC_FILE_BYTES = 64 * 1024 * 1024
_MAX_CANDIDATES = 200  # commits read at most when looking for the one that recorded a hash


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def load_dvc_yaml(path: Path) -> Any:
    """A DVC file of the user's project (``.dvc``, ``dvc.lock``) parsed; None when it is
    unreadable or not YAML (DVC does not track what it names). Larger than
    ``MAX_DVC_FILE_BYTES`` is ``InvalidInput``: a lock file that size is a mistake to name,
    not one to read."""
    try:
        return _parse_yaml(read_capped(path, MAX_DVC_FILE_BYTES, "a DVC file").decode())
    except InvalidInput as exc:
        if exc.fields.get("too_large"):
            raise
        return None
    except UnicodeDecodeError:
        return None


def recorded_md5(root: Path, rel: str) -> str | None:
    """The md5 the project's own DVC files record for ``rel`` now (a ``dvc.lock`` stage's
    out or dep, else ``rel.dvc``), or None when DVC does not track it: what the workspace's
    copy is expected to match, whatever version a model was trained on."""
    wanted = Path(rel).as_posix()
    lock = load_dvc_yaml(root / "dvc.lock") if (root / "dvc.lock").is_file() else None
    if isinstance(lock, dict):
        for body in (lock.get("stages") or {}).values():
            for entry in [*((body or {}).get("outs") or []), *((body or {}).get("deps") or [])]:
                if isinstance(entry, dict) and Path(str(entry.get("path", ""))).as_posix() \
                        == wanted and entry.get("md5"):
                    return str(entry["md5"])
    pointer = root / f"{rel}.dvc"
    document = load_dvc_yaml(pointer) if pointer.is_file() else None
    if isinstance(document, dict):
        outs = document.get("outs") or []
        if outs and isinstance(outs[0], dict) and outs[0].get("md5"):
            return str(outs[0]["md5"])
    return None


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError(f"DVC look-ups need an absolute path, not {path}")
    return path


def find_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` (an absolute path) holding ``.dvc/``."""
    for folder in [_absolute(start), *start.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _out_hash(out: Any) -> str | None:
    if not isinstance(out, dict):
        return None
    value = out.get("md5") or out.get("etag") or out.get("checksum")
    return str(value) if value else None


def _outs(document: Any) -> list[dict[str, Any]]:
    """The outputs a ``.dvc`` file (``outs:``) or a ``dvc.lock`` (``stages: {..: outs:}``)
    records."""
    if not isinstance(document, dict):
        return []
    found: list[Any] = []
    stages = document.get("stages")
    if isinstance(stages, dict):
        for stage in stages.values():
            if isinstance(stage, dict) and isinstance(stage.get("outs"), list):
                found.extend(stage["outs"])
    elif isinstance(document.get("outs"), list):
        found.extend(document["outs"])
    return [out for out in found if isinstance(out, dict) and _out_hash(out)]


def _out_rel(recording: PurePosixPath, out: dict[str, Any]) -> str:
    """The output's path relative to the DVC root (``recording`` is the .dvc / dvc.lock file,
    relative to the root; output paths are relative to its folder)."""
    return posixpath.normpath((recording.parent / str(out.get("path", ""))).as_posix())


def _recordings(path: Path, root: Path) -> list[Path]:
    """Files that may record ``path``: ``path.dvc``, then each ``dvc.lock`` from its folder up
    to the root (a dvc.yaml may live in a subfolder)."""
    candidates = [path.with_name(path.name + ".dvc")]
    for folder in [path.parent, *path.parent.parents]:
        candidates.append(folder / "dvc.lock")
        if folder == root:
            break
    return [c for c in candidates if c.is_file()]


def _bytes_match(path: Path, out: dict[str, Any]) -> bool:
    """Whether a file's bytes are still what DVC recorded (DVC 3 md5 of a file). Directories
    and DVC 2 entries (md5 of the dos2unix text) are taken on trust."""
    md5 = _out_hash(out) or ""
    if out.get("hash") != "md5" or not out.get("md5") or md5.endswith(".dir") or path.is_dir():
        return True
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == md5


def recorded_hash(path: Path) -> tuple[str, str] | None:
    """``(hash DVC recorded for path, first git commit that recorded it or "")``, or None when
    DVC does not track ``path`` (an absolute path) or the bytes there are no longer the ones
    DVC recorded (changed since ``dvc add`` / ``dvc repro``).

    The commit is "" while the recording is not committed yet: inside ``dvc repro`` DVC has
    written the new hash into ``dvc.lock`` but nobody has committed it. Call
    :func:`commit_recording` again when lineage is read.
    """
    path = _absolute(path)
    root = find_root(path.parent)
    if root is None:
        return None
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return None
    for recording in _recordings(path, root):
        where = PurePosixPath(recording.relative_to(root).as_posix())
        for out in _outs(load_dvc_yaml(recording)):
            if _out_rel(where, out) != rel:
                continue
            if not _bytes_match(path, out):
                return None
            md5 = str(_out_hash(out))
            return md5, commit_recording(root, md5, path=rel)
    return None


def _path_matches(recorded: str, wanted: str) -> bool:
    return recorded == wanted or recorded.endswith("/" + wanted)


def commit_recording(start: Path, md5: str, *, path: str | Path | None = None) -> str:
    """The first git commit (on HEAD's history) whose ``.dvc`` / ``dvc.lock`` files record
    ``md5`` as an output, or "" if no commit does yet.

    ``start`` is an absolute folder inside the DVC project (its root is found upwards).
    ``path``, when given, must be that output's path: relative to the DVC root (or to a
    subfolder of it), or absolute. Only commits whose recording file really records ``md5``
    for that output count, not ones where the string merely appears or disappears.
    """
    root = find_root(start)
    if root is None or not md5 or not _HASH.fullmatch(md5):
        return ""
    wanted: str | None = None
    if path is not None:
        candidate = Path(path)
        if candidate.is_absolute():
            try:
                candidate = candidate.relative_to(root)
            except ValueError:
                return ""
        wanted = posixpath.normpath(candidate.as_posix())
    from modelyard.project import git

    # Pickaxe narrows history to the commits that change how often md5 occurs in a recording
    # file, oldest first; each is then read to see whether it really records it.
    log = git.output(
        ["log", "--reverse", "--relative", "--format=%x00%H", "--name-only", f"-S{md5}",
         "--", "dvc.lock", "*/dvc.lock", "*.dvc"],
        root, timeout=60,
    )
    if not log:
        return ""
    for chunk in log.split("\0")[:_MAX_CANDIDATES]:
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        commit, names = lines[0], lines[1:]
        for name in names:
            if not (name.endswith(".dvc") or PurePosixPath(name).name == "dvc.lock"):
                continue
            text = git.show_file(root, commit, name)
            if text is None:
                continue
            for out in _outs(_parse_yaml(text)):
                if _out_hash(out) != md5:
                    continue
                if wanted is None or _path_matches(_out_rel(PurePosixPath(name), out), wanted):
                    return commit
    return ""


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

    path = _absolute(path)
    if not _HASH.fullmatch(md5):
        raise InvalidInput(f"{md5!r} is not a DVC hash")
    if md5.endswith(".dir"):
        raise UserError(
            f"{path.name} is a DVC-tracked folder, which --checkout cannot restore yet: check "
            "out the commit its lineage names and run `dvc checkout`"
        )
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
    data = load_dvc_yaml(dvc_file) or {}
    for out in data.get("outs", []) or []:
        if Path(str(out.get("path", ""))).name == path.name:
            out["md5"] = md5
            out["size"] = path.stat().st_size
    dvc_file.write_text(yaml.safe_dump(data, sort_keys=False))


def locked_outputs(root: Path) -> list[dict[str, str]]:
    """Every output ``dvc.lock`` files under the DVC root record: ``{"path", "md5"}`` with the
    path relative to the root (snapshots record these). ``.dvc`` files are included too."""
    root = _absolute(root)
    found: dict[str, str] = {}
    for recording in sorted([*root.rglob("dvc.lock"), *root.rglob("*.dvc")]):
        rel_parts = recording.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts[:-1]) or recording.is_dir():
            continue  # .dvc/, .git/ and other hidden folders
        where = PurePosixPath(recording.relative_to(root).as_posix())
        for out in _outs(load_dvc_yaml(recording)):
            found[_out_rel(where, out)] = str(_out_hash(out))
    return [{"path": path, "md5": md5} for path, md5 in sorted(found.items())]


@dataclass(frozen=True)
class PipelineFiles:
    """What a DVC project's ``dvc.yaml`` files name, as patterns relative to the DVC root
    (posix; a templated ``${...}`` part of a ``foreach`` / ``matrix`` stage becomes ``*``):
    ``written`` are what the pipeline itself writes (every stage's ``outs``, ``metrics`` and
    ``plots``, the top-level ``metrics`` and ``plots``, and each ``dvc.lock``), ``params`` the
    parameter files its stages read."""

    written: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()

    def writes(self, rel: str) -> bool:
        """Whether ``rel`` (relative to the DVC root) is, or lies inside, something the
        pipeline writes."""
        return _matches(rel, self.written)

    def is_params(self, rel: str) -> bool:
        return _matches(rel, self.params)


def _matches(rel: str, patterns: frozenset[str]) -> bool:
    rel = posixpath.normpath(rel)
    for pattern in patterns:
        if rel == pattern or rel.startswith(pattern.rstrip("/") + "/"):
            return True
        if "*" in pattern and (fnmatch.fnmatchcase(rel, pattern)
                               or fnmatch.fnmatchcase(rel, pattern.rstrip("/") + "/*")):
            return True
    return False


_TEMPLATE = re.compile(r"\$\{[^}]*\}")


def _entry_paths(entries: Any) -> list[str]:
    """Paths of a ``outs:`` / ``metrics:`` / ``plots:`` list: strings, or one-key mappings
    whose key is the path (a top-level plot's ``y:`` mapping names files too)."""
    found: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict):
            for key, body in entry.items():
                found.append(str(key))
                y = body.get("y") if isinstance(body, dict) else None
                if isinstance(y, dict):
                    found.extend(str(k) for k in y)
    return found


def _pipeline_specs(root: Path, near: Sequence[str] | None) -> list[Path]:
    """The ``dvc.yaml`` files to read: with ``near`` (paths relative to the root), only those
    in the root and in the folders above each path (a stage's outputs lie below its
    ``dvc.yaml`` in practice), a few ``stat`` calls instead of a walk through data, caches
    and registries; without it, every one under the root (hidden folders skipped)."""
    if near is None:
        found = []
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            if "dvc.yaml" in names:
                found.append(Path(folder) / "dvc.yaml")
        return sorted(found)
    folders = {PurePosixPath(".")}
    for rel in near:
        folders.update(PurePosixPath(posixpath.normpath(rel)).parents)
    return sorted(root / folder / "dvc.yaml" for folder in folders
                  if ".." not in folder.parts and (root / folder / "dvc.yaml").is_file())


def pipeline_files(root: Path, near: Sequence[str] | None = None) -> PipelineFiles:
    """:class:`PipelineFiles` of the ``dvc.yaml`` files under the DVC root ``root`` (only
    those above the paths ``near`` names, when given). An unreadable ``dvc.yaml`` names
    nothing."""
    root = _absolute(root)
    written: set[str] = set()
    params: set[str] = set()
    for spec in _pipeline_specs(root, near):
        folder = PurePosixPath(spec.parent.relative_to(root).as_posix())
        written.add(posixpath.normpath((folder / "dvc.lock").as_posix()))
        try:
            document = load_dvc_yaml(spec)
        except InvalidInput:
            continue
        if not isinstance(document, dict):
            continue
        paths = [*_entry_paths(document.get("metrics")), *_entry_paths(document.get("plots"))]
        stages = document.get("stages")
        for stage in (stages.values() if isinstance(stages, dict) else []):
            if not isinstance(stage, dict):
                continue
            do = stage.get("do")
            body: dict[str, Any] = do if isinstance(do, dict) else stage
            # A stage's paths are relative to its working folder (``wdir``).
            wdir = PurePosixPath(posixpath.normpath((folder / str(body.get("wdir") or "."))
                                                    .as_posix()))
            staged = [*_entry_paths(body.get("outs")), *_entry_paths(body.get("metrics")),
                      *_entry_paths(body.get("plots"))]
            written.update(_pattern(wdir, path) for path in staged)
            read = body.get("params")
            for entry in read if isinstance(read, list) else []:
                names = [str(k) for k in entry] if isinstance(entry, dict) else ["params.yaml"]
                params.update(_pattern(wdir, name) for name in names)
        written.update(_pattern(folder, path) for path in paths)
    return PipelineFiles(frozenset(written), frozenset(params))


def _pattern(folder: PurePosixPath, path: str) -> str:
    return posixpath.normpath((folder / _TEMPLATE.sub("*", path)).as_posix())


def set_param(params: Path, section: str, key: str, value: str) -> None:
    """Change one ``key:`` line inside ``section:`` of params.yaml (comments kept)."""
    lines = params.read_text().splitlines()
    inside = False
    for index, line in enumerate(lines):
        if re.match(rf"^{section}:\s*$", line):
            inside = True
        elif inside and line and not line.startswith((" ", "#")):
            break
        elif inside and re.match(rf"^\s+{key}:", line):
            indent = line[:len(line) - len(line.lstrip())]
            lines[index] = f"{indent}{key}: {value}"
            params.write_text("\n".join(lines) + "\n")
            return
    raise InvalidInput(f"{params}: no {section}.{key} to change")


# -- running DVC (recovery, drills, reproduce) -------------------------------------------
def dvc_cache_path(root: Path, md5: str) -> Path | None:
    """Where DVC 3 keeps an object in the project's default local cache."""
    if len(md5) < 3 or md5.endswith(".dir"):
        return None
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a pipeline subprocess: ``python`` is this interpreter's."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1",
            **(extra or {})}


def run_dvc(args: Sequence[str], root: Path, env: dict[str, str] | None = None,
            timeout: float = 900) -> str:
    """``python -m dvc ARGS`` in ``root``; its output, or UserError naming the last lines."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True,
                          text=True, check=False, timeout=timeout, env=env or clean_env())
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-2:]
        raise UserError(f"dvc {' '.join(args)} failed: {' | '.join(tail)}")
    return done.stdout


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
