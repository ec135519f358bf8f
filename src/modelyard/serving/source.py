"""The one place the serving package calls into modelyard's core.

Everything the server, the monitor and the A/B report need from the registry and the vault
goes through ``ModelSource``, over the small ``Registry`` Protocol below (a ``Yard`` is one):
resolving a reference to a version number (cheaply, for the reload poll), loading a version
after verifying it, and reading or writing objects in the vault's store (capture files,
training profiles). Serving never imports the facade.

>>> source = ModelSource(yard, "churn")
>>> source.holder("production")
3
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.core.names import STAGE_ALIASES, T_COMPILED, T_SCHEMA

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context
    from modelyard.core.entities import LoadedModel, ModelVersion
    from modelyard.store.storage import ObjectStore
    from modelyard.store.vault import Vault


RUNTIMES = ("auto", "pyfunc")


class Holders(Protocol):
    def serving_holder(self, name: str, alias: str, *, follow_unaudited: bool = False
                       ) -> int | None: ...


class Registry(Protocol):
    """What serving needs of a registry (``Yard`` provides it)."""

    @property
    def vault(self) -> Vault: ...

    @property
    def ctx(self) -> Context: ...

    @property
    def governance(self) -> Holders: ...

    def get(self, name: str, ref: str | int | None = "latest", *, full: bool = True
            ) -> ModelVersion: ...

    def load(self, name: str, ref: str | int | None = "production", *, verify: bool = True,
             train: Any = None, purpose: str = "load") -> LoadedModel: ...


@dataclass(frozen=True)
class Column:
    """One input column of a version's signature."""

    name: str
    type: str  # MLflow type name: double, float, long, integer, boolean, string, ...
    required: bool = True


@dataclass
class ServedModel:
    """A verified, deserialised version ready to answer."""

    name: str
    version: int
    semver: str
    stage: str
    manifest_sha256: str
    aliases: list[str]
    model: Any
    columns: list[Column] | None  # None: the version records no input schema
    path: str
    verified: bool
    extra: dict[str, Any] = field(default_factory=dict)
    compiled: Any = None  # compiled.Compiled: the runtime that answers, and why

    @property
    def runtime(self) -> str:
        return "pyfunc" if self.compiled is None else str(self.compiled.runtime)

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version, "semver": self.semver, "stage": self.stage,
            "manifest_sha256": self.manifest_sha256, "verified": self.verified,
            "runtime": self.runtime,
        }


def columns_from_schema(text: str | None) -> list[Column] | None:
    """Input columns from the ``modelyard.schema`` tag (``{"inputs": [[name, type, req]]}``)."""
    if not text:
        return None
    try:
        inputs = json.loads(text).get("inputs")
    except (ValueError, AttributeError):
        return None
    if not inputs:
        return None
    columns = []
    for item in inputs:
        name, kind = str(item[0]), str(item[1])
        if name.startswith("[") or kind.startswith("tensor"):
            return None  # tensor or unnamed inputs: no column-wise enforcement
        columns.append(Column(name, kind, bool(item[2]) if len(item) > 2 else True))
    return columns


def columns_from_mlmodel(path: str) -> list[Column] | None:
    """Input columns from the MLmodel file's signature, when the tag is absent."""
    from pathlib import Path

    mlmodel = Path(path) / "MLmodel"
    if not mlmodel.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(mlmodel.read_text()) or {}
        raw = (data.get("signature") or {}).get("inputs")
        items = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, OSError, yaml.YAMLError):
        return None
    if not items:
        return None
    columns = []
    for item in items:
        if "name" not in item or item.get("type") == "tensor":
            return None
        columns.append(Column(str(item["name"]), str(item.get("type", "?")),
                              bool(item.get("required", True))))
    return columns


class ModelSource:
    """Registry and vault access for one served model name."""

    def __init__(self, yard: Registry, name: str, *, follow_unaudited: bool = False,
                 purpose: str = "serve", runtime: str = "auto") -> None:
        if runtime not in RUNTIMES:
            from modelyard.errors import InvalidInput

            raise InvalidInput(f"runtime must be one of {', '.join(RUNTIMES)}, not "
                               f"{runtime!r:.40}")
        self.yard = yard
        self.name = name
        # auto: the compiled copy when the version has one that passes parity, else pyfunc
        self.runtime = runtime
        # A stage alias moved without an audit event (around modelyard) is not followed
        # unless asked: the audited holder keeps serving (lifecycle/unaudited.py).
        self.follow_unaudited = follow_unaudited
        self.purpose = purpose  # what the access log records for each load

    # -- versions ---------------------------------------------------------------------------
    def holder(self, ref: str) -> int | None:
        """The version number a reference points at now; cheap for aliases (the poll path)."""
        text = str(ref).strip()
        if text.isdigit():
            return int(text)
        alias = text[1:] if text.startswith("@") else text
        lowered = alias.lower()
        if lowered in STAGE_ALIASES or (text.startswith("@") and alias):
            return self.yard.governance.serving_holder(
                self.name, lowered if lowered in STAGE_ALIASES else alias,
                follow_unaudited=self.follow_unaudited)
        return int(self.yard.get(self.name, text, full=False).version)

    def is_fixed(self, ref: str) -> bool:
        """A version number or a semver never moves; aliases and ``latest`` do."""
        text = str(ref).strip().lstrip("v")
        return text.isdigit() or (text.count(".") == 2 and text.replace(".", "").isdigit())

    def load(self, version: int) -> ServedModel:
        """Load one version, verified against its manifest before it is deserialised."""
        loaded = self.yard.load(self.name, str(version), verify=True, purpose=self.purpose)
        mv = loaded.version
        columns = columns_from_schema(mv.tags.get(T_SCHEMA)) or columns_from_mlmodel(
            loaded.path
        )
        served = ServedModel(
            name=self.name, version=int(mv.version), semver=mv.semver or "",
            stage=mv.stage, manifest_sha256=mv.manifest_sha256 or "",
            aliases=list(mv.aliases), model=loaded.model, columns=columns,
            path=str(loaded.path), verified=bool(loaded.verified),
        )
        from modelyard.serving.compiled import prepare, pyfunc
        from modelyard.serving.scoring import Scorer

        if self.runtime == "pyfunc":
            served.compiled = pyfunc("pyfunc asked for (--runtime pyfunc)")
        else:  # converted at most once per version and library set; read back afterwards
            served.compiled = prepare(self.store, served, Scorer(served).native)
            self._note(mv.tags.get(T_COMPILED), served)
        return served

    def _note(self, tagged: str | None, served: ServedModel) -> None:
        """Tag the version with its runtime and parity, when that changed, so ``details``
        shows it without reading the vault. A registry that refuses the write (a read-only
        serving identity) changes nothing here."""
        compiled = served.compiled
        body = {"runtime": compiled.runtime, "parity": compiled.parity,
                "reason": compiled.reason}
        text = json.dumps(body, separators=(",", ":"), default=str)[:4000]
        if text == tagged:
            return
        from modelyard.errors import YardError

        try:
            self.yard.ctx.writes.set_version_tags(self.name, served.version, {T_COMPILED: text})
        except YardError as exc:
            import logging

            logging.getLogger("modelyard.serving").info(
                "%s v%s: runtime not tagged (%s)", self.name, served.semver, exc.message)

    def check(self, ref: str) -> int:
        """The version a reference names now; raises the registry's one-line error if none."""
        return int(self.yard.get(self.name, ref, full=False).version)

    # -- vault objects ----------------------------------------------------------------------
    @property
    def store(self) -> ObjectStore:
        return self.yard.vault.store

    def ramp_start(self, ramp: str, now: float, about: dict[str, Any]) -> float:
        """When the canary ramp ``ramp`` (``routing.ramp_id``) began, as every replica reads it.

        The first replica to serve the ramp records ``now``; the store's create-if-absent
        lets exactly one of replicas starting together win, and every one reads the winner
        back, so all of them measure the ramp from the same moment."""
        from modelyard.store.vault import canary_key

        key = canary_key(self.name, ramp)
        record = {**about, "started_at": now}
        self.store.put_if_absent(key, json.dumps(record, sort_keys=True).encode())
        try:
            return float(json.loads(self.store.get_bytes(key))["started_at"])
        except (ValueError, KeyError, TypeError) as exc:
            from modelyard.errors import StorageError

            raise StorageError(f"the canary ramp record {key} is unreadable") from exc


# -- vault keys the serving package reads and writes ------------------------------------------
def capture_prefix(name: str) -> str:
    """``capture/NAME/``: sampled inference records, ``date=YYYY-MM-DD/<uuid>.jsonl.gz``."""
    return f"capture/{name}/"


def profile_key(name: str, version: int) -> str:
    """``profiles/NAME/VERSION.json``: the training-data profile drift is measured against."""
    return f"profiles/{name}/{version}.json"


def store_of(yard: Registry) -> ObjectStore:
    """The vault's object store (capture files, profiles)."""
    return yard.vault.store


