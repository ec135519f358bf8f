"""Shared plumbing of the lean readers (``reader_rest``, ``reader_sqlite``): names, the debug
fallback log and message helpers. Never imports mlflow, pandas, sklearn or boto3."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

# One logger for the whole lean read path (its debug lines say why MLflow's client answers).
log = logging.getLogger("modelyard.reader")

STATUS_TAG = "modelyard.status"
PENDING = "pending"
# MLflow's SQL store keeps a deleted version's row with this stage and hides it everywhere.
DELETED_STAGE = "Deleted_Internal"
# MLflow prompts are registered models with this tag; MLflow's searches leave them out.
PROMPT_TAG = "mlflow.prompt.is_prompt"
WORKSPACE = "default"  # the embedded store is single-tenant: MLflow's default workspace

T = TypeVar("T")


def _fallback(reason: str) -> Any:
    """Log why MLflow's client answers instead (debug level); returns None for the caller."""
    log.debug("lean reader not used (MLflow's client answers): %s", reason)
    return None



def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _redact(text: str) -> str:
    # tracking.py owns the rule; imported only when a message is built (it loads pydantic).
    from modelyard.storage import redact

    return redact(text)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]
