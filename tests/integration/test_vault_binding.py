"""A registry and a vault that do not belong together (issue #24.4): every verb that reads
both says so in one line naming both, never a false tamper alarm; doctor reports it; a model
that recorded nothing (plain MLflow, older registries) is never an alarm."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import run_cli


def _other_vault(yard: Any, isolated: Path) -> str:
    vault = yard.settings.resolved_vault
    return vault.rstrip("/") + "-other" if vault.startswith("s3://") else str(isolated / "other")


def test_a_registry_read_with_another_vault_says_so_in_one_line(
    make_yard: Any, name: str, trained: dict[str, Any], isolated: Path, backend: str,
) -> None:
    from modelyard.core.names import T_VAULT
    from modelyard.errors import VaultMismatch

    yard = make_yard()
    mv = yard.register(trained["model"], name, input_example=trained["X"].head(3),
                       pip_requirements=["scikit-learn"])
    yard.promote(name, mv.version, to="production", force=True, reason="ship")
    home = yard.settings.resolved_vault
    recorded = yard.tracking.get_model(name).tags[T_VAULT]
    assert recorded.endswith(" " + home)

    other = _other_vault(yard, isolated)
    stray = make_yard(vault=other)
    for call in (lambda: stray.history(name, verify=True), lambda: stray.incidents.detect(name),
                 lambda: stray.verify(name, "production"),
                 lambda: stray.promote(name, mv.version, to="staging", force=True, reason="x")):
        with pytest.raises(VaultMismatch) as caught:
            call()
        assert home in caught.value.message and other in caught.value.message
    assert len(yard.history(name, verify=True)) == 2  # nothing was written to either

    done = run_cli("history", name, "--verify", env={"MODELYARD_VAULT": other})
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert home in line and other in line and "broken" not in line
    health = run_cli("health", "--model", name, "--json", env={"MODELYARD_VAULT": other})
    assert health.returncode == 2 and "registry+vault" in health.stdout, health.stdout
    doctor = run_cli("doctor", "--json", env={"MODELYARD_VAULT": other})
    assert doctor.returncode != 0 and home in doctor.stdout and "registry+vault" in doctor.stdout

    # A whole-registry scan checks this vault's models and names each of another vault's in
    # one line: never "every file missing" or "every holder unaudited" for them.
    scanned = stray.protection.verify_all()
    assert name not in {v.name for v in scanned.versions} and not scanned.ok
    assert [line for line in scanned.apart if f"{name!r}" in line] and not [
        u for u in scanned.unaudited if u["name"] == name]
    assert name not in {h.name for h in stray.governance.unaudited(None)}
    cli = run_cli("verify", "--all", env={"MODELYARD_VAULT": other})
    assert cli.returncode != 0 and "written with another vault" in cli.stdout, cli.stdout
    if backend == "embedded":  # the registry's own vault: nothing apart, all sound
        home_scan = yard.protection.verify_all()
        assert home_scan.ok and not home_scan.apart and name in {v.name for v in home_scan.versions}

    # A model that recorded nothing (plain MLflow) is no alarm with any vault.
    plain = f"{name}-plain"
    yard.tracking.client.create_registered_model(plain)
    assert stray.history(plain, verify=True) == []
    if backend == "embedded":  # the same vault moved elsewhere is the same vault
        moved = isolated / "moved"
        shutil.copytree(home, moved)
        assert len(make_yard(vault=str(moved)).history(name, verify=True)) == 2
