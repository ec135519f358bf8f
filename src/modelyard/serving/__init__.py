"""Serving (``pip install 'modelyard[serve]'``): a FastAPI app over registered versions.

Hot reload on promotion, verified loading, adaptive micro-batching, A/B with sticky routing,
a canary ramp, shadow traffic, Prometheus metrics per version, sampled capture to the object
store, and the monitoring verbs that read it back.

>>> from modelyard.serving import create_app
>>> app = create_app(yard, "churn")            # churn@production, reloaded when it moves

Heavy imports (FastAPI, pandas) happen only when a name is first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ab_report", "create_app", "monitor"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from modelyard.serving.app import create_app

        return create_app
    if name in ("monitor", "ab_report"):
        from modelyard.serving import monitor as module

        return getattr(module, name)
    raise AttributeError(f"module 'modelyard.serving' has no attribute {name!r}")
