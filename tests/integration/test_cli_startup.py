"""Start-up of the command line: what a read imports, and what it reads from the vault.

A read verb answers as a new process at command-line speed, so what it imports is part of the
contract: ``list`` and ``details`` with ``--json`` import neither mlflow (the lean reader),
nor boto3 (the stage holders of the newest audit event are remembered on the machine that read
or wrote it, keyed by the registry's audit head tag), nor rich (JSON is rendered with the
standard library). ``history`` reads the trail from the vault, so on S3 it pays for boto3, but
not for mlflow or rich. Each check runs the real CLI in a fresh process and reports its
``sys.modules`` at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("mlflow", "boto3", "botocore", "rich", "pandas", "sklearn")

_REPORT_MODULES = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print('MODULES=' + json.dumps(sorted(m for m in HEAVY "
    "if m in sys.modules)), file=sys.stderr))\n"
    "from modelyard.cli import main\n"
    "main(sys.argv[1:], prog_name='modelyard')\n"
).replace("HEAVY", repr(HEAVY))


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    """``modelyard ARGS`` as a new process: (its JSON answer, the heavy modules it imported)."""
    done = subprocess.run([sys.executable, "-c", _REPORT_MODULES, *args],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stderr.splitlines() if x.startswith("MODULES=")][-1]
    return json.loads(done.stdout), json.loads(line.removeprefix("MODULES="))


@pytest.fixture
def promoted(yard: Any, name: str, trained: dict[str, Any]) -> Any:
    """One version in production (registered and promoted through modelyard, so audited)."""
    yard.register(trained["model"], name, metrics={"accuracy": 0.9})
    yard.promote(name, "v1.0.0", to="staging")
    yard.promote(name, "v1.0.0", to="production")
    return yard


def test_json_reads_import_no_mlflow_boto3_or_rich(promoted: Any, backend: str,
                                                   name: str, tmp_path: Path) -> None:
    from modelyard.core.names import T_AUDIT_HEAD
    from modelyard.errors import YardError

    _cli("--json", "list")  # this machine now remembers every audited model's newest event
    rows, modules = _cli("--json", "list")
    assert [r["production"] for r in rows if r["name"] == name] == ["v1.0.0"]
    # A model whose audit head tag does not name its newest event (none: registered with plain
    # MLflow; a stale one: a tampered trail, both left by other tests on this shared stack) has
    # its trail read from the vault on every list: that is the rule. Every other model's
    # newest event is remembered, so a registry of those alone needs no object-store client.
    def settled(model: str) -> bool:
        head = promoted.ctx.reads.get_model(model).tags.get(T_AUDIT_HEAD)
        try:
            events = promoted.history(model)
        except YardError:
            return False
        return bool(head) and bool(events) and head == f"{events[-1].seq}:{events[-1].hash}"

    unsettled = [r["name"] for r in rows if not settled(r["name"])]
    assert name not in unsettled
    assert "mlflow" not in modules and "rich" not in modules
    if not unsettled or backend == "embedded":
        assert modules == [], unsettled
    for ref in ("production", "v1.0.0", "latest"):
        shown, modules = _cli("--json", "details", f"{name}@{ref}")
        assert (shown["semver"], shown["stage"], shown["unaudited"]) == ("1.0.0", "production", [])
        assert shown["reproduce"] is None
        assert modules == [], ref
    events, modules = _cli("--json", "history", name)
    assert [e["action"] for e in events][-1] == "promote"
    # This machine keeps the trail's verified copy (``settled`` read it): no vault read while
    # the registry's head names its newest event.
    assert modules == []
    # A machine without it reads the trail from the vault: on S3 that is boto3's job, never
    # mlflow's or rich's.
    cold = {"MODELYARD_CACHE_DIR": str(tmp_path / "another-machine")}
    again, modules = _cli("--json", "history", name, env=cold)
    assert again == events
    assert modules == ([] if backend == "embedded" else ["boto3", "botocore"])
    # The client built in the background for history does not outlive a refusal noisily.
    missing = subprocess.run([sys.executable, "-m", "modelyard", "history", "no-such-model"],
                             capture_output=True, text=True, timeout=120, check=False)
    assert (missing.returncode, missing.stderr.splitlines()) == (
        3, ["Error: Model 'no-such-model' not found"])


def test_a_cold_machine_reads_the_vault_once_and_an_unaudited_move_still_shows(
        promoted: Any, backend: str, name: str, trained: dict[str, Any],
        tmp_path: Path) -> None:
    if backend == "embedded":
        pytest.skip("the vault is a local folder: no object-store client to spare")
    cold = {"MODELYARD_CACHE_DIR": str(tmp_path / "another-machine")}
    shown, modules = _cli("--json", "details", f"{name}@production", env=cold)
    assert shown["unaudited"] == [] and "boto3" in modules  # nothing remembered: read the vault
    shown, modules = _cli("--json", "details", f"{name}@production", env=cold)
    assert shown["unaudited"] == [] and modules == []  # remembered, keyed by the head tag

    # A move made around modelyard (plain MLflow) is unaudited whatever is remembered.
    second = promoted.register(trained["model"], name, bump="patch")
    promoted.ctx.tracking.set_alias(name, "production", second.version)
    for env in (None, cold):  # where the newest event was written, and elsewhere
        shown, _ = _cli("--json", "details", f"{name}@{second.version}", env=env)
        assert [d["stage"] for d in shown["unaudited"]] == ["production"]
    _, modules = _cli("--json", "details", f"{name}@{second.version}")
    assert modules == []

    # A head tag naming another event than the one remembered sends the read to the vault.
    promoted.ctx.tracking.set_model_tag(name, "modelyard.audit_head", "1:" + "0" * 64)
    shown, modules = _cli("--json", "details", f"{name}@{second.version}")
    assert [d["stage"] for d in shown["unaudited"]] == ["production"] and "boto3" in modules
