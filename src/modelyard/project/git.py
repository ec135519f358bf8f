"""Git through its command line, always in a folder the caller names.

Nothing here reads the process's working directory: every function takes the folder to run
in, and every subprocess gets it as ``cwd=``. Reading functions answer ``None`` / empty values
when Git is missing or the folder is not in a work tree; writing functions raise ``UserError``
with Git's last line of output.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.errors import UserError

__all__ = [
    "DEFAULT_BRANCH",
    "WorkTree",
    "commit_of",
    "commit_paths",
    "create_tag",
    "identity_options",
    "init_repository",
    "output",
    "show_file",
    "state",
    "tag_commit",
    "toplevel",
    "valid_tag_name",
    "work_tree",
]

DEFAULT_BRANCH = "main"
# Used only when the user has no identity configured, for commits modelyard itself makes.
FALLBACK_NAME = "modelyard"
FALLBACK_EMAIL = "modelyard@localhost"
_TIMEOUT = 30.0


def _executable() -> str | None:
    return shutil.which("git")


def _run(args: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str] | None:
    git = _executable()
    if git is None:
        return None
    try:
        return subprocess.run(
            [git, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def output(args: Sequence[str], cwd: Path, *, timeout: float = _TIMEOUT) -> str | None:
    """Git's stripped standard output, or None when Git is missing or the command failed."""
    done = _run(args, cwd, timeout)
    if done is None or done.returncode != 0:
        return None
    return done.stdout.strip()


def _checked(args: Sequence[str], cwd: Path, what: str, timeout: float = _TIMEOUT) -> str:
    done = _run(args, cwd, timeout)
    if done is None:
        raise UserError(f"{what} failed in {cwd}: git is not installed or did not answer")
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        detail = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise UserError(f"{what} failed in {cwd}: {detail}")
    return done.stdout


def state(cwd: Path) -> tuple[str, str, str]:
    """``(commit, branch, dirty)`` of the work tree around ``cwd``; empty strings outside one
    or before its first commit. ``dirty`` is "true" / "false" (tracked files only)."""
    out = output(["rev-parse", "HEAD", "--abbrev-ref", "HEAD"], cwd)
    if not out:
        return "", "", ""
    lines = out.splitlines()
    commit = lines[0] if lines else ""
    branch = lines[1] if len(lines) > 1 else ""
    status = output(["status", "--porcelain", "--untracked-files=no"], cwd)
    dirty = "" if status is None else ("true" if status else "false")
    return commit, branch, dirty


@dataclass(frozen=True)
class WorkTree:
    """The work tree around a folder: HEAD, its branch, the tree's top folder and the tracked
    files that differ from HEAD (paths relative to ``top``, posix; None when Git could not
    say)."""

    commit: str = ""
    branch: str = ""
    top: Path | None = None
    changed: list[str] | None = field(default_factory=list)


def work_tree(cwd: Path) -> WorkTree:
    """:class:`WorkTree` of ``cwd`` in two Git calls; empty outside a work tree or before its
    first commit. Untracked files are not changes: a file Git was never told about is not part
    of any commit, and scratch files would otherwise mark every tree."""
    out = output(["rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD"], cwd)
    lines = (out or "").splitlines()
    if len(lines) < 3:
        return WorkTree()
    # Not ``output``: stripping would eat the leading blank of the first " M path" entry.
    done = _run(["status", "--porcelain=v1", "-z", "--untracked-files=no"], cwd, _TIMEOUT)
    changed = porcelain_paths(done.stdout) if done and done.returncode == 0 else None
    return WorkTree(lines[1], lines[2], Path(lines[0]), changed)


def porcelain_paths(status: str) -> list[str]:
    """The paths of ``git status --porcelain=v1 -z``: ``XY PATH`` entries separated by NUL; a
    rename or copy is followed by its source path, which counts as changed too."""
    paths: list[str] = []
    entries = status.split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC" and index < len(entries):
            if entries[index]:
                paths.append(entries[index])
            index += 1
    return sorted(set(paths))


def toplevel(cwd: Path) -> Path | None:
    """The work tree that contains ``cwd``, or None (not in one, or Git missing)."""
    top = output(["rev-parse", "--show-toplevel"], cwd)
    return Path(top).resolve() if top else None


def show_file(cwd: Path, commit: str, path: str) -> str | None:
    """The text of ``path`` (relative to ``cwd``) as committed in ``commit``, or None."""
    return output(["show", f"{commit}:./{path}"], cwd)


def init_repository(folder: Path, *, branch: str = DEFAULT_BRANCH) -> None:
    """``git init`` in ``folder`` with ``branch`` as the branch of the first commit, whatever
    ``init.defaultBranch`` says (``-b`` needs Git 2.28; older Git gets ``symbolic-ref``)."""
    done = _run(["init", "-q", "-b", branch], folder, _TIMEOUT)
    if done is None or done.returncode != 0:
        _checked(["init", "-q"], folder, "git init")
        _checked(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], folder, "git symbolic-ref")


def identity_options(folder: Path) -> list[str]:
    """``-c user.name=... -c user.email=...`` for whichever of the two Git has no value for,
    so a commit modelyard makes works on a machine without a configured identity."""
    options: list[str] = []
    for key, fallback in (("user.name", FALLBACK_NAME), ("user.email", FALLBACK_EMAIL)):
        if not output(["config", key], folder):
            options += ["-c", f"{key}={fallback}"]
    return options


def commit_paths(folder: Path, paths: Sequence[Path], message: str) -> str:
    """Stage exactly ``paths`` and commit them in ``folder``; returns the new commit."""
    relative = [str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p) for p in paths]
    _checked(["add", "--", *relative], folder, "git add")
    _checked([*identity_options(folder), "commit", "-q", "-m", message], folder, "git commit")
    return output(["rev-parse", "HEAD"], folder) or ""


def tag_commit(folder: Path, tag: str) -> str | None:
    """The commit a tag points at, or None when there is no such tag."""
    return output(["rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}"], folder)


def commit_of(folder: Path, revision: str) -> str | None:
    """The full commit a revision names in ``folder``'s repository, or None."""
    if not revision or revision.startswith("-"):
        return None
    return output(["rev-parse", "-q", "--verify", f"{revision}^{{commit}}"], folder)


def valid_tag_name(folder: Path, tag: str) -> bool:
    return output(["check-ref-format", f"refs/tags/{tag}"], folder) is not None


def create_tag(folder: Path, tag: str, commit: str, message: str) -> None:
    """An annotated tag ``tag`` on ``commit`` (``git tag -a``), with the user's identity or
    modelyard's fallback one."""
    _checked([*identity_options(folder), "tag", "-a", tag, commit, "-m", message], folder,
             "git tag")


def file_bytes(cwd: Path, commit: str, path: str, *, timeout: float = _TIMEOUT) -> bytes | None:
    """The bytes of ``path`` (relative to ``cwd``) as committed in ``commit``, or None (not a
    work tree, not committed there, Git missing)."""
    git = _executable()
    if git is None:
        return None
    try:
        done = subprocess.run([git, "show", f"{commit}:./{path}"], cwd=cwd, capture_output=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
