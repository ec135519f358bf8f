"""Release tags: with ``release_tags`` on, a promotion to production makes an annotated git tag
``NAME@vX.Y.Z`` (GTO's convention) on the commit the version was trained at; a tag that cannot
be made refuses the promotion before anything moves."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput
from tests.support.helpers import run_cli

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          cwd=Path.cwd()).stdout.strip()


def _commit(message: str) -> str:
    Path("notes.txt").write_text(message)
    _git("add", "notes.txt")
    _git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", message)
    return _git("rev-parse", "HEAD")


def test_promotion_to_production_tags_the_training_commit(make_yard: Any, name: str,
                                                          trained: dict[str, Any]) -> None:
    _git("init", "-q")
    trained_at = _commit("train")
    yard = make_yard(release_tags=True)
    mv = yard.register(trained["model"], name)
    _commit("later work")
    staged = yard.promote(name, mv.version, to="staging")
    assert staged.release_tag is None  # only production is released
    result = run_cli("promote", f"{name}@{mv.version}", "--to", "production", "--reason", "ok",
                     env={"MODELYARD_RELEASE_TAGS": "true"})
    assert result.returncode == 0, result.stderr
    tag = f"{name}@v{mv.semver}"
    assert f"git tag {tag}" in result.stdout
    assert _git("cat-file", "-t", tag) == "tag"  # annotated
    assert _git("rev-parse", f"{tag}^{{commit}}") == trained_at
    assert "in production" in _git("tag", "-l", "--format=%(contents)", tag)
    # a second promotion of the same version finds its tag in place
    yard.promote(name, mv.version, to="staging")
    again = yard.promote(name, mv.version, to="production")
    assert again.release_tag == tag


def test_a_tag_that_cannot_be_made_refuses_the_promotion(make_yard: Any, name: str,
                                                         trained: dict[str, Any]) -> None:
    yard = make_yard(release_tags=True)
    mv = yard.register(trained["model"], name)
    yard.promote(name, mv.version, to="staging")
    with pytest.raises(InvalidInput, match="not in a git work tree"):
        yard.promote(name, mv.version, to="production")
    assert yard.get(name, mv.version).stage == "staging"
    _git("init", "-q")
    first = _commit("one")
    _commit("two")
    _git("-c", "user.name=t", "-c", "user.email=t@x", "tag", "-a", f"{name}@v{mv.semver}", first,
         "-m", "taken")
    with pytest.raises(Conflict, match="already exists"):
        yard.promote(name, mv.version, to="production")
    assert yard.get(name, mv.version).stage == "staging"
    assert make_yard().promote(name, mv.version, to="production").release_tag is None  # off
