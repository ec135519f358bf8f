"""Pure metadata writes through MLflow's documented REST API, without importing MLflow.

Moving a stage only sets and deletes aliases and tags (and mirrors the stage into MLflow's
stage field): ``promote`` and ``rollback`` on a tracking server then need no ``import mlflow``
(about 2 s) and none of the extra ``registered-models/get`` MLflow's client sends before each
registry write. The writer sends through the lean reader's transport (same credentials, TLS,
proxy, timeout and capped retries: ``transport.RestTransport``, the ``RestReader``'s
``transport``), so reads and writes of one command share its keep-alive connections and one
request counter.

Endpoints (``/api/2.0/mlflow/...``): ``registered-models/alias`` (POST, DELETE),
``registered-models/set-tag``, ``model-versions/set-tag``, ``model-versions/delete-tag``
(DELETE), ``model-versions/transition-stage``. Every one of them is idempotent, so a retried
request after a lost answer does no harm. The embedded default keeps writing through MLflow
(``Tracking``): ``Context.writes`` picks.

Independent calls of one step (a move's look-ups, then its writes) go out at the same time
through ``base.at_once``: on a server each request in flight has its own pooled
connection, so a move costs a few sequential round trips whatever the number of calls.

>>> writer = RestWriter(RestTransport("http://mlflow:5000"))
>>> writer.set_alias("churn", "production", 3)
"""

from __future__ import annotations

from typing import Any

from modelyard.backend.lean.transport import Missing, Refused, RestTransport
from modelyard.core.names import mlflow_stage
from modelyard.errors import ModelNotFound, NotFound, UserError


class RestWriter:
    """Alias, tag and stage-field writes of one tracking server (``Tracking``'s signatures)."""

    concurrent = True  # at_once sends independent writes at the same time

    def __init__(self, transport: RestTransport) -> None:
        self.transport = transport

    @property
    def requests(self) -> int:
        return self.transport.requests

    # -- transport ------------------------------------------------------------------------
    def _send(self, method: str, endpoint: str, body: dict[str, Any], *, name: str,
              op: str) -> dict[str, Any]:
        """One JSON request; MLflow's error codes become modelyard's errors."""
        try:
            return self.transport.send(method, endpoint, body)
        except Missing as exc:  # as Tracking translates MLflow's RESOURCE_DOES_NOT_EXIST
            if "Registered Model" in exc.message:
                raise ModelNotFound(name=name) from None
            raise NotFound(exc.message or f"{name}: not found ({op})") from None
        except Refused as exc:  # INVALID_PARAMETER_VALUE: Tracking's UserError
            raise UserError(exc.message or f"{name}: refused ({op})") from None

    # -- writes (Tracking's signatures) ----------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._send("POST", "registered-models/alias",
                   {"name": name, "alias": alias, "version": str(version)},
                   name=name, op=f"set alias '{alias}'")

    def delete_alias(self, name: str, alias: str) -> None:
        self._send("DELETE", "registered-models/alias", {"name": name, "alias": alias},
                   name=name, op=f"delete alias '{alias}'")

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._send("POST", "model-versions/set-tag",
                       {"name": name, "version": str(version), "key": key,
                        "value": str(value)},
                       name=name, op=f"tag version {version}")

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self._send("DELETE", "model-versions/delete-tag",
                   {"name": name, "version": str(version), "key": key},
                   name=name, op=f"untag version {version}")

    def set_stage_field(self, name: str, version: int, stage: str) -> None:
        """Mirror modelyard's stage into MLflow's (deprecated) stage field, as
        ``Tracking.set_stage_field`` does (other versions keep theirs)."""
        value = mlflow_stage(stage)
        self._send("POST", "model-versions/transition-stage",
                   {"name": name, "version": str(version), "stage": value,
                    "archive_existing_versions": False},
                   name=name, op=f"set the stage field of version {version}")

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._send("POST", "registered-models/set-tag",
                   {"name": name, "key": key, "value": value}, name=name, op="tag the model")
