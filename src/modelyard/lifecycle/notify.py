"""Signed webhooks for stage changes (promotion, approval, rollback).

Each configured URL gets a JSON POST whose body is signed with HMAC-SHA256 using
``webhook_secret``: header ``X-Modelyard-Signature: sha256=<hex>``. A receiver checks it with
``hmac.compare_digest(expected, header)``. A failing webhook never blocks or undoes the
change: it is retried a few times with backoff and the failure is returned to the caller.
Webhook URLs often carry tokens, so results name only their scheme and host.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from modelyard.errors import YardError

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.core.settings import Settings
    from modelyard.trail.audit import AuditEvent, Auditor

log = logging.getLogger("modelyard.notify")

SIGNATURE_HEADER = "X-Modelyard-Signature"
ATTEMPTS = 3
BACKOFF_S = 0.25
TIMEOUT_S = 5.0


def sign(body: bytes, secret: str | None) -> str:
    """The signature header's value for a body."""
    digest = hmac.new((secret or "").encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def safe_url(url: str) -> str:
    """``https://hooks.example.com/T0/B0/secret`` -> ``https://hooks.example.com/...``."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/..."


def post(url: str, payload: dict[str, Any], secret: str | None, *,
         attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S,
         timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """POST one signed payload with retries; never raises."""
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "modelyard",
        SIGNATURE_HEADER: sign(body, secret),
    }
    import urllib.error  # here: a read that sends no webhook never imports urllib.request
    import urllib.request

    error = ""
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                status = int(response.status)
            if 200 <= status < 300:
                return {"url": safe_url(url), "ok": True, "status": status,
                        "attempts": attempt, "error": None}
            error = f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            error = f"{type(exc).__name__}: {reason}"
        log.debug("webhook %s attempt %s failed: %s", safe_url(url), attempt, error)
        if attempt < attempts:
            time.sleep(backoff_s * (2 ** (attempt - 1)))
    return {"url": safe_url(url), "ok": False, "status": None, "attempts": attempts,
            "error": error}


def send_all(urls: list[str], payload: dict[str, Any], secret: str | None
             ) -> list[dict[str, Any]]:
    """Notify every URL; one result per URL."""
    return [post(url, payload, secret) for url in urls]


class Notifier:
    """Sends the configured webhooks for an audit event; records failures in the trail."""

    def __init__(self, settings: Settings, audit: Auditor) -> None:
        self.settings = settings
        self.audit = audit

    def notify(self, name: str, event: AuditEvent) -> list[dict[str, Any]]:
        """Signed webhooks for a stage change; failures are logged and audited, never
        raised."""
        if not self.settings.webhooks:
            return []
        payload = {"event": event.to_dict(), "model": name}
        results = send_all(self.settings.webhooks, payload, self.settings.webhook_secret)
        failed = [r for r in results if not r["ok"]]
        if failed:
            for item in failed:
                log.warning("webhook %s failed after %s attempts: %s", item["url"],
                            item["attempts"], item["error"])
            with contextlib.suppress(YardError):
                self.audit.record(name, "webhook_failed", version=event.version,
                                  semver=event.semver, from_=None, to=None,
                                  reason=f"notification of event {event.seq} failed",
                                  detail={"event": event.seq, "webhooks": failed})
        return results
