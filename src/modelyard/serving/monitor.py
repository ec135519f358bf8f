"""Monitoring verbs over the capture log: per-version health and drift, and the A/B report.

Both read the sampled records servers wrote to ``capture/NAME/date=.../*.jsonl.gz`` in the
vault, so they see every replica's traffic, and neither needs a running server; each report
counts the records per replica (``replicas``), so a replica whose files are missing shows.

>>> report = monitor(yard, "churn", since="1h")
>>> [(v.semver, v.count, v.p99_ms, v.drifted) for v in report.versions]
[('1.2.0', 1841, 12.4, ['charges'])]
>>> ab_report(yard, "churn").recommendation
'promote'
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelyard.core.profile import DRIFT_THRESHOLD, drifted, psi
from modelyard.errors import InvalidInput, StorageError
from modelyard.serving.capture import MASK, read_records
from modelyard.serving.routing import parse_duration
from modelyard.serving.source import profile_key, store_of

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.serving.source import Registry
    from modelyard.store.storage import ObjectStore

MIN_DRIFT_ROWS = 50
SHADOW = "shadow"


def parse_since(since: str | float | datetime | None, now: float | None = None) -> float:
    """Epoch seconds from ``1h`` / ``30m`` / ``7d`` (ago), an ISO date-time, or a number."""
    now = time.time() if now is None else now
    if since is None:
        return now - 3600.0
    if isinstance(since, datetime):
        moment = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(since, (int, float)):
        return float(since)
    text = str(since).strip()
    try:
        return now - parse_duration(text)
    except InvalidInput:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"invalid --since {since!r}: use a duration (30m, 1h, 7d) or an ISO date-time"
        ) from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value, 3)


# -- monitor ------------------------------------------------------------------------------
@dataclass
class VersionHealth:
    """One version's traffic in the window (shadow calls are reported apart)."""

    version: int
    semver: str
    shadow: bool
    arms: dict[str, int]
    count: int
    errors: int
    error_rate: float
    rows: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_confidence: float | None
    drift: dict[str, float] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    drift_note: str | None = None


@dataclass
class MonitorReport:
    model: str
    since: str
    until: str
    records: int
    threshold: float
    versions: list[VersionHealth]
    replicas: dict[str, int] = field(default_factory=dict)  # prediction records per replica

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitor(
    yard: Registry,
    name: str,
    since: str | float | datetime | None = "1h",
    *,
    until: str | float | datetime | None = None,
    threshold: float = DRIFT_THRESHOLD,
) -> MonitorReport:
    """Per version: count, error rate, latency percentiles, mean confidence and drift.

    Drift is PSI per feature of the captured inputs against the training profile stored at
    ``profiles/NAME/VERSION.json``; columns above ``threshold`` are listed in ``drifted``.

    >>> monitor(yard, "churn", since="24h").versions[0].error_rate
    0.002
    """
    start = parse_since(since)
    end = time.time() + 1 if until is None else parse_since(until)
    store = store_of(yard)
    groups: dict[tuple[int, bool], list[dict[str, Any]]] = defaultdict(list)
    replicas: dict[str, int] = defaultdict(int)
    total = 0
    for record in read_records(store, name, since=start, until=end):
        if record.get("kind") != "prediction" or record.get("version") is None:
            continue
        total += 1
        replicas[str(record.get("replica") or "-")] += 1
        groups[(int(record["version"]), bool(record.get("shadow")))].append(record)
    versions = [
        _version_health(store, name, version, shadow, records, threshold)
        for (version, shadow), records in sorted(groups.items())
    ]
    return MonitorReport(name, _iso(start), _iso(end), total, threshold, versions,
                         dict(sorted(replicas.items())))


def _version_health(store: ObjectStore, name: str, version: int, shadow: bool,
                    records: list[dict[str, Any]], threshold: float) -> VersionHealth:
    arms: dict[str, int] = defaultdict(int)
    latencies: list[float] = []
    confidences: list[float] = []
    errors = rows = 0
    for record in records:
        arms[str(record.get("arm", ""))] += 1
        if record.get("latency_ms") is not None:
            latencies.append(float(record["latency_ms"]))
        if record.get("error"):
            errors += 1
            continue
        outputs = record.get("outputs") or []
        rows += len(outputs) if isinstance(outputs, list) else 1
        confidences.extend(float(c) for c in record.get("confidence") or [])
    health = VersionHealth(
        version=version, semver=str(records[-1].get("semver") or ""), shadow=shadow,
        arms=dict(arms), count=len(records), errors=errors,
        error_rate=round(errors / len(records), 6) if records else 0.0, rows=rows,
        p50_ms=_percentile(latencies, 0.50), p95_ms=_percentile(latencies, 0.95),
        p99_ms=_percentile(latencies, 0.99),
        mean_confidence=round(sum(confidences) / len(confidences), 6) if confidences else None,
    )
    _drift(store, name, version, records, threshold, health)
    return health


def _drift(store: ObjectStore, name: str, version: int, records: list[dict[str, Any]],
           threshold: float, health: VersionHealth) -> None:
    try:
        profile = json.loads(store.get_bytes(profile_key(name, version)))
    except StorageError:
        health.drift_note = "no training profile"
        return
    except ValueError:
        health.drift_note = "the training profile is unreadable"
        return
    frame = _inputs_frame(records)
    if frame is None or len(frame) < MIN_DRIFT_ROWS:
        rows = 0 if frame is None else len(frame)
        health.drift_note = f"too few captured rows for drift ({rows} < {MIN_DRIFT_ROWS})"
        return
    masked = [c for c in frame.columns if (frame[c] == MASK).any()]
    if masked:
        frame = frame.drop(columns=masked)
        health.drift_note = f"masked columns not compared: {', '.join(map(str, masked))}"
    health.drift = psi(profile, frame)
    health.drifted = drifted(health.drift, threshold)


def _inputs_frame(records: Iterable[dict[str, Any]]) -> Any:
    import pandas as pd

    parts = []
    for record in records:
        inputs = record.get("inputs")
        if record.get("error") or not isinstance(inputs, dict) or not inputs.get("data"):
            continue
        parts.append(pd.DataFrame(inputs["data"], columns=inputs.get("columns")))
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True)


# -- A/B report ---------------------------------------------------------------------------
@dataclass
class ArmResult:
    """One arm's traffic and its feedback metric with a 95% confidence interval."""

    arm: str
    versions: list[str]
    shadow: bool
    requests: int
    share: float
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    labelled: int
    metric: str | None
    value: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass
class Comparison:
    """A challenger against the control: difference, test statistic and p-value."""

    arm: str
    control: str
    test: str
    difference: float
    statistic: float
    p_value: float
    significant: bool
    better: bool


@dataclass
class ABReport:
    model: str
    since: str
    until: str
    control: str | None
    metric: str | None
    arms: list[ArmResult]
    comparisons: list[Comparison]
    recommendation: str  # promote | keep | inconclusive
    promote: str | None  # the arm to promote, when the recommendation is promote
    reason: str
    replicas: dict[str, int] = field(default_factory=dict)  # prediction records per replica

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ab_report(
    yard: Registry,
    name: str,
    since: str | float | datetime | None = "7d",
    *,
    until: str | float | datetime | None = None,
    alpha: float = 0.05,
    min_labelled: int = 30,
) -> ABReport:
    """Per arm: traffic, latency and the feedback metric; a test against the control arm.

    Classification feedback (``label``) gives accuracy, compared with a two-proportion z-test
    and Wilson intervals; regression feedback (``value``) gives the mean absolute error,
    compared with Welch's test (normal approximation). The control is the ``production`` arm
    (else the busiest). The recommendation is ``promote`` (a challenger is significantly
    better), ``keep`` (the control is significantly better than every challenger) or
    ``inconclusive``.

    >>> ab_report(yard, "churn", since="7d").reason
    'staging: accuracy 0.91 vs 0.86, p=0.003'
    """
    start = parse_since(since)
    end = time.time() + 1 if until is None else parse_since(until)
    predictions: dict[tuple[str, bool], dict[str, Any]] = {}
    feedback: list[dict[str, Any]] = []
    per_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    replicas: dict[str, int] = defaultdict(int)
    for record in read_records(store_of(yard), name, since=start, until=end):
        kind = record.get("kind")
        if kind == "prediction":
            replicas[str(record.get("replica") or "-")] += 1
            arm = SHADOW if record.get("shadow") else str(record.get("arm", ""))
            per_arm[arm].append(record)
            if not record.get("error"):
                predictions[(str(record.get("request_id")), arm == SHADOW)] = record
        elif kind == "feedback":
            feedback.append(record)
    outcomes, metric = _join(feedback, predictions)
    served = sum(len(v) for k, v in per_arm.items() if k != SHADOW) or 1
    arms = sorted(set(per_arm) | set(outcomes))
    results = [_arm_result(arm, per_arm.get(arm, []), outcomes.get(arm, []), metric, served)
               for arm in arms]
    real = [r for r in results if not r.shadow]
    control = next((r.arm for r in real if r.arm == "production"), None) or (
        max(real, key=lambda r: r.requests).arm if real else None)
    comparisons = []
    if control is not None and metric is not None:
        for result in results:
            if result.arm != control:
                comparisons.append(_compare(result.arm, control, outcomes, metric, alpha,
                                            len(results) - 1))
    recommendation, promote, reason = _recommend(results, comparisons, control, metric,
                                                 min_labelled)
    return ABReport(name, _iso(start), _iso(end), control, metric, results, comparisons,
                    recommendation, promote, reason, dict(sorted(replicas.items())))


def _join(feedback: list[dict[str, Any]], predictions: dict[tuple[str, bool], dict[str, Any]]
          ) -> tuple[dict[str, list[float]], str | None]:
    """Per arm, one outcome per labelled row: 1/0 correct (accuracy) or the absolute error."""
    outcomes: dict[str, list[float]] = defaultdict(list)
    metric: str | None = None
    for item in feedback:
        request_id = str(item.get("request_id"))
        regression = "value" in item and "label" not in item
        truth = item.get("value") if regression else item.get("label")
        metric = metric or ("mae" if regression else "accuracy")
        candidates = []
        main = predictions.get((request_id, False))
        if main is not None:
            candidates.append((str(main.get("arm", "")), main.get("outputs")))
        elif item.get("arm") is not None and item.get("outputs") is not None:
            candidates.append((str(item["arm"]), item["outputs"]))  # answered, not sampled
        shadow = predictions.get((request_id, True))
        if shadow is not None:
            candidates.append((SHADOW, shadow.get("outputs")))
        for arm, outputs in candidates:
            outcomes[arm].extend(_score(outputs, truth, regression))
    return dict(outcomes), metric


def _score(outputs: Any, truth: Any, regression: bool) -> list[float]:
    predicted = outputs if isinstance(outputs, list) else [outputs]
    truths = truth if isinstance(truth, list) else [truth] * len(predicted)
    scores = []
    for p, t in zip(predicted, truths, strict=False):
        if regression:
            try:
                scores.append(abs(float(p) - float(t)))
            except (TypeError, ValueError):
                continue
        else:
            scores.append(1.0 if p == t or str(p) == str(t) else 0.0)
    return scores


def _arm_result(arm: str, records: list[dict[str, Any]], outcomes: list[float],
                metric: str | None, served: int) -> ArmResult:
    latencies = [float(r["latency_ms"]) for r in records if r.get("latency_ms") is not None]
    versions = sorted({str(r.get("semver") or r.get("version")) for r in records})
    n = len(outcomes)
    value = ci_low = ci_high = None
    if n and metric == "accuracy":
        value = sum(outcomes) / n
        ci_low, ci_high = _wilson(sum(outcomes), n)
    elif n and metric == "mae":
        value = sum(outcomes) / n
        half = 1.96 * math.sqrt(_variance(outcomes) / n) if n > 1 else math.inf
        ci_low, ci_high = value - half, value + half
    shadow = arm == SHADOW
    return ArmResult(
        arm=arm, versions=versions, shadow=shadow, requests=len(records),
        share=0.0 if shadow else round(len(records) / served, 6),
        errors=sum(1 for r in records if r.get("error")),
        p50_ms=_percentile(latencies, 0.5), p95_ms=_percentile(latencies, 0.95), labelled=n,
        metric=metric if n else None, value=_round(value), ci_low=_round(ci_low),
        ci_high=_round(ci_high),
    )


def _round(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value, 6)


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _p_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def _compare(arm: str, control: str, outcomes: dict[str, list[float]], metric: str,
             alpha: float, tests: int) -> Comparison:
    a, b = outcomes.get(arm, []), outcomes.get(control, [])
    if not a or not b:
        return Comparison(arm, control, "none", 0.0, 0.0, 1.0, False, False)
    if metric == "accuracy":
        pa, pb = sum(a) / len(a), sum(b) / len(b)
        pooled = (sum(a) + sum(b)) / (len(a) + len(b))
        se = math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
        z = 0.0 if se == 0 else (pa - pb) / se
        difference, better, test = pa - pb, pa > pb, "two-proportion z-test"
    else:
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        se = math.sqrt((_variance(a) / len(a) if len(a) > 1 else 0.0)
                       + (_variance(b) / len(b) if len(b) > 1 else 0.0))
        z = 0.0 if se == 0 else (ma - mb) / se
        difference, better, test = ma - mb, ma < mb, "Welch's test (normal approximation)"
    p = _p_two_sided(z) if z else 1.0
    # Bonferroni: several challengers share the false-alarm budget.
    significant = p < alpha / max(1, tests)
    return Comparison(arm, control, test, round(difference, 6), round(z, 4), round(p, 6),
                      significant, better)


def _recommend(results: list[ArmResult], comparisons: list[Comparison], control: str | None,
               metric: str | None, min_labelled: int) -> tuple[str, str | None, str]:
    if control is None or len(results) < 2:
        return "inconclusive", None, "fewer than two arms were captured"
    if metric is None:
        return "inconclusive", None, "no feedback recorded yet (POST /feedback)"
    short = [r.arm for r in results if r.labelled < min_labelled and not r.shadow]
    if short:
        return ("inconclusive", None,
                f"need at least {min_labelled} labelled predictions per arm; short: "
                + ", ".join(short))
    # A shadow joins the comparison only once it has enough labelled predictions of its own.
    enough = {r.arm for r in results if r.labelled >= min_labelled}
    comparisons = [c for c in comparisons if c.arm in enough]
    values = {r.arm: r.value for r in results}
    labels = {r.arm: f"{r.arm} (v{', v'.join(r.versions)})" for r in results}
    winners = [c for c in comparisons if c.significant and c.better]
    if winners:
        best = (max if metric == "accuracy" else min)(
            winners, key=lambda c: values[c.arm] or 0.0)
        return ("promote", best.arm,
                f"{labels[best.arm]}: {metric} {values[best.arm]:.4g} vs "
                f"{values[control]:.4g} for {labels[control]}, p={best.p_value:.3g}")
    if comparisons and all(c.significant and not c.better for c in comparisons):
        return ("keep", None, f"{control} is significantly better than every challenger")
    worst_p = min((c.p_value for c in comparisons), default=1.0)
    return ("inconclusive", None,
            f"no significant difference in {metric} (smallest p={worst_p:.3g})")
