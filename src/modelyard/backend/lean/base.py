"""Shared plumbing of the lean readers (``rest``, ``sqlite``): names, the debug
fallback log and message helpers. Never imports mlflow, pandas, sklearn or boto3."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

# One logger for the whole lean read path (its debug lines say why MLflow's client answers).
log = logging.getLogger("modelyard.reader")

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
    # storage.py owns the rule; imported only when a message is built.
    from modelyard.store.storage import redact

    return redact(text)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


# At most this many requests of one step in flight at once (a move sends at most about ten).
MAX_AT_ONCE = 8


def at_once(target: object, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run independent registry calls; their results, in order.

    When ``target`` says it is ``concurrent`` (the lean REST reader and writer: one pooled
    keep-alive connection per request in flight) the calls are sent at the same time, from
    threads: every call runs to its end, then the first exception (in call order) is raised.
    With anything else (MLflow's client, the embedded SQLite reader) they run one after
    another, stopping at the first exception.
    """
    if len(calls) <= 1 or not getattr(target, "concurrent", False):
        return [call() for call in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(calls), MAX_AT_ONCE),
                            thread_name_prefix="modelyard-rest") as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:  # all done: the pool's exit waits for every call
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]
