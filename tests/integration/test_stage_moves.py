"""Stage moves on the team stack: a fixed, small number of registry calls in at most four
sequential round trips, whatever the number of versions, and no mlflow import (metadata writes
go through MLflow's REST API; independent calls go out at once).

Requests are counted where they arrive: a counting reverse proxy sits in front of the real
tracking server, and the CLI talks to the proxy (tests/support/counting_proxy.py), which also
times each request, so the rounds are measured rather than inferred.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.counting_proxy import CountingProxy
from tests.support.devstack import Stack

# promote (to production, displacing a holder) and rollback, every call counted: resolve the
# ref (search + get), the two stage holders (alias look-ups: a server's registered-models/get
# costs O(versions)), the audit head tag, the aliases moved, the stage tags and MLflow's stage
# field of the two versions involved. None of them grows with the number of versions.
MAX_PROMOTE_CALLS = 11
MAX_ROLLBACK_CALLS = 10
# Sequential round trips (issue #10: 4 or fewer): the look-ups at once (a semver ref: search,
# then get), then every write at once, the registry's audit head tag among them.
MAX_ROUNDS = 4

_NO_MLFLOW = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('MLFLOW-IMPORTED' if 'mlflow' in sys.modules else "
    "'MLFLOW-NOT-IMPORTED', file=sys.stderr))\n"
    "from modelyard.cli import main\n"
    "main(sys.argv[1:], prog_name='modelyard')\n"
)


@pytest.fixture
def proxy(stack: Stack) -> Iterator[CountingProxy]:
    # 0.1 s per answer, like a network between the CLI and the server: requests a move sends
    # at once then overlap at the proxy even when a busy machine is slow to start threads.
    with CountingProxy(stack.tracking_uri, latency=0.1) as counting:
        yield counting


def _cli(proxy: CountingProxy, *args: str
         ) -> tuple[dict[str, Any], list[tuple[str, str]], list[list[tuple[str, str]]]]:
    """``modelyard --json ARGS`` as a new process talking to the counting proxy: its answer,
    its registry calls and their sequential rounds."""
    proxy.reset()
    env = {**os.environ, "MLFLOW_TRACKING_URI": proxy.uri}
    done = subprocess.run([sys.executable, "-c", _NO_MLFLOW, "--json", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "MLFLOW-NOT-IMPORTED" in done.stderr, "a stage move on a server imported mlflow"
    return json.loads(done.stdout), proxy.registry_calls(), proxy.registry_rounds()


def _lists_versions(call: tuple[str, str]) -> bool:
    """A search that could return every version of the model (no tag filter, no small cap)."""
    _, path = call
    if "model-versions/search" not in path:
        return False
    query = parse_qs(urlsplit(path).query)
    capped = int(query.get("max_results", ["1000"])[0]) <= 10
    return not (capped or "tags." in query.get("filter", [""])[0])


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_promote_and_rollback_are_few_round_trips_without_mlflow(
        backend: str, yard: Any, name: str, trained: dict[str, Any], proxy: CountingProxy,
        tmp_path: Path) -> None:
    first = yard.register(trained["model"], name, metrics={"accuracy": 0.9})
    second = yard.register(trained["model"], name, metrics={"accuracy": 0.91})
    yard.promote(name, first.version, to="staging")
    yard.promote(name, first.version, to="production")
    yard.promote(name, second.version, to="staging")

    promoted, calls, rounds = _cli(proxy, "promote", f"{name}@v{second.semver}", "--to",
                                   "production", "--reason", "better")
    assert promoted["status"] == "promoted" and promoted["replaced"] == first.version
    assert len(calls) <= MAX_PROMOTE_CALLS, calls
    assert len(rounds) <= MAX_ROUNDS, rounds
    assert not [c for c in calls if _lists_versions(c)], calls

    rolled, calls, rounds = _cli(proxy, "rollback", name, "--reason", "worse")
    assert rolled["status"] == "rolled back" and rolled["version"] == first.version
    assert len(calls) <= MAX_ROLLBACK_CALLS, calls
    assert len(rounds) <= MAX_ROUNDS, rounds
    assert not [c for c in calls if _lists_versions(c)], calls

    # What the moves left is what MLflow's own client sees (aliases, tags, stage field).
    now = {v.version: v for v in yard.versions(name)}
    assert yard.resolve(name, "production").version == first.version
    assert yard.tracking.alias_holder(name, "staging") is None
    assert now[first.version].tags["modelyard.stage"] == "production"
    assert now[second.version].tags["modelyard.stage"] == "archived"
    assert "modelyard.rolled_back" in now[second.version].tags
    client = yard.tracking.client
    assert client.get_model_version(name, str(first.version)).current_stage == "Production"
    assert client.get_model_version(name, str(second.version)).current_stage == "Archived"
    yard.history(name, verify=True)  # the trail explains every holder


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_a_move_skips_writes_that_change_nothing(
        backend: str, yard: Any, name: str, trained: dict[str, Any], proxy: CountingProxy
) -> None:
    """Promoting to production leaves the staging holder alone: its alias, stage tag and
    stage field are already right, so none of them is written again."""
    first = yard.register(trained["model"], name, metrics={"accuracy": 0.9})
    second = yard.register(trained["model"], name, metrics={"accuracy": 0.91})
    yard.promote(name, second.version, to="staging")

    _, calls, rounds = _cli(proxy, "promote", f"{name}@{first.version}", "--to", "production",
                            "--force", "--reason", "hotfix")
    assert len(rounds) <= MAX_ROUNDS, rounds
    writes = [c for c in calls if c[0] in ("POST", "DELETE")]
    bodies = [path for _, path in writes]
    assert "/api/2.0/mlflow/registered-models/alias" in bodies  # production set
    # Written: the audit head, the production alias, version 1's stage tag and stage field.
    # Not written: staging (held by version 2 already), version 2's tags, any rolled_back.
    assert len(writes) == 4, writes
    assert not [c for c in writes if c[0] == "DELETE"], writes
    assert yard.tracking.alias_holder(name, "staging") == second.version
    assert yard.resolve(name, "production").version == first.version
    assert yard.get(name, second.version, full=False).stage == "staging"
