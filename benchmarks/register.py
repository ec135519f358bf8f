"""Registration speed: Yard.register beside MLflow's own calls, on both backends, one run.

Three ways to register the same RandomForest N times:
- ``modelyard``: ``Yard.register(...)`` (manifest, lineage, semver, vault copy included);
- ``mlflow default``: ``mlflow.sklearn.log_model(..., registered_model_name=...)`` as MLflow
  documents it (with the skops trusted type MLflow's own error message asks for, since the
  plain call refuses a RandomForest);
- ``mlflow explicit reqs``: the same call given ``pip_requirements`` explicitly.

Then ``list`` on a model with 1,000 versions on the server backend.

With ``--big``, only the large case on the embedded default instead: a saved pyfunc model with
FILES artifacts of SIZE MB each (the issue's 1 GB: ``--files 10 --size-mb 100``), registered by
``modelyard register DIR --name big`` as a new process, beside plain MLflow in one new process
(``log_artifacts`` of the folder, then ``register_model``), alternately, ROUNDS times each; wall
clock and peak RSS (``wait4``) of each process, medians.

    python benchmarks/register.py [--n 7] [--versions 1000]
    python benchmarks/register.py --big [--files 10] [--size-mb 100] [--rounds 3]
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

    from modelyard import Yard
    from modelyard.backend.mlmodel import Flavor, pip_requirements

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


def list_many(versions: int, pg_port: int) -> tuple[float, float]:
    """Time `Yard.list_models()` and `modelyard list` with one model of `versions` versions.

    The model is built as ``benchmarks/reads.py`` builds its own (registered and promoted
    through modelyard, the bulk copied by SQL with the planner's statistics refreshed as
    autovacuum would: a thousand ``create_model_version`` calls cost O(n) each, and listing
    right after them, before any ANALYZE, measures PostgreSQL's plan for an empty table)."""
    import subprocess

    from reads import build

    from modelyard import Yard
    from tests.support import bulk

    yard = Yard()
    build(yard, "bench-many", versions,
          lambda name, last: bulk.copy_server(pg_port, name, last))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        rows = yard.list_models()
        samples.append(time.perf_counter() - start)
    assert any(r.name == "bench-many" and r.latest_version == versions for r in rows), rows
    cli = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modelyard.cli", "list"], check=True,
                       capture_output=True)
        cli.append(time.perf_counter() - start)
    return statistics.median(samples), statistics.median(cli)


# -- the large case (--big) ----------------------------------------------------------------------
PLAIN_MLFLOW = r"""
import sys
import mlflow
from mlflow import MlflowClient
folder, home = sys.argv[1:3]
client = MlflowClient(f"sqlite:///{home}/mlflow.db")
try:
    experiment = client.create_experiment("big", artifact_location=f"{home}/artifacts")
except Exception:
    experiment = client.get_experiment_by_name("big").experiment_id
run = client.create_run(experiment)
client.log_artifacts(run.info.run_id, folder, "model")
mlflow.set_registry_uri(f"sqlite:///{home}/mlflow.db")
mlflow.set_tracking_uri(f"sqlite:///{home}/mlflow.db")
mlflow.register_model(f"runs:/{run.info.run_id}/model", "big")
client.set_terminated(run.info.run_id)
"""


def _big_model(root: Path, files: int, size_mb: int) -> Path:
    """A pyfunc model saved with ``files`` artifacts of ``size_mb`` MB (random bytes)."""
    import mlflow.pyfunc
    import numpy as np

    class Big(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: Any) -> Any:
            return model_input

    rng = np.random.default_rng(0)
    parts = root / "parts"
    parts.mkdir()
    artifacts = {}
    for index in range(files):
        part = parts / f"part-{index:02d}.bin"
        with part.open("wb") as handle:
            for _ in range(size_mb):
                handle.write(rng.bytes(1024 * 1024))
        artifacts[f"part-{index:02d}"] = str(part)
    folder = root / "model_dir"
    mlflow.pyfunc.save_model(folder, python_model=Big(), artifacts=artifacts,
                             pip_requirements=["mlflow"])
    import shutil

    shutil.rmtree(parts)
    return folder


def _process(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr.read().decode()[-2000:]}"
                           if proc.stderr else f"{argv[:4]} failed")
    return wall, usage.ru_maxrss / 1024


def run_big(files: int, size_mb: int, rounds: int) -> None:
    import shutil

    with tempfile.TemporaryDirectory(prefix="modelyard-bench-big-") as tmp:
        root = Path(tmp)
        folder = _big_model(root, files, size_mb)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELYARD_", "MLFLOW_", "AWS_"))}
        env["MODELYARD_CACHE_DIR"] = str(root / "cache")
        # Both start from a database already migrated (MLflow migrates a new SQLite file for
        # seconds: the same for both, and not what is measured here).
        from mlflow import MlflowClient

        template = root / "template.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        samples: dict[str, list[tuple[float, float]]] = {"modelyard": [], "mlflow": []}
        for index in range(rounds):
            for key in samples:
                work = root / f"{key}-{index}"
                (work / ".modelyard").mkdir(parents=True)
                shutil.copyfile(template, work / (".modelyard/mlflow.db" if key == "modelyard"
                                                  else "mlflow.db"))
                if key == "modelyard":
                    argv = [sys.executable, "-m", "modelyard.cli", "register", str(folder),
                            "--name", "big"]
                else:
                    argv = [sys.executable, "-c", PLAIN_MLFLOW, str(folder), str(work)]
                samples[key].append(_process(argv, work, env))
                shutil.rmtree(work)  # each round starts from an empty registry and disk
    total = files * size_mb
    print(f"\nregistering a saved pyfunc model of {files} x {size_mb} MB ({total} MB) on the "
          f"embedded default, whole process, median of {rounds} (the machine is shared: "
          "figures are noisy)")
    ours = statistics.median(w for w, _ in samples["modelyard"])
    peer = statistics.median(w for w, _ in samples["mlflow"])
    for key, wall in (("modelyard register", ours), ("mlflow log_artifacts+register", peer)):
        rss = statistics.median(m for _, m in samples[key.split()[0]])
        print(f"{key:<30} {wall:>7.2f} s {total / wall:>7.0f} MB/s  peak RSS {rss:>6.0f} MB")
    print(f"modelyard / mlflow: {ours / peer:.2f}x (goal: 1.5x or less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=7, help="registrations per method")
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--big", action="store_true", help="only the large-model case")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import logging
    import warnings

    if args.big:
        run_big(args.files, args.size_mb, args.rounds)
        return

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    table: dict[str, dict[str, float]] = {}
    listing: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        os.chdir(tmp)
        os.environ["MODELYARD_CACHE_DIR"] = str(Path(tmp) / "cache")
        table["embedded"] = run_backend(args.n)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from tests.support.devstack import Stack  # the test stack: with the tests, not the wheel

        with Stack() as stack:
            for key in [k for k in os.environ if k.startswith("MODELYARD_HOME")]:
                del os.environ[key]
            os.environ.update(stack.env())
            import mlflow

            mlflow.set_tracking_uri(stack.tracking_uri)
            table["server"] = run_backend(args.n)
            listing = list_many(args.versions, stack.pg_port)
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
