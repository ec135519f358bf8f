"""Drill scenarios and the report of one drill.

Each drill runs four timed phases: inject -> detect -> recover -> verify. Detection and
recovery are ``recover``'s own (``recovery.py``): a drill never tells them what it broke.
MTTR is detect + recover + verify.

>>> [s.name for s in SCENARIOS][:3]
['data-noise', 'data-missing', 'data-duplicates']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EXPERIMENT = "modelyard-drills"
SANDBOX_ROWS = 4000  # the generated pipeline's rows: small enough to train in seconds
SANDBOX_TREES = 20
STAGES = ("prepare", "train", "evaluate")


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # data | model | registry | storage | pipeline | promotion
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCENARIOS = [
    Scenario("data-noise", "data", "Gaussian noise added to the numeric columns of the "
             "production version's DVC-tracked training data"),
    Scenario("data-missing", "data", "30% of the values of three numeric columns removed"),
    Scenario("data-duplicates", "data", "half of the training rows duplicated"),
    Scenario("model-corruption", "model", "bytes of the production version's model file "
             "flipped in the artifact store"),
    Scenario("model-deletion", "registry", "the production version deleted from the registry"),
    Scenario("artifact-loss", "model", "the production version's files deleted from the "
             "artifact store and the local cache"),
    Scenario("pipeline-failure", "pipeline", "a DVC stage (--stage, default train) fails "
             "midway, leaving a partial output"),
    Scenario("registry-loss", "registry", "every registered model deleted from the registry"),
    Scenario("storage-outage", "storage", "the artifact store stops answering while the "
             "production model is loaded"),
    Scenario("bad-promotion", "promotion", "a clearly worse version forced into production"),
]
BY_NAME = {s.name: s for s in SCENARIOS}
# The order --all reports progress in; each scenario starts from the same sandbox state
# (``Sandbox.freeze`` / ``reset``), so the order changes no result.
ALL_ORDER = ["model-corruption", "artifact-loss", "storage-outage", "bad-promotion",
              "data-noise", "data-missing", "data-duplicates", "pipeline-failure",
              "model-deletion", "registry-loss"]


@dataclass
class DrillReport:
    """One drill: what was broken, what saw it, what put it back, and how long it took."""

    scenario: str
    model: str
    sandbox: bool
    injected: str
    detected: bool = False
    detected_by: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    layer: str | None = None
    via: str | None = None
    recovered: bool = False
    verified: bool = False
    verification: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    stage: str | None = None
    run_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def mttr(self) -> float:
        return sum(self.phases.get(p, 0.0) for p in ("detect", "recover", "verify"))

    @property
    def total(self) -> float:
        return self.mttr + self.phases.get("inject", 0.0)

    @property
    def ok(self) -> bool:
        return self.detected and self.recovered and self.verified

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(mttr=round(self.mttr, 4), total=round(self.total, 4), ok=self.ok)
        data["phases"] = {k: round(v, 4) for k, v in self.phases.items()}
        return data


