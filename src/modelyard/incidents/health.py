"""``health``: is the registry fit to serve, right now? One status and the checks behind it.

Status: ``healthy`` (exit 0), ``degraded`` (exit 1: something needs attention soon), or
``critical`` (exit 2: serving is at risk now). A check is ``ok``, ``warn`` (shown, never
changes the status), ``degraded`` or ``critical``.

Checks: the registry and the stores answer (with latency); every model's production and
staging holders are present, match their manifests and are backed up; the newest backup and
drill are recent enough; a production holder signed by a retired key is shown; the audit
chains hold; nothing a process that died left behind
(debris: ``protection/debris.py``) is there; the serving records (capture/) show the error
rate and drift; the last ``reproduce`` result of each holder is shown.

>>> report = yard.incidents.health()
>>> report.status, report.exit_code
('healthy', 0)
>>> print(report.to_prometheus())
# HELP modelyard_health_status 0 healthy, 1 degraded, 2 critical
...
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from modelyard.context import Context
from modelyard.core.names import T_RESTORED_FROM, T_SEMVER, check_name
from modelyard.errors import AuditTampered, IntegrityError, NotFound, YardError
from modelyard.lifecycle.unaudited import INTERRUPTED
from modelyard.registry.loading import Loader
from modelyard.store.vault import DRILLS, HEALTH_STATE, reproduce_key
from modelyard.trail.audit import Auditor

log = logging.getLogger("modelyard.health")

LEVELS = ("ok", "warn", "degraded", "critical")
STATUS = {"ok": "healthy", "warn": "healthy", "degraded": "degraded", "critical": "critical"}
EXIT = {"healthy": 0, "degraded": 1, "critical": 2}
DRILL_MAX_AGE_S = 8 * 24 * 3600  # a weekly drill, with a day's grace
BACKUP_MAX_AGE_S = 2 * 24 * 3600
MAX_ERROR_RATE = 0.05
SERVING_WINDOW = "24h"


@dataclass
class HealthCheck:
    check: str
    target: str
    level: str  # ok | warn | degraded | critical
    detail: str
    seconds: float | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    status: str
    exit_code: int
    checks: list[HealthCheck]
    at: str = ""
    notified: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, "at": self.at,
                "checks": [c.to_dict() for c in self.checks], "notified": self.notified}

    def to_prometheus(self) -> str:
        """node-exporter's textfile-collector format (text exposition 0.0.4)."""
        lines = [
            "# HELP modelyard_health_status 0 healthy, 1 degraded, 2 critical",
            "# TYPE modelyard_health_status gauge",
            f"modelyard_health_status {self.exit_code}",
            "# HELP modelyard_health_check_level 0 ok, 1 warn, 2 degraded, 3 critical",
            "# TYPE modelyard_health_check_level gauge",
        ]
        for c in self.checks:
            lines.append(f"modelyard_health_check_level{{{_labels(c)}}} {LEVELS.index(c.level)}")
        timed = [c for c in self.checks if c.seconds is not None]
        if timed:
            lines += ["# HELP modelyard_health_latency_seconds time the check took",
                      "# TYPE modelyard_health_latency_seconds gauge"]
            lines += [f"modelyard_health_latency_seconds{{{_labels(c)}}} {c.seconds:.6f}"
                      for c in timed]
        valued = [c for c in self.checks if c.value is not None]
        if valued:
            lines += ["# HELP modelyard_health_value the figure a check judged (age in "
                      "seconds, error rate, ...)", "# TYPE modelyard_health_value gauge"]
            lines += [f"modelyard_health_value{{{_labels(c)}}} {c.value:.6g}" for c in valued]
        return "\n".join(lines) + "\n"


def _labels(check: HealthCheck) -> str:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")

    return f'check="{esc(check.check)}",target="{esc(check.target)}"'


BackupRecord = Callable[[str, int], "dict[str, Any] | None"]
Monitor = Callable[[str, str], Any]  # (model, since) -> serving's report over that window


class Health:
    """Runs the checks. ``backup_record`` (the backup verb's record reader) and ``monitor``
    (serving's report) are handed in by the facade when they exist; ``unaudited`` finds
    stage holders no audit event explains."""

    def __init__(self, ctx: Context, loader: Loader, audit: Auditor, *,
                 backup_record: BackupRecord | None = None,
                 monitor: Monitor | None = None,
                 unaudited: Callable[[str], list[Any]] | None = None) -> None:
        self.unaudited = unaudited
        self.ctx = ctx
        self.loader = loader
        self.audit = audit
        self.backup_record = backup_record
        self.monitor = monitor
        self._journal: list[Any] | None = None

    def run(self, *, notify: bool = False, models: list[str] | None = None) -> HealthReport:
        """Every check; ``models`` narrows the per-model checks to those models (the
        registry, stores and drills are checked all the same)."""
        checks: list[HealthCheck] = []
        registry_ok = self._registry(checks)
        vault_ok = self._stores(checks)
        self._journal = self._entries(checks) if vault_ok and registry_ok else None
        if registry_ok:
            names = self._models(checks) if models is None else [check_name(m) for m in models]
            for model in names:
                self._model(model, checks, vault_ok)
            if models is None and self._journal:  # a model its registration never created
                for gone in sorted({e.name for e in self._journal} - set(names)):
                    self._debris(gone, [], None, checks)
            self._open_runs(None if models is None else names, checks)
        if vault_ok:
            self._drills(checks)
        worst = max((LEVELS.index(c.level) for c in checks), default=0)
        status = STATUS[LEVELS[worst]]
        report = HealthReport(status, EXIT[status], checks,
                              datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if notify:
            report.notified = self._notify(report)
        return report

    # -- the parts ------------------------------------------------------------------------
    def _registry(self, checks: list[HealthCheck]) -> bool:
        clock = time.perf_counter()
        ok, detail = self.ctx.tracking.health()
        checks.append(HealthCheck("registry", self.ctx.tracking.display_uri,
                                  "ok" if ok else "critical", detail,
                                  time.perf_counter() - clock))
        return ok

    def _stores(self, checks: list[HealthCheck]) -> bool:
        vault_ok = True
        stores = [("vault", self.ctx.vault)]
        backup = None
        with contextlib.suppress(YardError):
            backup = self.ctx.backup
        if backup is not None:
            stores.append(("backup store", backup))
        for label, vault in stores:
            clock = time.perf_counter()
            try:
                vault.store.check()
                level, detail = "ok", "answers"
            except YardError as exc:
                level, detail = ("critical" if label == "vault" else "degraded"), exc.message
                vault_ok = vault_ok and label != "vault"
            checks.append(HealthCheck(label, getattr(vault.store, "url", label), level,
                                      detail, time.perf_counter() - clock))
        if backup is None:
            checks.append(HealthCheck("backup store", "-", "warn", "no backup store configured"))
        return vault_ok

    def _models(self, checks: list[HealthCheck]) -> list[str]:
        try:
            return sorted(m.name for m in self.ctx.reads.list_models())
        except YardError as exc:
            checks.append(HealthCheck("models", "-", "critical", exc.message))
            return []

    def _model(self, name: str, checks: list[HealthCheck], vault_ok: bool) -> None:
        try:
            model = self.ctx.reads.get_model(name)
            apart = self.audit.binding.problem(name, model.tags)
            if apart:  # every check below would read the wrong vault: one line instead
                checks.append(HealthCheck("registry+vault", name, "critical", apart))
                return
            records = self.ctx.reads.versions(name)
            aliases = model.aliases
        except YardError as exc:
            checks.append(HealthCheck("holders", name, "critical", exc.message))
            return
        numbers = {r.version: r for r in records}
        for stage in ("production", "staging"):
            number = aliases.get(stage)
            if number is None:
                continue
            target = f"{name}@{stage}"
            bad = "critical" if stage == "production" else "degraded"
            record = numbers.get(number)
            if record is None:
                checks.append(HealthCheck("present", target, bad,
                                          f"#{number} is not in the registry"))
                continue
            semver = record.tags.get(T_SEMVER, f"#{number}")
            clock = time.perf_counter()
            try:
                verified = self.loader.verify(name, number)
                checks.append(HealthCheck("verified", target, "ok",
                                          f"v{semver} matches its manifest",
                                          time.perf_counter() - clock))
                if stage == "production" and verified.signer is not None and \
                        verified.signer in self.ctx.signatures.keyring.retired_ids:
                    checks.append(HealthCheck(
                        "signature", target, "warn", f"v{semver} is signed by retired key "
                        f"{verified.signer[:16]}; sign it with a current key (`modelyard sign "
                        f"{name}@production`)"))
            except YardError as exc:
                level = bad if isinstance(exc, IntegrityError) else "critical"
                checks.append(HealthCheck("verified", target, level, exc.message,
                                          time.perf_counter() - clock))
            self._backed_up(name, backed_up_as(number, record.tags), semver, target, checks)
            if vault_ok:
                self._reproduced(name, number, semver, target, checks)
        events = None
        if vault_ok:
            try:
                events = self.audit.history(name, verify=True)
                checks.append(HealthCheck("audit chain", name, "ok", "hash chain holds"))
            except AuditTampered as exc:
                checks.append(HealthCheck("audit chain", name, "critical", exc.message))
            except (YardError, ValueError) as exc:
                checks.append(HealthCheck("audit chain", name, "degraded",
                                          getattr(exc, "message", str(exc))))
            self._debris(name, records, events, checks)
        if self.unaudited is not None:
            try:
                moved = self.unaudited(name)
            except YardError as exc:
                checks.append(HealthCheck("audited holders", name, "degraded", exc.message))
            else:
                checks += [HealthCheck("audited holders", name, "critical",
                                       d.detail if INTERRUPTED in d.detail
                                       else f"unaudited move: {d.detail}") for d in moved]
                if not moved:
                    checks.append(HealthCheck("audited holders", name, "ok",
                                              "every stage holder is explained by the trail"))
        if self.monitor is not None:
            self._serving(name, checks)

    def _entries(self, checks: list[HealthCheck]) -> list[Any] | None:
        """The registration journal, read once for every model (``registry/journal.py``)."""
        from modelyard.registry.journal import entries

        try:
            return entries(self.ctx.vault.store)
        except YardError as exc:
            checks.append(HealthCheck("debris", "-", "degraded", exc.message))
            return None

    def _debris(self, name: str, records: list[Any], events: list[Any] | None,
                checks: list[HealthCheck]) -> None:
        """What a process that died left behind (``protection/debris.py``), from the
        versions and trail already read; one line each, naming the version and the cure."""
        if self._journal is None:
            return
        from modelyard.protection.debris import Debris

        clock = time.perf_counter()
        found = Debris(self.ctx, self.audit).for_model(
            name, records, events, entries=[e for e in self._journal if e.name == name])
        seconds = time.perf_counter() - clock
        checks += [HealthCheck("debris", name, "degraded", item.line, seconds,
                               value=item.age_s) for item in found.items]

    def _open_runs(self, names: list[str] | None, checks: list[HealthCheck]) -> None:
        """Runs registrations from before the journal left RUNNING: one search for all."""
        if self._journal is None:
            return
        from modelyard.protection.debris import Debris

        clock = time.perf_counter()
        try:
            found = Debris(self.ctx, self.audit).open_runs(names, self._journal)
        except YardError as exc:
            checks.append(HealthCheck("debris", "-", "degraded", exc.message))
            return
        seconds = time.perf_counter() - clock
        checks += [HealthCheck("debris", item.name, "degraded", item.line, seconds,
                               value=item.age_s) for item in found]

    def _backed_up(self, name: str, number: int, semver: str, target: str,
                   checks: list[HealthCheck]) -> None:
        if self.backup_record is None or self.ctx.settings.backup is None:
            return
        try:
            record = self.backup_record(name, number)
        except YardError as exc:
            checks.append(HealthCheck("backed up", target, "degraded", exc.message))
            return
        if record is None:
            checks.append(HealthCheck("backed up", target, "degraded",
                                      f"v{semver} has no record in the backup store"))
            return
        age = _age_s(str(record.get("backed_up_at") or record.get("created_at") or ""))
        level = "degraded" if age is not None and age > BACKUP_MAX_AGE_S else "ok"
        checks.append(HealthCheck("backed up", target, level, f"v{semver} is backed up"
                                  + (f" ({age / 3600:.0f} h ago)" if age is not None else ""),
                                  value=age))

    def _reproduced(self, name: str, number: int, semver: str, target: str,
                    checks: list[HealthCheck]) -> None:
        try:
            last = json.loads(self.ctx.vault.store.get_bytes(reproduce_key(name, number)))
        except (YardError, ValueError):
            return
        ok = bool(last.get("reproducible"))
        checks.append(HealthCheck("reproducible", target, "ok" if ok else "warn",
                                  f"v{semver}: last reproduce {last.get('at', '?')} "
                                  + ("reproduced" if ok else "did NOT reproduce: "
                                     + "; ".join(last.get("differences", [])[:3]))))

    def _serving(self, name: str, checks: list[HealthCheck]) -> None:
        assert self.monitor is not None
        try:
            report = self.monitor(name, SERVING_WINDOW)
        except (YardError, ImportError) as exc:
            checks.append(HealthCheck("serving", name, "warn", str(exc)[:200]))
            return
        for version in getattr(report, "versions", []):
            if version.shadow or not version.count:
                continue
            target = f"{name} v{version.semver}"
            level = "degraded" if version.error_rate > MAX_ERROR_RATE else "ok"
            checks.append(HealthCheck("serving errors", target, level,
                                      f"{version.errors}/{version.count} failed "
                                      f"in {SERVING_WINDOW}", value=version.error_rate))
            if version.drifted:
                checks.append(HealthCheck("drift", target, "degraded",
                                          "drifted: " + ", ".join(version.drifted[:5])))

    def _drills(self, checks: list[HealthCheck]) -> None:
        store = self.ctx.vault.store
        try:
            keys = sorted(store.list(DRILLS))
        except YardError as exc:
            checks.append(HealthCheck("drills", "-", "degraded", exc.message))
            return
        if not keys:
            checks.append(HealthCheck("drills", "-", "warn", "no drill has run yet "
                                      "(`modelyard drill run --all`)"))
            return
        try:
            newest = json.loads(store.get_bytes(keys[-1]))
        except (YardError, ValueError):
            newest = {}
        age = _age_s(str(newest.get("at", "")))
        level = "degraded" if age is None or age > DRILL_MAX_AGE_S else "ok"
        if not newest.get("ok", False):
            level = "degraded"
        checks.append(HealthCheck(
            "drills", str(newest.get("scenario", "?")), level,
            f"newest drill {newest.get('scenario', '?')} "
            f"{'passed' if newest.get('ok') else 'FAILED'}"
            + (f" {age / 3600:.1f} h ago" if age is not None else ""), value=age))

    # -- alerts ---------------------------------------------------------------------------
    def _notify(self, report: HealthReport) -> list[dict[str, Any]]:
        from modelyard.lifecycle.notify import send_all

        store = self.ctx.vault.store
        previous = "healthy"
        with contextlib.suppress(YardError, ValueError, NotFound):
            previous = str(json.loads(store.get_bytes(HEALTH_STATE)).get("status", "healthy"))
        results: list[dict[str, Any]] = []
        if report.status != previous and self.ctx.settings.webhooks:
            failing = [f"{c.check} {c.target}: {c.detail}" for c in report.checks
                       if c.level in ("degraded", "critical")]
            payload = {"event": "health", "status": report.status, "previous": previous,
                       "at": report.at, "problems": failing[:20]}
            results = send_all(self.ctx.settings.webhooks, payload,
                               self.ctx.settings.webhook_secret)
        with contextlib.suppress(YardError):
            store.put_bytes(HEALTH_STATE, json.dumps(
                {"status": report.status, "at": report.at}).encode())
        return results


def backed_up_as(number: int, tags: dict[str, str]) -> int:
    """The number a version's backup record is under: a version ``restore`` recreated gets a
    new number in the registry, and its record stays under the one it was backed up as
    (``modelyard.restored_from`` ends with it)."""
    origin = tags.get(T_RESTORED_FROM, "")
    head, _, last = origin.rpartition(" version ")
    return int(last) if head and last.isascii() and last.isdigit() and len(last) < 13 \
        else number


def _age_s(stamp: str) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - moment).total_seconds())
