"""Registration speed: Yard.register beside MLflow's own calls, on both backends, one run.

Three ways to register the same RandomForest N times:
- ``modelyard``: ``Yard.register(...)`` (manifest, lineage, semver, vault copy included);
- ``mlflow default``: ``mlflow.sklearn.log_model(..., registered_model_name=...)`` as MLflow
  documents it (with the skops trusted type MLflow's own error message asks for, since the
  plain call refuses a RandomForest);
- ``mlflow explicit reqs``: the same call given ``pip_requirements`` explicitly.

Then ``list`` on a model with 1,000 versions on the server backend.

    python benchmarks/register.py [--n 7] [--versions 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRUSTED = ["sklearn.tree._tree.Tree"]  # what MLflow's own error message asks for


def _model() -> tuple[Any, Any]:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    features, target = make_classification(n_samples=500, n_features=8, random_state=0)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(8)])
    return RandomForestClassifier(n_estimators=30, random_state=0).fit(frame, target), frame


def run_backend(n: int) -> dict[str, float]:
    """Median seconds per registration for each method, run round-robin so that noise from
    the machine falls on all three alike. Every method registers the model with the same
    input example and no extra params or metrics."""
    import mlflow
    import mlflow.sklearn
    from modelyard.flavors import Flavor, pip_requirements

    from modelyard import Yard

    model, frame = _model()
    example = frame.head(3)
    yard = Yard()

    def modelyard_call() -> None:
        yard.register(model, "bench-modelyard", input_example=example)

    def mlflow_call(registered: str, requirements: list[str] | None) -> None:
        mlflow.set_experiment("bench-mlflow")
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                model, name="model", input_example=example, registered_model_name=registered,
                skops_trusted_types=TRUSTED, pip_requirements=requirements,
            )

    modelyard_call()  # warm-up: imports, experiment, and modelyard's one-time inference
    # MLflow with explicit requirements gets the very list modelyard passes.
    cache = yard.settings.resolved_cache_dir
    requirements = pip_requirements(Flavor("sklearn", mlflow.sklearn), None, cache)
    calls: dict[str, Callable[[], None]] = {
        "modelyard": modelyard_call,
        "mlflow default": lambda: mlflow_call("bench-mlflow-default", None),
        "mlflow explicit reqs": lambda: mlflow_call("bench-mlflow-explicit", requirements),
    }
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(n):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


def list_many(versions: int) -> tuple[float, float]:
    """Time `Yard.list_models()` and `modelyard list` with one model of `versions` versions."""
    import subprocess

    from modelyard import Yard
    from modelyard.entities import T_SEMVER, T_STAGE, T_STATUS

    yard = Yard()
    name = "bench-many"
    real = yard.resolve("bench-modelyard", "latest")  # a real model for the versions to point at
    yard.tracking.ensure_registered_model(name)
    for i in range(versions):
        yard.tracking.create_version(
            name, real.source, real.run_id,
            {T_SEMVER: f"1.0.{i}", T_STATUS: "ready", T_STAGE: "none"}, None, real.model_id,
        )
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        rows = yard.list_models()
        samples.append(time.perf_counter() - start)
    assert rows and rows[0]["versions"] == versions, rows
    cli = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modelyard.cli", "list"], check=True,
                       capture_output=True)
        cli.append(time.perf_counter() - start)
    return statistics.median(samples), statistics.median(cli)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=7, help="registrations per method")
    parser.add_argument("--versions", type=int, default=1000)
    args = parser.parse_args()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    table: dict[str, dict[str, float]] = {}
    listing: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        os.chdir(tmp)
        os.environ["MODELYARD_CACHE_DIR"] = str(Path(tmp) / "cache")
        table["embedded"] = run_backend(args.n)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from devstack import Stack  # the test stack lives with the tests, not in the wheel

        with Stack() as stack:
            for key in [k for k in os.environ if k.startswith("MODELYARD_HOME")]:
                del os.environ[key]
            os.environ.update(stack.env())
            import mlflow

            mlflow.set_tracking_uri(stack.tracking_uri)
            table["server"] = run_backend(args.n)
            listing = list_many(args.versions)
    print(f"\nregistering one RandomForest, median of {args.n} runs (seconds)")
    print(f"{'backend':<10} {'modelyard':>10} {'mlflow default':>15} {'explicit reqs':>14} "
          f"{'default/modelyard':>18} {'modelyard/explicit':>19}")
    for backend, row in table.items():
        ours, default, explicit = row["modelyard"], row["mlflow default"], row[
            "mlflow explicit reqs"]
        print(f"{backend:<10} {ours:>10.3f} {default:>15.3f} {explicit:>14.3f} "
              f"{default / ours:>17.1f}x {ours / explicit:>18.2f}x")
    if listing:
        print(f"\nlist with one model of {args.versions} versions on the server backend: "
              f"Yard.list_models() {listing[0]:.3f} s median, `modelyard list` "
              f"{listing[1]:.3f} s median (whole process)")


if __name__ == "__main__":
    main()
