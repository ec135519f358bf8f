"""Serving (``pip install 'modelyard[serve]'``): a FastAPI app over registered versions.
May import ``registry`` and the packages below it (not ``protection`` or the facade); it
reaches the registry through ``source.py``: docs/design.md, "Serving contract".

Hot reload on promotion, verified loading, a compiled (ONNX Runtime) copy of every model the
converters take (``compiled.py``; pyfunc with the reason otherwise), adaptive micro-batching,
A/B with sticky routing, a canary ramp, shadow traffic, Prometheus metrics per version and
runtime, sampled capture to the object store, the monitoring verbs that read it back, and the
Open Inference Protocol (v2) beside MLflow's scoring protocol.

>>> from modelyard.serving import create_app
>>> app = create_app(yard, "churn")            # churn@production, reloaded when it moves

Scale out: the server keeps no state of its own (models come verified from the registry,
records go to the object store), so worker processes and replicas need no coordination.
Each worker keeps its own Prometheus series; scrape every worker, or put one worker per
container and scale containers::

    modelyard serve churn --host 0.0.0.0 --port 8080 --workers 4 --capture-rate 0.05

A container recipe (the registry and the vault are reached through the usual variables)::

    FROM python:3.11-slim
    RUN pip install --no-cache-dir 'modelyard[serve,sklearn,boosting]'
    ENV MLFLOW_TRACKING_URI=http://mlflow.internal:5000 MODELYARD_VAULT=s3://models/vault
    EXPOSE 8080
    CMD ["modelyard", "serve", "churn", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]

Heavy imports (FastAPI, pandas) happen only when a name is first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor", "ab_report", "create_app", "monitor"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from modelyard.serving.app import create_app

        return create_app
    if name == "Predictor":
        from modelyard.serving.predictor import Predictor

        return Predictor
    if name in ("monitor", "ab_report"):
        from modelyard.serving import monitor as module

        return getattr(module, name)
    raise AttributeError(f"module 'modelyard.serving' has no attribute {name!r}")
