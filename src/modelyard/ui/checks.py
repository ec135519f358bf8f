"""The incidents page's checks that need no model: the vault and backup store answering, the
newest drill as a health check, and MTTR per scenario over time (chart and table)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from modelyard.errors import YardError
from modelyard.ui.charts import SvgChart, line_chart
from modelyard.ui.paging import age_s

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.yard import Yard

DRILL_MAX_AGE_S = 8 * 24 * 3600  # as `modelyard health` (a weekly drill, with a day's grace)


def drill_check(drills: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest drill as one health check (degraded when it failed or is over a week old)."""
    if not drills:
        return {"check": "drills", "target": "-", "level": "warn",
                "detail": "no drill has run yet (`modelyard drill run --all`)"}
    newest = drills[-1]
    age = age_s(str(newest.get("at", "")))
    level = "ok" if newest.get("ok") and age is not None and age <= DRILL_MAX_AGE_S \
        else "degraded"
    return {"check": "drills", "target": str(newest.get("scenario", "?")), "level": level,
            "detail": f"newest drill {newest.get('scenario')} "
                      f"{'passed' if newest.get('ok') else 'FAILED'}", "age": age}


def mttr_summary(drills: list[dict[str, Any]]) -> tuple[SvgChart, list[dict[str, Any]]]:
    """(the MTTR chart per scenario, one row per scenario: runs, median, last, layers)."""
    by_scenario: dict[str, list[tuple[str, float | None]]] = defaultdict(list)
    for drill in drills:
        mttr = drill.get("mttr")
        by_scenario[str(drill.get("scenario", "?"))].append(
            (str(drill.get("at", ""))[5:16].replace("T", " "),
             float(mttr) if isinstance(mttr, (int, float)) else None))
    chart = line_chart(dict(by_scenario), title="MTTR per scenario (s)", y_label="MTTR s")
    per_scenario: list[dict[str, Any]] = []
    for scenario, points in sorted(by_scenario.items()):
        values = sorted(v for _, v in points if v is not None)
        layers = sorted({str(d.get("layer") or "none") for d in drills
                         if d.get("scenario") == scenario})
        per_scenario.append({"scenario": scenario, "runs": len(points),
                             "median": statistics.median(values) if values else None,
                             "last": values and points[-1][1], "layers": layers})
    return chart, per_scenario


def store_checks(yard: Yard) -> list[dict[str, Any]]:
    """The vault (critical when silent) and the backup store (degraded) answering."""
    checks: list[dict[str, Any]] = []
    for label, vault in (("vault", lambda: yard.vault), ("backup store", lambda: yard.ctx.backup)):
        try:
            opened = vault()
            if opened is None:
                checks.append({"check": label, "target": "-", "level": "warn",
                               "detail": "no backup store configured"})
                continue
            opened.store.check()
            checks.append({"check": label, "target": getattr(opened.store, "url", label),
                           "level": "ok", "detail": "answers"})
        except YardError as exc:
            checks.append({"check": label, "target": "-",
                           "level": "critical" if label == "vault" else "degraded",
                           "detail": exc.message})
    return checks
