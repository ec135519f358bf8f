"""First use under concurrency: P processes each register R versions at the same moment on a
fresh embedded folder (no database yet), modelyard beside plain MLflow.

    python benchmarks/concurrency.py [--processes 8] [--rounds 10]

modelyard: ``Yard(home=...).register`` (first-use file lock, SQLite retries, semver
confirmation). Peer: ``mlflow.sklearn.log_model(..., registered_model_name=...)`` against the
same kind of fresh SQLite file. Printed: versions that survived, distinct semvers (modelyard)
and wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _model(index: int) -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(index)
    features = rng.normal(size=(20, 3))
    return LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))


def _ours(folder: str, index: int, rounds: int, barrier: Any, results: Any) -> None:
    try:
        from modelyard import Yard

        model = _model(index)
        barrier.wait(timeout=600)
        for round_ in range(rounds):
            Yard(home=folder).register(model, "m", params={"worker": index, "round": round_},
                                       pip_requirements=["scikit-learn"])
        results.put((index, "done"))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((index, f"error: {type(exc).__name__}: {str(exc)[:120]}"))


def _peer(folder: str, index: int, rounds: int, barrier: Any, results: Any) -> None:
    try:
        import mlflow

        model = _model(index)
        Path(folder).mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        barrier.wait(timeout=600)
        for round_ in range(rounds):
            with mlflow.start_run():
                mlflow.log_params({"worker": index, "round": round_})
                mlflow.sklearn.log_model(model, name="model", registered_model_name="m",
                                         pip_requirements=["scikit-learn"])
        results.put((index, "done"))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((index, f"error: {type(exc).__name__}: {str(exc)[:120]}"))


def _race(target: Any, folder: str, processes: int, rounds: int) -> tuple[float, list[str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [context.Process(target=target, args=(folder, i, rounds, barrier, results))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=600)
    started = time.perf_counter()
    outcomes = [results.get(timeout=1800)[1] for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(timeout=60)
    return elapsed, [o for o in outcomes if o != "done"]


def _count(folder: str, ours: bool) -> tuple[int, int]:
    """(versions, distinct semvers) that a fresh reader finds."""
    try:
        if ours:
            from modelyard import Yard

            versions = Yard(home=folder).versions("m")
            return len(versions), len({v.tags.get("modelyard.semver") for v in versions})
        from mlflow.tracking import MlflowClient

        found = MlflowClient(f"sqlite:///{folder}/mlflow.db").search_model_versions("name='m'")
        return len(found), 0
    except Exception as exc:  # noqa: BLE001 - a corrupted registry is a result here
        print(f"  (reading the registry failed: {type(exc).__name__}: {str(exc)[:100]})")
        return 0, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    expected = args.processes * args.rounds
    print(f"{args.processes} processes x {args.rounds} registrations on a fresh embedded "
          f"folder (expected {expected} versions)")
    print(f"{'':<10} {'seconds':>8} {'versions':>9} {'semvers':>8} {'errors':>7}")
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        for label, target, ours in (("modelyard", _ours, True), ("mlflow", _peer, False)):
            folder = str(Path(tmp) / label)
            elapsed, errors = _race(target, folder, args.processes, args.rounds)
            versions, semvers = _count(folder, ours)
            shown = str(semvers) if ours else "-"
            print(f"{label:<10} {elapsed:8.1f} {versions:9d} {shown:>8} {len(errors):7d}")
            for error in errors[:2]:
                print(f"  {error}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
