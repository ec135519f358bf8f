"""Create a new project from the bundled reference pipeline (``modelyard init``).

The template (``modelyard/templates/project``) is a DVC pipeline ``prepare -> train -> evaluate``
whose train stage registers the model with :meth:`modelyard.Yard.register`, plus
``modelyard.toml``, an ``MLproject`` and GitHub workflows for training, promotion and a weekly
recovery drill.

>>> init_project(Path("churn-model"), name="churn")  # doctest: +SKIP
[PosixPath('churn-model/.github/workflows/promote.yml'), ...]
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from modelyard.errors import MissingDependency, UserError
from modelyard.project import git

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # pragma: no cover
        from importlib.abc import Traversable

__all__ = ["init_project", "template_files"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PLAIN_YAML = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
_SKIP = {"__pycache__", ".DS_Store"}
_SUBSTITUTED = {
    PurePosixPath(p)
    for p in ("params.yaml", "MLproject", "README.md", ".github/workflows/promote.yml")
}
_MAX_LISTED = 5
_TIMEOUT = 300.0


def template_root() -> Traversable:
    """The bundled project template."""
    return files("modelyard") / "templates" / "project"


def template_files() -> list[PurePosixPath]:
    """Relative paths of every file in the template, sorted."""
    return sorted(rel for rel, _ in _walk(template_root(), PurePosixPath()))


def _walk(folder: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, Traversable]]:
    found: list[tuple[PurePosixPath, Traversable]] = []
    for entry in folder.iterdir():
        if entry.name in _SKIP or entry.name.endswith((".pyc", ".pyo")):
            continue
        rel = prefix / entry.name
        if entry.is_dir():
            found.extend(_walk(entry, rel))
        elif entry.is_file():
            found.append((rel, entry))
    return found


def _yaml_scalar(name: str) -> str:
    """``name`` as a YAML scalar that reads back as the same string."""
    if _PLAIN_YAML.fullmatch(name) and name.lower() not in _YAML_WORDS:
        return name
    return json.dumps(name)  # a JSON string is a valid double-quoted YAML scalar


def _substitute(rel: PurePosixPath, text: str, name: str) -> str:
    """Put the model name where the template says ``churn``."""
    scalar = _yaml_scalar(name)
    if rel == PurePosixPath("params.yaml"):
        text, count = re.subn(r"(?m)^model_name:.*$", f"model_name: {scalar}", text)
        if count != 1:  # pragma: no cover - guards the template itself
            raise RuntimeError("template params.yaml must have exactly one model_name line")
    elif rel == PurePosixPath("MLproject"):
        text = re.sub(r"(?m)^name:.*$", f"name: {scalar}", text, count=1)
    elif rel == PurePosixPath(".github/workflows/promote.yml"):
        text = re.sub(r"(?m)^(\s+default:) churn$", rf"\g<1> {scalar}", text, count=1)
    elif rel == PurePosixPath("README.md"):
        text = re.sub(r"(?m)^# churn$", f"# {name}", text, count=1)
        text = text.replace("churn@", f"{name}@")
    return text


def _conflicts(target: Path, rels: list[PurePosixPath]) -> list[str]:
    return [str(rel) for rel in rels if (target / rel).exists() or (target / rel).is_symlink()]


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, check=False, timeout=_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{what} failed in {cwd}: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip()).splitlines()
        detail = output[-1].strip() if output else f"exit code {done.returncode}"
        raise UserError(f"{what} failed in {cwd}: {detail}")


def init_project(target: Path, *, name: str = "churn", force: bool = False) -> list[Path]:
    """Create the reference project in ``target`` for a model called ``name``.

    Copies the template (refusing to overwrite existing files unless ``force``), writes ``name``
    into ``params.yaml``, and ``dvc init`` unless ``target`` already has a ``.dvc`` folder (with
    ``--subdir`` inside a larger Git repository, ``--no-scm`` when Git is missing).

    When ``target`` is not inside a Git work tree and Git is installed, it becomes a repository
    of its own whose branch is ``main`` (what the workflows trigger on), and the files created
    here are its first commit, so the first registration already has a commit in its lineage.
    The commit uses the configured Git identity, or a local one when none is configured. Inside
    an existing repository nothing is committed.

    Returns the paths created: every template file written, then ``.git``, ``.dvc`` and
    ``.dvcignore`` when this call created them.

    Raises:
        UserError: bad name, target is a file, files would be overwritten, or an init failed.
        MissingDependency: DVC is not installed.
    """
    if not _NAME.fullmatch(name):
        raise UserError(
            f"Invalid model name '{name}': use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a directory")
    if importlib.util.find_spec("dvc") is None:
        raise MissingDependency(feature="modelyard init", package="dvc", install="modelyard[dvc]")
    sources = dict(_walk(template_root(), PurePosixPath()))
    rels = sorted(sources)
    if not force:
        conflicts = _conflicts(target, rels)
        if conflicts:
            listed = ", ".join(conflicts[:_MAX_LISTED])
            more = (
                f" and {len(conflicts) - _MAX_LISTED} more" if len(conflicts) > _MAX_LISTED else ""
            )
            raise UserError(
                f"{target} already has files that init would overwrite: {listed}{more} "
                "(use --force to overwrite them)"
            )

    created: list[Path] = []
    for rel in rels:
        destination = target.joinpath(*rel.parts)
        if destination.is_dir() and not destination.is_symlink():
            raise UserError(f"{destination} is a directory where the template has a file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = sources[rel].read_bytes()
        if rel in _SUBSTITUTED:
            data = _substitute(rel, data.decode("utf-8"), name).encode("utf-8")
        if destination.is_symlink():
            destination.unlink()
        destination.write_bytes(data)
        created.append(destination)

    has_git = shutil.which("git") is not None
    toplevel = git.toplevel(target) if has_git else None
    own_repository = has_git and toplevel is None
    if own_repository:
        git.init_repository(target, branch=git.DEFAULT_BRANCH)
        created.append(target / ".git")
        toplevel = target.resolve()

    if not (target / ".dvc").exists():
        command = [sys.executable, "-m", "dvc", "init", "-q"]
        if toplevel is None:
            command.append("--no-scm")
        elif toplevel != target.resolve():
            command.append("--subdir")
        had_dvcignore = (target / ".dvcignore").exists()
        _run(command, target, "dvc init")
        created.append(target / ".dvc")
        if not had_dvcignore and (target / ".dvcignore").exists():
            created.append(target / ".dvcignore")

    if own_repository:
        tracked = [path for path in created if path.name != ".git"]
        try:
            git.commit_paths(target, tracked, f"Scaffold the {name} model project (modelyard init)")
        except UserError as exc:
            raise UserError(
                f"{target} is scaffolded, but its first commit failed ({exc.message}): "
                "commit the files yourself"
            ) from None
    return created
