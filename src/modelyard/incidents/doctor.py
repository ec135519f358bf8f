"""``doctor``: which tracking URI and stores are in use, and whether each answers."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from modelyard.core.entities import Check, DoctorReport
from modelyard.errors import YardError
from modelyard.store.storage import open_store, redact

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.core.settings import Settings

CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MODELYARD_WEBHOOK_SECRET",
    # The other clouds' chains (gs://, az:// stores): only whether each is set is shown.
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
)


def _check_store(url: str, endpoint: str | None) -> dict[str, Any]:
    try:
        open_store(url, endpoint_url=endpoint).check()
        return {"ok": True, "detail": "reachable"}
    except YardError as exc:
        return {"ok": False, "detail": exc.message}


def _check_backup(ctx: Context) -> dict[str, Any]:
    """The backup store for real: it exists, takes a write (a probe key, put then deleted),
    and how old its newest version record is."""
    import time
    import uuid

    from modelyard.store.vault import RECORDS, probe_key

    try:
        store = ctx.open_backup_store()
        if not store.exists_folder():
            return {"ok": False, "detail": f"{redact(store.url)} does not exist (create the "
                    "bucket or folder first)"}
        key = probe_key(uuid.uuid4().hex)
        store.put_bytes(key, b"modelyard doctor probe")
        store.delete(key)
        newest = store.newest(RECORDS)
    except YardError as exc:
        return {"ok": False, "detail": exc.message}
    if newest is None:
        return {"ok": True, "detail": "reachable, writable; no version backed up yet"}
    key, stamp = newest
    return {"ok": True, "detail": f"reachable, writable; newest backup "
            f"{_age(time.time() - stamp)} ago ({key.removeprefix(RECORDS)})"}


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def run(ctx: Context) -> DoctorReport:
    settings = ctx.settings
    endpoint = settings.s3_endpoint_url
    database = settings.resolved_tracking_uri.removeprefix("sqlite:///")
    if settings.is_embedded and not os.path.exists(database):
        # Nothing registered here yet: doctor looks, it does not create the database.
        ok, detail = True, "no database yet (created by the first registration)"
    else:
        ok, detail = ctx.tracking.health()
    checks = [Check("tracking", redact(settings.resolved_tracking_uri), ok, detail)]
    vault = _check_store(settings.resolved_vault, endpoint)
    checks.append(Check("vault", redact(settings.resolved_vault), **vault))
    if settings.backup:
        checks.append(Check("backup", redact(settings.backup), **_check_backup(ctx)))
    artifact_root = settings.resolved_artifact_location
    if endpoint or (artifact_root or "").startswith("s3://") or settings.resolved_vault.startswith(
        "s3://"
    ):
        s3 = _check_s3_endpoint(endpoint)
        checks.append(Check("s3", redact(endpoint or "AWS S3"), **s3))
    if ok and vault["ok"] and (not settings.is_embedded or os.path.exists(database)):
        checks.append(_check_binding(ctx))
    user, identity = _check_identity(ctx)
    checks.append(identity)
    return DoctorReport(
        ok=all(c.ok for c in checks),
        mode="embedded" if settings.is_embedded else "server",
        tracking_uri=redact(settings.resolved_tracking_uri),
        artifact_location=redact(artifact_root or "(chosen by the tracking server)"),
        vault=redact(settings.resolved_vault),
        user=user,
        credentials={var: ("set" if os.environ.get(var) else "not set")
                     for var in CREDENTIAL_VARS},
        checks=checks,
        ui=ui_hint(settings),
    )


def mlflow_ui_command(settings: Settings, *, host: str = "127.0.0.1", port: int = 5000
                      ) -> list[str] | None:
    """The command that opens MLflow's UI on the embedded registry (its SQLite database and
    artifact folder), run with this Python; None on a tracking server, whose UI it serves."""
    if not settings.is_embedded:
        return None
    tracking = settings.resolved_tracking_uri
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking]
    registry = settings.registry_uri
    if registry and registry != tracking:
        command += ["--registry-store-uri", registry]
    artifacts = settings.resolved_artifact_location
    if artifacts:
        command += ["--default-artifact-root", artifacts]
    return [*command, "--host", host, "--port", str(port), "--workers", "1"]


def ui_hint(settings: Settings) -> str:
    """``doctor``'s line on MLflow's UI: the one-liner for the embedded registry, else the
    tracking server's address (credentials taken out)."""
    command = mlflow_ui_command(settings)
    if command is None:
        return f"open {redact(settings.resolved_tracking_uri)} (the tracking server serves it)"
    return "modelyard mlflow-ui  (or: " + shlex.join(["mlflow", *command[3:]]) + ")"


_HOW = {
    "server-basic-auth": "authenticated by the tracking server (basic auth)",
    "server-token": "authenticated by the tracking server (token)",
    "os-user": "the OS user (not authenticated)",
    "asserted": "asserted by MODELYARD_USER / the user setting (not authenticated)",
}


def _check_binding(ctx: Context) -> Check:
    """Whether the registry's models were written with this vault (``trail/binding.py``)."""
    from modelyard.trail.binding import Binding

    binding = Binding(ctx)
    try:
        problems = binding.problems((m.name, m.tags) for m in ctx.tracking.list_models())
    except YardError as exc:
        return Check("registry+vault", binding.location, False, exc.message)
    if not problems:
        return Check("registry+vault", binding.location, True, "the registry's models were "
                     "written with this vault (or record none)")
    more = f" (and {len(problems) - 1} more model(s))" if len(problems) > 1 else ""
    return Check("registry+vault", binding.location, False, problems[0] + more)


def _check_identity(ctx: Context) -> tuple[str, Check]:
    """Which identity modelyard acts as, and how it was established."""
    try:
        identity = ctx.identity
    except YardError as exc:
        return "?", Check("identity", "?", False, exc.message)
    how = _HOW[identity.source] + (", admin" if identity.is_admin else "")
    return identity.user, Check("identity", identity.user, True, how)


def _check_s3_endpoint(endpoint: str | None) -> dict[str, Any]:
    from modelyard.store.s3 import S3Store

    store = S3Store("modelyard-doctor-probe", "", endpoint)
    try:
        store.check_endpoint()
        return {"ok": True, "detail": "endpoint answers"}
    except YardError as exc:
        return {"ok": False, "detail": exc.message}
