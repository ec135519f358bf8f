"""Which vault a registry's models belong with, so a mismatch is one line, not a false alarm.

A vault has an identity (``identity.json``: a random id, written once with create-if-absent
on its first audit event). A registered model records the vault its trail and manifests were
written to in the ``modelyard.vault`` tag (``ID LOCATION``), set with its first audit event
(and when a trail is imported or restored). A verb that reads both compares them before any
check: the same location is taken as it is (no vault read); another location is the same
vault only when the identity there is the recorded one (a project folder moved, an S3 URL
spelled otherwise). A model without the tag (plain MLflow, a registry older than the tag)
is never an alarm: nothing was recorded yet.

A whole-registry scan (``verify --all``, ``backup --all``, the unaudited-move and debris
checks) takes only the models written with this vault (``split``): another vault's models have
their manifests and trail there, so checking them here would call every file missing and
every holder unaudited. Each of them is one line instead.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from modelyard.core.names import T_VAULT
from modelyard.core.records import ModelRecord
from modelyard.errors import VaultMismatch, YardError
from modelyard.store.storage import redact
from modelyard.store.vault import identity_key

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context

log = logging.getLogger("modelyard.audit")


class Binding:
    """One yard's vault identity and the check of a model's ``modelyard.vault`` tag."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._id: str | None = None

    @property
    def location(self) -> str:
        return redact(self.ctx.settings.resolved_vault)

    def vault_id(self, *, create: bool = False) -> str | None:
        """The vault's identity (None: none written yet and ``create`` is false)."""
        if self._id is None:
            store = self.ctx.vault.store
            if not store.exists(identity_key()):
                if not create:
                    return None
                store.put_if_absent(identity_key(), json.dumps({"id": uuid.uuid4().hex}).encode())
            try:  # the one that won, when two writers raced
                self._id = str(json.loads(store.get_bytes(identity_key()))["id"])
            except (ValueError, KeyError, TypeError):
                return None  # unreadable: nothing to compare with
        return self._id

    def tag(self) -> str:
        """The ``modelyard.vault`` value for a model written to this vault now."""
        return f"{self.vault_id(create=True)} {self.location}"

    def problem(self, name: str, tags: Mapping[str, str]) -> str | None:
        """The one line saying ``name``'s registry and this vault do not belong together, or
        None (they do, or nothing was recorded)."""
        recorded = tags.get(T_VAULT)
        if not recorded:
            return None
        want, _, where = recorded.partition(" ")
        if where == self.location:
            return None
        try:
            have = self.vault_id()
        except YardError:
            return None  # the vault does not answer: the store checks say so
        if have == want:
            return None  # the same vault under another spelling, or moved with its registry
        tracking = redact(self.ctx.settings.resolved_tracking_uri)
        return (f"the registry {tracking} and the vault {self.location} do not belong "
                f"together: model {name!r} was written with the vault {where or want}; set "
                f"vault (MODELYARD_VAULT) to it, or point MLFLOW_TRACKING_URI at this vault's "
                "registry")

    def check(self, name: str, tags: Mapping[str, str]) -> None:
        """Raise ``VaultMismatch`` (one line naming both) when they do not belong together."""
        problem = self.problem(name, tags)
        if problem:
            raise VaultMismatch(problem, name=name)

    def check_model(self, name: str) -> None:
        """``check`` with the model's tags read from the registry (no model: nothing to do)."""
        try:
            tags = self.ctx.reads.get_model(name).tags
        except YardError:
            return  # no model yet, or no answer (the caller's own reads say so)
        self.check(name, tags)

    def bind(self, name: str) -> None:
        """Record this vault on the model (``modelyard.vault``); never raises a YardError."""
        try:
            self.ctx.writes.set_model_tag(name, T_VAULT, self.tag())
        except YardError as exc:
            log.warning("vault of %s not recorded in the registry: %s", name, exc.message)

    def problems(self, models: Iterable[tuple[str, Mapping[str, str]]]) -> list[str]:
        """Each model (name, tags) whose recorded vault is not this one."""
        return [p for name, tags in models if (p := self.problem(name, tags))]

    def split(self, models: Iterable[ModelRecord]) -> tuple[list[ModelRecord], list[str]]:
        """A whole-registry scan's models: (those written with this vault or with none
        recorded, one line for each written with another)."""
        mine: list[ModelRecord] = []
        apart: list[str] = []
        for model in models:
            problem = self.problem(model.name, model.tags)
            if problem:
                apart.append(problem)
            else:
                mine.append(model)
        return mine, apart
