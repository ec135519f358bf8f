"""Who modelyard acts as, and what MLflow lets that user do.

The actor of every audit event, promotion request and decision is:

- on a tracking server that authenticates (MLflow's basic-auth app, or a token naming a
  user): the user the *server* says the credentials belong to (``GET
  /api/2.0/mlflow/users/current``). ``MODELYARD_USER`` cannot override it: naming someone
  else is refused (``IdentityConflict``), and wrong credentials are one line (HTTP 401);
- elsewhere (the embedded default, a server without auth): ``MODELYARD_USER`` (or the
  ``user`` setting) as an *asserted* name, else the OS user.

Permissions map modelyard's roles onto MLflow's on the registered model: moving a version to
staging (or asking for production) needs EDIT; approving, rejecting, rolling back production,
and cleanup need MANAGE. They are checked before anything is written, through the auth app's
``GET /api/3.0/mlflow/users/permissions/get``; a server without that API answers with HTTP 403
at the first write instead, which the MLflow edge turns into the same ``PermissionDenied``.

Never imports mlflow (the lean reader speaks the REST API).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from modelyard.core.lineage import os_user
from modelyard.errors import IdentityConflict, PermissionDenied

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.backend.lean.transport import RestTransport
    from modelyard.core.settings import Settings

log = logging.getLogger("modelyard.identity")

__all__ = ["EDIT", "LEVELS", "MANAGE", "READ", "Identity", "Permissions", "resolve_identity"]

Source = Literal["server-basic-auth", "server-token", "os-user", "asserted"]

READ, EDIT, MANAGE = "READ", "EDIT", "MANAGE"
# MLflow's permissions, weakest first (permissions.py: READ < USE < EDIT < MANAGE).
LEVELS = {"NO_PERMISSIONS": 0, "DENY": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}
_CURRENT_USER = "/api/2.0/mlflow/users/current"
_USER_PERMISSION = "/api/3.0/mlflow/users/permissions/get"


@dataclass(frozen=True)
class Identity:
    """Who modelyard acts as: ``user``, how that was established, and whether a server
    vouched for it (``authenticated``). ``is_admin``: the auth app's admin flag."""

    user: str
    source: Source
    authenticated: bool
    is_admin: bool = False

    @property
    def audit_mark(self) -> str:
        """What an audit event records: ``authenticated``, ``asserted`` or ``os-user``."""
        if self.authenticated:
            return "authenticated"
        return "os-user" if self.source == "os-user" else "asserted"

    def to_dict(self) -> dict[str, object]:
        return {"user": self.user, "source": self.source, "authenticated": self.authenticated,
                "is_admin": self.is_admin}


def resolve_identity(settings: Settings, reader: object | None) -> Identity:
    """The identity for these settings; ``reader`` is the lean reader (a ``RestReader`` for a
    server). Raises ``PermissionDenied`` on refused credentials, ``IdentityConflict`` when
    ``MODELYARD_USER`` names someone other than the authenticated user."""
    from modelyard.backend.lean.rest import RestReader

    asserted = settings.user or None
    if isinstance(reader, RestReader) and reader.transport.sends_credentials:
        found = _ask_server(reader.transport)
        if found is not None:
            if asserted and asserted != found.user:
                raise IdentityConflict(asserted=asserted, user=found.user)
            return found
        # A server without the auth app: the credentials are not checked by anyone.
        name = asserted or reader.transport.basic_username
        if name:
            return Identity(name, "asserted", False)
    if asserted:
        return Identity(asserted, "asserted", False)
    return Identity(os_user(), "os-user", False)


def _ask_server(transport: RestTransport) -> Identity | None:
    """The server's word on who the credentials are (None: it has no auth app)."""
    status, body = transport.probe(_CURRENT_USER, [])
    label = transport.label
    if status == 401:
        who = transport.basic_username
        raise PermissionDenied(
            f"tracking server {label} refused the credentials"
            f"{' of ' + who if who else ''} (HTTP 401): check MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
    if status == 200 and isinstance(body, dict) and isinstance(body.get("user"), dict):
        user = body["user"]
        name = str(user.get("username") or "")
        if name:
            source: Source = ("server-basic-auth" if transport.sends_credentials == "basic"
                              else "server-token")
            return Identity(name, source, True, bool(user.get("is_admin")))
    log.debug("tracking server %s has no users API (HTTP %s): identity not authenticated",
              label, status)
    return None


class Permissions:
    """Checks the identity's permission on a registered model before a write."""

    def __init__(self, identity: Identity, reader: object | None) -> None:
        self.identity = identity
        self.reader = reader
        self._cache: dict[str, str | None] = {}

    def level(self, model: str) -> str | None:
        """The identity's MLflow permission on ``model`` (None: the server cannot say)."""
        from modelyard.backend.lean.rest import RestReader

        if not self.identity.authenticated or not isinstance(self.reader, RestReader):
            return None
        if self.identity.is_admin:
            return MANAGE
        if model not in self._cache:
            status, body = self.reader.transport.probe(_USER_PERMISSION, [
                ("username", self.identity.user), ("resource_type", "registered_model"),
                ("resource_id", model)])
            found = None
            if status == 200 and isinstance(body, dict) and body.get("permission"):
                found = str(body["permission"]).upper()
            else:
                log.debug("no permission answer for %s on %s (HTTP %s)", self.identity.user,
                          model, status)
            self._cache[model] = found
        return self._cache[model]

    def require(self, model: str, needed: str, doing: str) -> None:
        """Raise ``PermissionDenied`` unless the identity holds ``needed`` on ``model``.

        Where the server has no permissions API (or the identity is not authenticated) the
        check is left to the server: a refused write arrives as HTTP 403 -> the same error.
        """
        have = self.level(model)
        if have is None:
            return
        if LEVELS.get(have, 0) < LEVELS[needed]:
            raise PermissionDenied(user=self.identity.user, model=model, needed=needed,
                                   doing=f"to {doing}; it has {have}")
