"""The lean path: registry reads (REST API, or the embedded SQLite read-only) and metadata
writes at command-line speed. Never imports mlflow, pandas, sklearn or boto3; may import
``store``, ``core`` and ``errors`` (not the rest of ``backend``)."""
