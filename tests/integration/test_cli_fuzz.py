"""Bad input never gives a traceback: random CLI arguments either work or are one line and a
non-zero exit, and the registry is unchanged afterwards (hypothesis, bounded examples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import run_cli

WORDS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["²", "churn@²", "9" * 400, "@", "v1.2", "1.0.0", "latest", "production",
                     "-x", "--json", "../../etc", "a/b", "\x00", "%s", "{major}", "nan"]),
)
COMMANDS = ["details", "history", "lineage", "compare", "promote", "rollback", "alias", "tag",
            "verify", "load", "cleanup", "adopt", "requests", "reject", "approve", "repair",
            "snapshot"]


def _state(yard: Any, name: str) -> str:
    versions = [(v.version, v.tags.get("modelyard.stage"), sorted(v.aliases),
                 sorted(k for k in v.tags if not k.startswith("modelyard.lineage")))
                for v in yard.versions(name)]
    events = len(yard.history(name))
    return json.dumps([versions, events], default=str)


@pytest.fixture
def registered(yard: Any, name: str, trained: dict[str, Any]) -> tuple[Any, str]:
    yard.register(trained["model"], name, input_example=trained["X"].head(3))
    return yard, name


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), words=st.lists(WORDS, max_size=3))
def test_random_arguments_are_harmless(registered: tuple[Any, str], isolated: Path,
                                       command: str, words: list[str]) -> None:
    yard, name = registered
    if command in ("promote", "alias", "tag", "load", "cleanup"):
        words = [f"{name}@{words[0]}" if words else name, *words[1:]]
    before = _state(yard, name)
    args = [command, *words]
    if command == "load":
        args += ["--to", str(isolated / "out")]
    done = run_cli(*args)
    if done.returncode != 0:
        assert "Traceback" not in done.stderr + done.stdout
        assert "Error" in done.stderr or '"error"' in done.stderr, done.stderr
    if command not in ("promote", "alias", "tag", "cleanup", "approve", "reject", "rollback",
                       "adopt") or done.returncode != 0:
        assert _state(yard, name) == before
