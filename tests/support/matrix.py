"""The detection matrix (issue #24): legitimate states raise no alarm, injected faults are
caught, and after ``recover`` every detector is quiet again.

One embedded project (a git + DVC pipeline writing ``data.csv`` and ``stats.json``, a model
registered on that data, v1 in production and backed up, a newer v2 not promoted, gates in
the policy) goes through each legitimate state and each fault in turn; a fault is put right by
``recover`` (or, for what no layer handles, by undoing it) before the next one. For each cell:
the worst level ``health`` gives the model, the kinds ``detect`` finds (``recover --dry-run``'s
findings), whether ``recover`` cleared it, and the seconds each took. Used by
``tests/integration/test_detection_matrix.py`` and ``benchmarks/detection.py``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.helpers import corrupt_version, git_dvc_project, project_shell

LEVELS = ("ok", "warn", "degraded", "critical")
_MAKE = """import pathlib, sys
rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300
lines = ["a,b,c"] + [f"{i % 17},{(i * 7) % 23},{(i * 13) % 11}" for i in range(rows)]
pathlib.Path("data.csv").write_text("\\n".join(lines) + "\\n")
pathlib.Path("stats.json").write_text('{"rows": %d}' % rows)
"""
_DVC_YAML = """stages:
  make:
    cmd: python make.py ${rows}
    deps: [make.py]
    params: [rows]
    outs: [data.csv, stats.json]
"""


@dataclass
class Cell:
    state: str
    fault: bool
    health: str = "ok"
    findings: list[str] = field(default_factory=list)
    error: str = ""  # a verb that refused (one line) instead of reporting
    verified: bool | None = None  # verify --all NAME: every layer sound, no unaudited move
    recovered: bool | None = None  # faults: every detector quiet after recover
    after: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        return (LEVELS.index(self.health) >= 2 or bool(self.findings) or bool(self.error)
                or self.verified is False)


def build_project(root: Path, backup: Path) -> None:
    sh, git, dvc = git_dvc_project(root)
    (root / "make.py").write_text(_MAKE)
    (root / "params.yaml").write_text("rows: 300\n")
    (root / "dvc.yaml").write_text(_DVC_YAML)
    (root / "modelyard.toml").write_text(
        f'backup = "{backup}"\n[policy]\ngates = ["accuracy >= 0.8"]\n')
    sh(*dvc, "repro", "-q")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-qm", "data")


# The rows run on the team stack too (``Matrix(only=SERVER_ROWS)``): the registry and model
# states and faults, where the server and S3 change what is read; the data and pipeline rows
# are the local project's files whatever the registry, and the vault outage renames a folder.
SERVER_ROWS = frozenset({
    "fresh: production v1, a newer v2 not promoted", "after a rollback",
    "after a snapshot restore", "model-corruption (artifact bytes flipped)",
    "alias moved with plain MLflow", "stage field moved with plain MLflow",
    "corrupted backup object", "model-deletion (production deleted)",
    "after a restore of a deleted version",
})


class Matrix:
    def __init__(self, yard: Any, make_yard: Callable[..., Any], name: str, root: Path,
                 model: Any, frame: Any, *, only: frozenset[str] | None = None) -> None:
        self.yard = yard
        self.make_yard = make_yard
        self.name = name
        self.root = root
        self.model = model
        self.frame = frame
        self.only = only  # the rows to run (None: every one)
        self.cells: list[Cell] = []

    def wanted(self, label: str) -> bool:
        return self.only is None or label in self.only

    # -- observing ----------------------------------------------------------------------
    def observe(self, cell: Cell, yard: Any | None = None) -> Cell:
        from modelyard.errors import YardError

        yard = yard or self.yard
        clock = time.perf_counter()
        report = yard.incidents.health(models=[self.name])
        cell.seconds["health"] = time.perf_counter() - clock
        mine = [c for c in report.checks if c.target == self.name
                or c.target.startswith(f"{self.name}@")]
        cell.health = max((c.level for c in mine), key=LEVELS.index, default="ok")
        clock = time.perf_counter()
        try:
            cell.findings = sorted({f.kind for f in yard.incidents.detect(self.name)})
        except YardError as exc:
            cell.error = exc.message
        cell.seconds["detect"] = time.perf_counter() - clock
        clock = time.perf_counter()
        try:
            cell.verified = yard.protection.verify_all(self.name).ok
        except YardError as exc:
            cell.verified = False
            cell.error = cell.error or exc.message
        cell.seconds["verify"] = time.perf_counter() - clock
        return cell

    def quiet(self, yard: Any | None = None) -> tuple[bool, str]:
        cell = self.observe(Cell("after", False), yard)
        return not cell.alarm, (cell.error or ",".join(cell.findings)
                                or ("verify --all" if cell.verified is False else cell.health))

    # -- the run --------------------------------------------------------------------------
    def setup(self) -> None:
        yard, name = self.yard, self.name
        self.v1 = yard.register(self.model, name, metrics={"accuracy": 0.9},
                                input_example=self.frame.head(3), data=["data.csv"],
                                pip_requirements=["scikit-learn"]).version
        yard.promote(name, self.v1, to="production", force=True, reason="ship")
        yard.load(name, "production")  # the loader's cache holds a verified copy
        self.v2 = yard.register(self.model, name, metrics={"accuracy": 0.5},
                                params={"trees": 3}, input_example=self.frame.head(3),
                                data=["data.csv"], pip_requirements=["scikit-learn"]).version

    def healthy(self, label: str, action: Callable[[], Any] | None = None,
                yard: Any | None = None) -> None:
        if not self.wanted(label):
            return
        if action is not None:
            action()
        self.cells.append(self.observe(Cell(label, False), yard))

    def fault(self, label: str, inject: Callable[[], Any],
              undo: Callable[[], Any] | None = None, *, recover: bool = True,
              yard: Any | None = None) -> None:
        from modelyard.errors import YardError

        if not self.wanted(label):
            return
        inject()
        cell = self.observe(Cell(label, True), yard)
        if recover:
            clock = time.perf_counter()
            try:
                self.yard.incidents.recover(self.name)
            except YardError as exc:
                cell.after = f"recover refused: {exc.message}"
            cell.seconds["recover"] = time.perf_counter() - clock
        if undo is not None:
            undo()  # an outage ends / what no layer handles is put back by hand
        quiet, detail = self.quiet()
        cell.recovered = quiet if recover else None
        cell.after = cell.after or detail
        if not quiet and not recover:
            cell.after = f"still: {detail}"
        self.cells.append(cell)

    def run(self, other_home: Path) -> list[Cell]:
        yard, name, root = self.yard, self.name, self.root
        client = yard.tracking.client
        self.setup()
        self.healthy("fresh: production v1, a newer v2 not promoted")

        from modelyard.errors import Conflict

        def held_back() -> None:
            try:
                yard.promote(name, self.v2, to="staging", reason="try")
            except Conflict as exc:
                assert "accuracy" in exc.message, exc.message
                return
            raise AssertionError("the gate let v2 through")

        self.healthy("a version held back by a gate", held_back)

        def rolled_back() -> None:
            # promoted by someone whose config had no gates, then rolled back
            self.make_yard(gates=[]).promote(name, self.v2, to="production", force=True,
                                             reason="try anyway")
            yard.rollback(name, "production", reason="back")

        self.healthy("after a rollback", rolled_back)

        def plain_load() -> None:
            import mlflow

            mlflow.set_tracking_uri(yard.tracking.tracking_uri)
            try:
                mlflow.pyfunc.load_model(f"models:/{name}/Production")
            finally:
                mlflow.set_tracking_uri(None)  # type: ignore[arg-type]

        self.healthy("after a plain-MLflow models:/ load", plain_load)

        def moved_on() -> None:
            (root / "params.yaml").write_text("rows: 320\n")
            sh, git, dvc = project_shell(root)
            sh(*dvc, "repro", "-q")
            sh(*git, "commit", "-qam", "more rows")

        self.healthy("data changed by dvc repro, not registered", moved_on)

        imported = "after export and import (the new registry)"
        if self.wanted(imported):
            other = self.make_yard(home=str(other_home / ".modelyard"),
                                   vault=str(other_home / "vault"))
            other.import_registry(yard.export([name]),
                                  source_tracking_uri=yard.tracking.tracking_uri,
                                  keep_stages=True)
            self.healthy(imported, None, other)

        def snapshot() -> None:
            yard.protection.snapshots.create("matrix", include_data=False)
            yard.protection.snapshots.restore("matrix")

        self.healthy("after a snapshot restore", snapshot)

        # -- faults: each put right before the next ---------------------------------------
        self.fault("model-corruption (artifact bytes flipped)", lambda: corrupt_version(yard, name))

        def artifact_loss() -> None:
            from modelyard.registry.loading import Loader

            mv = yard.get(name, "production")
            yard.tracking.artifacts.delete_artifacts(mv.artifact_location)
            shutil.rmtree(Loader(yard.ctx).cache_folder(mv), ignore_errors=True)

        self.fault("artifact-loss (files and cache gone)", artifact_loss)
        self.fault("bad-promotion (a config without gates)",
                   lambda: self.make_yard(gates=[]).promote(
                       name, self.v2, to="production", force=True, reason="stale config"))
        self.fault("alias moved with plain MLflow",
                   lambda: client.set_registered_model_alias(name, "production", self.v2))
        self.fault("stage field moved with plain MLflow",
                   lambda: client.transition_model_version_stage(
                       name, str(self.v2), "Production", archive_existing_versions=True))

        def edit_event() -> Callable[[], None]:
            from modelyard.store.vault import event_key

            store = yard.vault.store
            key = event_key(name, 1)
            original = store.get_bytes(key)
            event = json.loads(original)
            event["reason"] = "edited"
            store.put_bytes(key, json.dumps(event).encode())
            return lambda: store.put_bytes(key, original)

        undo_edit: list[Callable[[], None]] = []
        self.fault("audit event edited", lambda: undo_edit.append(edit_event()),
                   lambda: undo_edit[0](), recover=False)

        vault_dir = Path(yard.settings.resolved_vault)

        def outage() -> None:
            vault_dir.rename(vault_dir.with_name("vault.outage"))
            vault_dir.write_text("outage")

        def outage_ends() -> None:
            vault_dir.unlink()
            vault_dir.with_name("vault.outage").rename(vault_dir)

        if self.wanted("storage-outage (the vault stops answering)"):
            self.fault("storage-outage (the vault stops answering)", outage, outage_ends)
        backup_objects = Path(yard.settings.backup or "") / "objects"
        kept: list[tuple[Path, bytes]] = []

        def corrupt_backup() -> None:
            # the production version's biggest object in the backup store, a byte flipped
            victim = max((p for p in backup_objects.rglob("*") if p.is_file()),
                         key=lambda p: p.stat().st_size)
            data = victim.read_bytes()
            kept.append((victim, data))
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            victim.write_bytes(bytes(flipped))

        # No recover layer claims it (health does not hash the backup store: verify --all
        # does); the cure verify --all names is repair, which copies the vault's good object.
        self.fault("corrupted backup object", corrupt_backup,
                   lambda: yard.protection.repair(name, all=True), recover=False)
        if self.wanted("a vault that is not the registry's"):
            stray = self.make_yard(vault=str(other_home / "stray-vault"))
            self.fault("a vault that is not the registry's", lambda: None, recover=False,
                       yard=stray)

        csv = root / "data.csv"
        good = csv.read_bytes()
        lines = good.decode().splitlines()
        self.fault("data-noise", lambda: csv.write_text(
            "\n".join([lines[0], *[f"{i},{i * 3},{-i}" for i in range(len(lines) - 1)]]) + "\n"))
        self.fault("data-missing", lambda: csv.write_text(
            "\n".join([lines[0], *[",".join(["", *r.split(",")[1:]]) for r in lines[1:]]])
            + "\n"))
        self.fault("data-duplicates", lambda: csv.write_text(
            "\n".join([*lines, *lines[1:len(lines) // 2]]) + "\n"))
        self.fault("pipeline-failure (stats.json half-written)",
                   lambda: (root / "stats.json").write_text('{"rows": '))
        self.fault("model-deletion (production deleted)",
                   lambda: yard.tracking.delete_version(name, yard.resolve(name, "production")
                                                        .version))
        self.healthy("after a restore of a deleted version")

        def registry_loss() -> None:
            for record in yard.tracking.versions(name):
                yard.tracking.delete_version(name, record.version)

        self.fault("registry-loss (every version deleted)", registry_loss)

        def retention() -> None:
            options = {"metrics": {"accuracy": 0.9}, "input_example": self.frame.head(3),
                       "data": ["data.csv"], "pip_requirements": ["scikit-learn"]}
            for trees, archive in ((4, True), (5, False)):  # archived, then deleted
                self.make_yard(max_versions=2, archive_old_versions=archive).register(
                    self.model, name, params={"trees": trees}, **options)

        self.healthy("after retention archived and deleted old versions", retention)
        return self.cells


def table(cells: list[Cell]) -> str:
    rows = ["| state | kind | health | detect | verify --all | recover -> every detector quiet "
            "| seconds |", "|---|---|---|---|---|---|---|"]
    for c in cells:
        kind = "fault" if c.fault else "legitimate"
        seen = "refused: one line" if c.error else (", ".join(c.findings) or "-")
        after = "-" if not c.fault else (
            ("yes" if c.recovered else f"no ({c.after})") if c.recovered is not None
            else f"n/a ({c.after or 'undone by hand'})")
        secs = " ".join(f"{k} {v:.2f}" for k, v in c.seconds.items())
        verified = {True: "ok", False: "problems", None: "-"}[c.verified]
        rows.append(f"| {c.state} | {kind} | {c.health} | {seen} | {verified} | {after} | "
                    f"{secs} |")
    faults = [c for c in cells if c.fault]
    legit = [c for c in cells if not c.fault]
    rows.append("")
    rows.append(f"faults caught: {sum(c.alarm for c in faults)}/{len(faults)} "
                f"(health degraded/critical: {sum(LEVELS.index(c.health) >= 2 for c in faults)}); "
                f"false alarms: {sum(c.alarm for c in legit)}/{len(legit)}; "
                f"recovered: {sum(bool(c.recovered) for c in faults)}/"
                f"{sum(c.recovered is not None for c in faults)}")
    return "\n".join(rows)
