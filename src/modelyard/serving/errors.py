"""Errors the serving app answers with, in the ``YardError`` hierarchy.

Each carries its HTTP status; the app turns any ``YardError`` into a JSON body
``{"error": class, "error_code": ..., "message": ...}`` and never shows a stack trace.
"""

from __future__ import annotations

from typing import Any, ClassVar

from modelyard.errors import UserError, YardError


class ServingError(UserError):
    """A request the server cannot answer as sent."""

    # MLflow's scoring server names its errors with these codes; clients may read them.
    error_code: ClassVar[str] = "BAD_REQUEST"

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "error_code": self.error_code,
                "message": self.message}


class BadRequest(ServingError):
    template = "{message}"


class Unauthorized(ServingError):
    http_status = 401
    error_code = "UNAUTHENTICATED"
    template = "missing or wrong bearer token"


class PayloadTooLarge(ServingError):
    http_status = 413
    error_code = "REQUEST_LIMIT_EXCEEDED"
    template = "request body is larger than {limit} bytes"


class UnsupportedMediaType(ServingError):
    http_status = 415
    error_code = "BAD_REQUEST"
    template = "{message}"


class ModelNotServed(ServingError):
    """A v2 request names a model or version this server does not serve."""

    http_status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"
    template = "{message}"


class SchemaMismatch(ServingError):
    """The payload does not fit the model's input signature; names the column."""

    http_status = 422
    error_code = "INVALID_PARAMETER_VALUE"
    template = "column '{column}': {problem}"


class NotReady(YardError):
    http_status = 503
    exit_code = 6
    template = "no verified model is loaded for {name}@{ref}"

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": self.message}


class PredictionFailed(YardError):
    """The model raised while predicting; the cause is logged, never returned."""

    http_status = 500
    template = "the model failed to predict ({cause}); request id {request_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "error_code": "INTERNAL_ERROR",
                "message": self.message}


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body for any exception; unknown ones say nothing internal."""
    if isinstance(exc, YardError):
        body = exc.to_dict()
        body.setdefault("error_code", _code_for(exc.http_status))
        return exc.http_status, body
    return 500, {"error": "InternalError", "error_code": "INTERNAL_ERROR",
                 "message": "internal error; see the server log"}


def _code_for(status: int) -> str:
    return {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "RESOURCE_DOES_NOT_EXIST",
            409: "INVALID_STATE", 413: "REQUEST_LIMIT_EXCEEDED", 422: "INVALID_PARAMETER_VALUE",
            503: "TEMPORARILY_UNAVAILABLE"}.get(status, "INTERNAL_ERROR")
