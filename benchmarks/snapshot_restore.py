"""Snapshot restore speed: 50 models on the team stack (PostgreSQL + moto S3 + ``mlflow
server``), ``Yard.snapshot_restore`` beside MLflow's client setting the same aliases.

Setup: one small sklearn model registered through modelyard; MODELS models get two versions
each pointing at it (v1.0.0, v1.1.0), v1.0.0 promoted to production and given the user alias
``champion``. Snapshot ``bench``. Then, ROUNDS times:

- ``no-op``: ``Yard.protection.snapshots.restore("bench")`` with nothing changed;
- ``changed``: v1.1.0 promoted (forced) to production in CHANGED models, then
  ``Yard.protection.snapshots.restore("bench")`` (CHANGED audited moves back);
- ``mlflow peer``: the same CHANGED promotions, then ``MlflowClient.set_registered_model_alias``
  for the CHANGED production aliases (no stage tags, no audit trail, no diff: the lower bound);
- ``cli``: the same CHANGED promotions, then ``modelyard snapshot restore bench --yes`` as a
  new process (wall clock, interpreter start included).

Artifacts' size does not enter: restore moves aliases, it copies no files. The machine may be
shared and the tracking server answers one request at a time, so the HTTP requests each
restore sends (to the tracking server, to S3) are printed too: they do not depend on load.

    python benchmarks/snapshot_restore.py [--models 50] [--changed 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

TAG = "bench"
REQUESTS: collections.Counter[int] = collections.Counter()  # responses read, by server port


def _count_requests() -> None:
    """Count every HTTP response this process reads, by server port (urllib3, used by MLflow
    and boto3, and the lean reader's http.client both end in this method)."""
    original = http.client.HTTPConnection.getresponse

    def getresponse(self: http.client.HTTPConnection) -> http.client.HTTPResponse:
        REQUESTS[int(self.port or 0)] += 1
        return original(self)

    http.client.HTTPConnection.getresponse = getresponse  # type: ignore[method-assign]


def _setup(yard: Any, models: int) -> list[str]:
    from sklearn.linear_model import LogisticRegression

    from modelyard.core.names import T_SEMVER, T_STAGE, T_STATUS

    real = yard.register(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "bench-source")
    source = yard.tracking.get_version("bench-source", real.version)
    names = [f"bench-{i:02d}" for i in range(models)]
    for name in names:
        yard.tracking.ensure_registered_model(name)
        for semver in ("1.0.0", "1.1.0"):
            yard.tracking.create_version(
                name, source.source, source.run_id,
                {T_SEMVER: semver, T_STATUS: "ready", T_STAGE: "none"}, None,
                getattr(source, "model_id", None))
        yard.promote(name, 1, "production", force=True, reason="benchmark setup")
        yard.set_alias(name, 1, "champion")
    return names


def _break(yard: Any, names: list[str]) -> None:
    for name in names:
        yard.promote(name, 2, "production", force=True, reason="benchmark change")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
    from tests.support.devstack import Stack  # the test stack lives with the tests, not the wheel

    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp, Stack() as stack:
        os.chdir(tmp)
        os.environ["MODELYARD_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ.update(stack.env())
        from mlflow import MlflowClient

        from modelyard import Yard

        yard = Yard()
        began = time.perf_counter()
        names = _setup(yard, args.models)
        yard.protection.snapshots.create(TAG, models=names)
        print(f"setup: {args.models} models, 2 versions each, in "
              f"{time.perf_counter() - began:.1f} s", flush=True)
        client = MlflowClient(stack.tracking_uri)
        changed = names[: args.changed]
        samples: dict[str, list[float]] = {"no-op": [], "changed": [], "mlflow peer": [],
                                           "cli": []}
        _count_requests()
        requests: dict[str, tuple[int, int]] = {}
        ports = (stack.mlflow_port, stack.s3_port)
        for _ in range(args.rounds):
            REQUESTS.clear()
            start = time.perf_counter()
            result = yard.protection.snapshots.restore(TAG)
            samples["no-op"].append(time.perf_counter() - start)
            assert not result.moves, result.moves
            requests["no-op"] = (REQUESTS[ports[0]], REQUESTS[ports[1]])

            _break(yard, changed)
            REQUESTS.clear()
            start = time.perf_counter()
            result = yard.protection.snapshots.restore(TAG)
            samples["changed"].append(time.perf_counter() - start)
            requests["changed"] = (REQUESTS[ports[0]], REQUESTS[ports[1]])
            assert len(result.moves) == len(changed), result.moves
            assert all(yard.tracking.alias_holder(n, "production") == 1 for n in changed)

            _break(yard, changed)
            REQUESTS.clear()
            start = time.perf_counter()
            for name in changed:
                client.set_registered_model_alias(name, "production", "1")
            samples["mlflow peer"].append(time.perf_counter() - start)
            requests["mlflow peer"] = (REQUESTS[ports[0]], REQUESTS[ports[1]])

            _break(yard, changed)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "modelyard.cli", "snapshot", "restore", TAG,
                            "--yes"], check=True, capture_output=True)
            samples["cli"].append(time.perf_counter() - start)
            assert all(yard.tracking.alias_holder(n, "production") == 1 for n in changed)

    med = {key: statistics.median(values) for key, values in samples.items()}
    print(f"\nsnapshot restore, {args.models} models on the team stack, {args.changed} "
          f"production aliases moved back; median of {args.rounds} runs (seconds; the machine "
          "is shared, figures are noisy)")
    print(f"{'':<34} {'seconds':>8} {'vs mlflow peer':>15} {'requests (tracking, S3)':>24}")
    for key, label in (("no-op", "Yard.protection.snapshots.restore, no-op"),
                       ("changed", f"Yard.protection.snapshots.restore, {args.changed} moved"),
                       ("cli", "modelyard snapshot restore (proc)"),
                       ("mlflow peer", f"MlflowClient alias loop ({args.changed})")):
        sent = requests.get(key)
        shown = f"{sent[0]}, {sent[1]}" if sent else "(other process)"
        print(f"{label:<34} {med[key]:>8.3f} {med[key] / med['mlflow peer']:>14.1f}x "
              f"{shown:>24}")


if __name__ == "__main__":
    main()
