"""The serving page: per version traffic, errors and latency over time, the A/B arms as
``ab report`` computes them, drift per feature against the training profile, and shadow
calls that disagree with the answer served. Reads the capture log in the vault."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput, YardError
from modelyard.ui.charts import line_chart
from modelyard.ui.paging import quiet

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.ui.paging import MlflowLinks
    from modelyard.yard import Yard

BUCKETS = 12  # points of each chart over the window
MAX_WINDOW_S = 31 * 86400


def serving(yard: Yard, links: MlflowLinks, name: str, since: str) -> dict[str, Any]:
    from modelyard.serving.capture import read_records
    from modelyard.serving.monitor import parse_since

    start = parse_since(since)  # InvalidInput (400) for a window it cannot read
    end = time.time() + 1
    if end - start > MAX_WINDOW_S:
        raise InvalidInput("since: at most 31 days back")
    span = max(60.0, end - start)
    buckets = BUCKETS
    width = span / buckets
    per: dict[tuple[int, bool], list[dict[str, Any]]] = defaultdict(list)
    for record in read_records(yard.vault.store, name, since=start, until=end):
        if record.get("kind") == "prediction" and record.get("version") is not None:
            per[(int(record["version"]), bool(record.get("shadow")))].append(record)
    shape = "%H:%M" if span <= 86400 else "%m-%d %H:%M" if span <= 3 * 86400 else "%m-%d"
    labels = [datetime.fromtimestamp(start + width * (i + 1), tz=timezone.utc)
              .strftime(shape) for i in range(buckets)]
    requests: dict[str, list[tuple[str, float | None]]] = {}
    errors: dict[str, list[tuple[str, float | None]]] = {}
    p50: dict[str, list[tuple[str, float | None]]] = {}
    p99: dict[str, list[tuple[str, float | None]]] = {}
    versions = []
    for (number, shadow), records in sorted(per.items()):
        semver = str(records[-1].get("semver") or number)
        key = f"v{semver}" + (" shadow" if shadow else "")
        slots: list[list[dict[str, Any]]] = [[] for _ in range(buckets)]
        for record in records:
            index = min(buckets - 1, max(0, int((float(record.get("ts", start)) - start)
                                                // width)))
            slots[index].append(record)
        requests[key] = [(labels[i], float(len(s))) for i, s in enumerate(slots)]
        errors[key] = [(labels[i], float(sum(1 for r in s if r.get("error"))))
                       for i, s in enumerate(slots)]
        p50[key] = [(labels[i], _pct(s, 0.5)) for i, s in enumerate(slots)]
        p99[key] = [(labels[i], _pct(s, 0.99)) for i, s in enumerate(slots)]
        failed = sum(1 for r in records if r.get("error"))
        versions.append({"version": number, "semver": semver, "shadow": shadow,
                         "requests": len(records), "errors": failed,
                         "error_rate": failed / len(records) if records else 0.0,
                         "p50": _pct(records, 0.5), "p99": _pct(records, 0.99),
                         "arms": sorted({str(r.get("arm")) for r in records}),
                         "mlflow": links.version(name, number)})
    report = None
    report_error = None
    drift: list[dict[str, Any]] = []
    if per:
        from modelyard.serving.monitor import ab_report, monitor

        try:
            report = ab_report(yard, name, start)
        except (YardError, ImportError, ValueError) as exc:
            report_error = getattr(exc, "message", str(exc))[:300]
        with contextlib.suppress(YardError, ImportError, ValueError):
            health = monitor(yard, name, start)
            drift = [{"semver": v.semver, "shadow": v.shadow, "psi": v.drift,
                      "drifted": v.drifted, "note": v.drift_note}
                     for v in health.versions]
    return {"name": name, "since": since, "versions": versions,
            "charts": {"requests": line_chart(requests, title="requests"),
                       "errors": line_chart(errors, title="errors"),
                       "p50": line_chart(p50, title="p50 latency ms", y_label="ms"),
                       "p99": line_chart(p99, title="p99 latency ms", y_label="ms")},
            "ab": report, "ab_error": report_error, "drift": drift,
            "shadow": _disagreements(per),
            "mlflow": links.model(name)}


def served(yard: Yard, name: str, since_s: float) -> dict[int, dict[str, Any]]:
    """Per version: requests, errors and latencies captured since ``since_s``."""
    from modelyard.serving.capture import read_records

    found: dict[int, dict[str, Any]] = {}
    for record in quiet(lambda: list(read_records(yard.vault.store, name,
                                                   since=since_s)), []):
        if record.get("kind") != "prediction" or record.get("version") is None:
            continue
        row = found.setdefault(int(record["version"]), {
            "semver": str(record.get("semver") or ""), "requests": 0, "errors": 0,
            "arms": set()})
        row["requests"] += 1
        row["errors"] += 1 if record.get("error") else 0
        row["arms"].add(("shadow " if record.get("shadow") else "") + str(record.get("arm")))
    return found


def _pct(records: list[dict[str, Any]], q: float) -> float | None:
    values = sorted(float(r["latency_ms"]) for r in records if r.get("latency_ms") is not None)
    if not values:
        return None
    rank = (len(values) - 1) * q
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (rank - low), 3)


def _disagreements(per: Mapping[tuple[int, bool], list[dict[str, Any]]]
                   ) -> list[dict[str, Any]]:
    """Shadow calls whose outputs differ from the answer served for the same request."""
    served: dict[str, Any] = {}
    for (_, shadow), records in per.items():
        if not shadow:
            served.update({str(r.get("request_id")): r.get("outputs") for r in records
                           if r.get("request_id") and not r.get("error")})
    found = []
    for (number, shadow), records in sorted(per.items()):
        if not shadow:
            continue
        paired = [r for r in records if str(r.get("request_id")) in served and not r.get("error")]
        differ = [r for r in paired if r.get("outputs") != served[str(r.get("request_id"))]]
        found.append({"version": number, "semver": str(records[-1].get("semver") or number),
                      "paired": len(paired), "differ": len(differ),
                      "rate": len(differ) / len(paired) if paired else None})
    return found
