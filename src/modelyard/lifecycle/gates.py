"""Gates: the checks a promotion must pass. They only evaluate; the caller records.

A gate is a metric threshold (``accuracy >= 0.85``), a required tag (``validation=passed``),
"beat production on METRIC by MARGIN", or a holdout set both versions are scored on.
"""

from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from modelyard.backend.tracking import Tracking
from modelyard.core.names import T_MANIFEST, T_SEMVER, T_SIGNER
from modelyard.core.records import VersionRecord
from modelyard.core.settings import Settings, parse_condition
from modelyard.errors import InvalidInput
from modelyard.store.signatures import Signatures

_BEAT = re.compile(
    r"^\s*beats?\s+(?:production\s+)?(?:on\s+)?([\w.\-]+)(?:\s+by\s+(-?[0-9.eE+-]+))?\s*$"
)
_TAG_GATE = re.compile(r"^\s*([^=<>!\s]+)\s*=\s*([^=].*?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq,
}
GateResult = dict[str, Any]
LoadFn = Callable[[str, int], Any]  # (model name, version number) -> the model object


def describe(result: GateResult) -> str:
    """The one rendering of a gate's verdict: ``gate 'accuracy >= 0.9' failed: accuracy =
    0.85``. The gate's text states the condition; ``detail`` only says what was found, so
    the condition is never told twice (promotion's refusal and audit reason, detection's
    finding and ``promote``'s lines all print this)."""
    verdict = "passed" if result.get("passed") else "failed"
    return f"gate '{result.get('gate')}' {verdict}: {result.get('detail')}"


@dataclass
class GateSpec:
    """One gate: a metric threshold, a required tag, or 'beat production on M by X'."""

    kind: str  # "metric" | "tag" | "beat" | "signature"
    text: str
    metric: str = ""
    op: str = ""
    number: float = 0.0
    key: str = ""
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> GateSpec:
        beat = _BEAT.match(text)
        if beat:
            margin = float(beat.group(2)) if beat.group(2) else 0.0
            return cls("beat", text.strip(), metric=beat.group(1), number=margin)
        with contextlib.suppress(ValueError):
            metric, op, number = parse_condition(text)
            return cls("metric", text.strip(), metric=metric, op=op, number=number)
        tag = _TAG_GATE.match(text)
        if tag:
            return cls("tag", text.strip(), key=tag.group(1), value=tag.group(2))
        raise InvalidInput(
            f"gate {text!r} not understood: use 'METRIC OP NUMBER' (accuracy >= 0.85), "
            "'KEY=VALUE' (a required tag) or 'beat METRIC [by MARGIN]'"
        )


@dataclass
class Holdout:
    """A dataset both versions are scored on; the challenger must score higher."""

    X: Any
    y: Any
    scorer: Callable[[Any, Any], float] | None = None
    label: str = "accuracy"


def as_holdout(holdout: Holdout | tuple[Any, Any] | None,
                scorer: Callable[[Any, Any], float] | None) -> Holdout | None:
    if holdout is None:
        return None
    if isinstance(holdout, Holdout):
        return holdout
    try:
        features, target = holdout
    except (TypeError, ValueError):
        raise InvalidInput("holdout must be (X, y)") from None
    label = getattr(scorer, "__name__", "score") if scorer else "accuracy"
    return Holdout(features, target, scorer, label)


class Gates:
    """Evaluates gates against the registry; ``load`` gives a version's model (holdout)."""

    def __init__(self, settings: Settings, tracking: Tracking, load: LoadFn,
                 signatures: Signatures | None = None) -> None:
        self.settings = settings
        self.tracking = tracking
        self.load = load
        self.signatures = signatures

    def specs(self, stage: str, gates: Iterable[str] | None) -> list[GateSpec]:
        specs = [GateSpec.parse(g) for g in (gates or [])]
        if stage in ("staging", "production"):
            # The policy's gates guard every promotion into a serving stage.
            specs += [GateSpec.parse(g) for g in self.settings.gates]
            specs += [GateSpec("tag", f"{k}={v}", key=k, value=v)
                      for k, v in self.settings.required_tags.items()]
        if stage == "production":
            metric = self.settings.beat_production_metric
            if metric:
                margin = self.settings.beat_production_margin
                specs.append(GateSpec("beat", f"beat {metric} by {margin:g}", metric=metric,
                                      number=margin))
        if stage in self.settings.require_signature:
            # require_signature: only a version signed by a trusted key enters the stage.
            specs.append(GateSpec("signature", "signed by a trusted key"))
        return specs

    def policy_verdicts(self, name: str, record: VersionRecord, stage: str
                        ) -> list[GateResult]:
        """The policy's gates for ``stage`` on a version (no extra gates, no holdout): how
        ``recover`` checks that a stage holder still deserves its stage."""
        return self.evaluate(name, record, stage, self.specs(stage, None), None)

    def _run_metrics(self, record: VersionRecord) -> dict[str, float]:
        if not record.run_id:
            return {}
        return {k: float(v) for k, v in self.tracking.get_run(record.run_id)["metrics"].items()}

    def evaluate(
        self,
        name: str,
        record: VersionRecord,
        stage: str,
        specs: list[GateSpec],
        holdout: Holdout | None,
    ) -> list[dict[str, Any]]:
        """Every gate's inputs and verdict. Reads the registry; changes nothing."""
        results: list[dict[str, Any]] = []
        metrics: dict[str, float] | None = None
        incumbent: int | str | None = "unread"
        for spec in specs:
            if spec.kind == "metric":
                metrics = self._run_metrics(record) if metrics is None else metrics
                value = metrics.get(spec.metric)
                passed = value is not None and _OPS[spec.op](value, spec.number)
                detail = (f"{spec.metric} = {value:g}" if value is not None
                          else f"{spec.metric} was not logged")
                results.append({"gate": spec.text, "kind": "metric", "passed": passed,
                                "inputs": {"metric": spec.metric, "value": value,
                                           "op": spec.op, "threshold": spec.number},
                                "detail": detail})
            elif spec.kind == "tag":
                actual = record.tags.get(spec.key)
                passed = actual == spec.value
                results.append({"gate": spec.text, "kind": "tag", "passed": passed,
                                "inputs": {"tag": spec.key, "expected": spec.value,
                                           "actual": actual},
                                "detail": f"tag {spec.key} is {actual!r}"})
            elif spec.kind == "signature":
                results.append(self._signature_gate(name, record, spec))
            else:
                if incumbent == "unread":
                    incumbent = self.tracking.alias_holder(name, "production")
                results.append(self._beat_gate(name, record, spec, incumbent, metrics))
        if holdout is not None:
            if incumbent == "unread":
                incumbent = self.tracking.alias_holder(name, "production")
            results.append(self._holdout_gate(name, record, holdout, incumbent))
        return results

    def _signature_gate(self, name: str, record: VersionRecord, spec: GateSpec
                        ) -> dict[str, Any]:
        if self.signatures is None:  # pragma: no cover - the lifecycle always hands it in
            raise InvalidInput("require_signature needs the vault's signatures")
        state = self.signatures.state_of(name, record.version, record.tags.get(T_MANIFEST),
                                         record.tags.get(T_SIGNER),
                                         record.tags.get(T_SEMVER) or "?")
        detail = ("it is unsigned (sign it with `modelyard sign`)" if state.state == "unsigned"
                  else state.describe())
        return {"gate": spec.text, "kind": "signature", "passed": state.trusted,
                "inputs": {"state": state.state, "signer": state.signer,
                           "retired": state.retired},
                "detail": detail}

    def _beat_gate(self, name: str, record: VersionRecord, spec: GateSpec,
                   holder: int | str | None, metrics: dict[str, float] | None
                   ) -> dict[str, Any]:
        inputs: dict[str, Any] = {"metric": spec.metric, "margin": spec.number,
                                  "production_version": holder}
        if not isinstance(holder, int) or holder == record.version:
            return {"gate": spec.text, "kind": "beat", "passed": True, "inputs": inputs,
                    "detail": "no other production holder to beat"}
        mine = (metrics or self._run_metrics(record)).get(spec.metric)
        theirs = self._run_metrics(self.tracking.get_version(name, holder)).get(spec.metric)
        inputs.update({"challenger": mine, "production": theirs})
        if mine is None or theirs is None:
            missing = "this version" if mine is None else f"production (#{holder})"
            return {"gate": spec.text, "kind": "beat", "passed": False, "inputs": inputs,
                    "detail": f"{spec.metric} was not logged for {missing}"}
        passed = mine - theirs >= spec.number
        return {"gate": spec.text, "kind": "beat", "passed": passed, "inputs": inputs,
                "detail": f"{spec.metric} {mine:g} vs production #{holder} {theirs:g}"}

    def _holdout_gate(self, name: str, record: VersionRecord, holdout: Holdout,
                      holder: int | str | None) -> dict[str, Any]:
        def score(version: int) -> float:
            model = self.load(name, version)
            predicted = model.predict(holdout.X)
            if holdout.scorer is not None:
                return float(holdout.scorer(holdout.y, predicted))
            truth = list(holdout.y)
            hits = sum(1 for a, b in zip(truth, list(predicted), strict=True) if a == b)
            return hits / len(truth) if truth else 0.0

        rows = len(holdout.y)
        gate = f"holdout {holdout.label}"
        inputs: dict[str, Any] = {"rows": rows, "scorer": holdout.label,
                                  "production_version": holder}
        if rows == 0:
            raise InvalidInput("the holdout dataset is empty")
        challenger = score(record.version)
        inputs["challenger"] = challenger
        if not isinstance(holder, int) or holder == record.version:
            return {"gate": gate, "kind": "holdout", "passed": True, "inputs": inputs,
                    "detail": f"{holdout.label} {challenger:g} (no production holder to beat)"}
        incumbent = score(holder)
        inputs["production"] = incumbent
        return {"gate": gate, "kind": "holdout", "passed": challenger > incumbent,
                "inputs": inputs,
                "detail": f"{holdout.label} {challenger:g} vs production #{holder} "
                          f"{incumbent:g} on {rows} rows"}

