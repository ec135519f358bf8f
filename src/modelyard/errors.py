"""modelyard's errors: one hierarchy, each with a message template, exit code and HTTP status.

The CLI turns any ``YardError`` into one red line and its exit code; the serving app turns it
into a JSON body with its HTTP status. Third-party errors are translated where they arise (the
MLflow edge's ``backend.connection`` and the object stores of ``store``), so callers only ever
see these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class YardError(Exception):
    """Root of every error modelyard raises on purpose.

    >>> raise ModelNotFound(name="churn")
    Traceback (most recent call last):
    modelyard.errors.ModelNotFound: Model 'churn' not found
    """

    template: ClassVar[str] = "{message}"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        if message is None:
            try:
                message = self.template.format(**fields)
            except (KeyError, IndexError):
                message = self.template
        self.message = message
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message}


class UserError(YardError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2
    http_status = 400


class VaultMismatch(UserError):
    """The registry's models were written with another vault than the one configured."""

    template = "{detail}"


class ConfigError(UserError):
    """A configuration file or value is malformed."""

    template = "{source}: {key}: {problem}"


class InvalidInput(UserError):
    template = "{message}"


class InvalidRef(UserError):
    template = "Invalid version reference '{ref}': {problem}"


class NotFound(UserError):
    exit_code = 3
    http_status = 404


class ModelNotFound(NotFound):
    template = "Model '{name}' not found"


class VersionNotFound(NotFound):
    template = "{name}: no version matches '{ref}'{hint}"


class Conflict(UserError):
    exit_code = 4
    http_status = 409


class VersionConflict(Conflict):
    template = "{name}: version {requested} is not above the highest existing version {highest}"


class GateFailed(Conflict):
    template = "{name}@{ref}: promotion to {stage} refused: {reason}"


class ApprovalError(Conflict):
    template = "{message}"


class IntegrityError(YardError):
    """Stored bytes do not match the manifest: refuse to deserialize."""

    exit_code = 5
    http_status = 409
    template = "Integrity check failed for {name} v{semver}: {detail}"


class UnexpectedFiles(IntegrityError):
    """A version's folder holds files its manifest does not list (``fields["files"]``):
    putting files back does not remove them; ``repair`` sets them aside."""


class AuditTampered(IntegrityError):
    template = "Audit trail for '{name}' is broken: {detail}"


class UnauditedMove(IntegrityError):
    """A stage holder that no audit event explains (moved around modelyard)."""

    template = "{detail}"


class BackendError(YardError):
    """The tracking server or database failed or is unreachable."""

    exit_code = 6
    http_status = 503
    template = "Tracking backend error: {detail}"


class StorageError(YardError):
    """The object store (local folder or S3) failed or is unreachable."""

    exit_code = 7
    http_status = 503
    template = "Object storage error: {detail}"


class RegistrationFailed(YardError):
    exit_code = 8
    http_status = 500
    template = "Registration of '{name}' failed and was rolled back: {detail}"


class MissingDependency(UserError):
    template = "{feature} needs '{package}': pip install '{install}'"


class PermissionDenied(UserError):
    """The backend refused: the credentials lack a permission (HTTP 403), or are missing.

    ``PermissionDenied(user="bob", model="churn", needed="MANAGE")`` names all three; a
    message given as text is used as is (the edge that saw an HTTP 403 / 401).
    """

    exit_code = 9
    http_status = 403
    template = "permission denied: {user} needs {needed} on model '{model}' ({doing})"

    def __init__(self, message: str | None = None, **fields: object) -> None:
        if message is None:
            fields.setdefault("doing", "asked of the tracking server")
        super().__init__(message, **fields)


class IdentityConflict(PermissionDenied):
    """MODELYARD_USER names someone other than the user the tracking server authenticated."""

    template = ("MODELYARD_USER={asserted} but the tracking server authenticated you as "
                "{user}: unset MODELYARD_USER (an authenticated identity cannot be overridden)")
