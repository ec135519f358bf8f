"""The dashboard's pages at 10,000 versions: each page's server time, median of N.

    python benchmarks/bench_ui.py [--versions 10000] [--n 5] [--backends embedded server]

For each backend (the embedded default; the team stack from ``tests/support/devstack.py``)
one model gets VERSIONS versions: v1.0.0 registered through modelyard and promoted to staging
then production, the bulk copied from its rows by SQL (``tests/support/bulk.py``, as
``benchmarks/reads.py`` does; 1 in 97 deleted, 1 in 89 pending), the newest registered
through modelyard and promoted to staging. A second, small model stands beside it.

The pages are then served by a new process (the dashboard's own: it never imports mlflow,
which this script checks) and each page is requested N times after one warm-up, in process
through FastAPI's test client: the figure is the server's time for the whole page (every
registry, vault and trail read it makes), without a browser's. Target: 0.5 s or less each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reads import build as built_model
from reads import small_model

TARGET_S = 0.5
PAGES = {
    "overview": "/",
    "model": "/model?name={name}",
    "model older page": "/model?name={name}&below=5000",
    "compare": "/model?name={name}&a=v1.0.0&b=production",
    "version": "/version?name={name}&ref=production",
    "audit": "/audit",
    "incidents": "/incidents",
    "serving": "/serving?name={name}&since=24h",
}

MEASURE = r"""
import json, statistics, sys, time
from fastapi.testclient import TestClient
from modelyard.core.config import load_settings
from modelyard.ui.app import create_app
pages, n = json.loads(sys.argv[1]), int(sys.argv[2])
client = TestClient(create_app(load_settings()))
found = {}
for label, path in pages.items():
    samples = []
    for i in range(n + 1):
        started = time.perf_counter()
        answer = client.get(path)
        took = time.perf_counter() - started
        assert answer.status_code == 200, (path, answer.status_code, answer.text[-400:])
        if i:  # the first is the warm-up
            samples.append(took)
    found[label] = {"median": statistics.median(samples), "max": max(samples)}
found["mlflow imported"] = "mlflow" in sys.modules
print(json.dumps(found))
"""


def build(yard: Any, name: str, size: int, bulk: Any) -> None:
    """``reads.build``'s model of ``size`` versions (production #1, newest #size), with its
    newest in staging, and a second small model."""
    built_model(yard, name, size, bulk)
    yard.promote(name, size, to="staging")
    small = yard.register(small_model(), f"{name}-small", metrics={"accuracy": 0.8},
                          pip_requirements=["scikit-learn"])
    yard.promote(small.name, small.version, to="production", force=True, reason="bench")


def measure(env: dict[str, str], cwd: Path, name: str, n: int) -> dict[str, Any]:
    pages = {label: path.format(name=name) for label, path in PAGES.items()}
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(pages), str(n)],
                          env=env, cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"measuring failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "MODELYARD_", "AWS_"))}


def run_embedded(size: int, n: int, root: Path) -> dict[str, Any]:
    from modelyard import Yard
    from tests.support import bulk as bulk_mod

    home = root / "embedded" / ".modelyard"
    home.parent.mkdir()
    yard = Yard(home=str(home))
    db = home / "mlflow.db"
    name = "bench-ui"
    clock = time.perf_counter()
    build(yard, name, size, lambda model, last: bulk_mod.copy_embedded(db, model, last))
    print(f"  embedded: {size} versions built in {time.perf_counter() - clock:.1f} s",
          file=sys.stderr, flush=True)
    env = _clean_env() | {"MODELYARD_HOME": str(home),
                          "MODELYARD_CACHE_DIR": str(root / "embedded" / "cache")}
    return measure(env, home.parent, name, n)


def run_server(size: int, n: int, root: Path) -> dict[str, Any]:
    saved = dict(os.environ)
    try:
        return _run_server(size, n, root)
    finally:  # the stack's variables must not reach a later embedded run (its S3 is gone)
        os.environ.clear()
        os.environ.update(saved)


def _run_server(size: int, n: int, root: Path) -> dict[str, Any]:
    from modelyard import Yard
    from tests.support import bulk as bulk_mod
    from tests.support.devstack import Stack

    with Stack() as stack:
        stack_env = stack.env()
        os.environ.update(stack_env)  # this script's own process: boto3 / MLflow find S3
        vault = f"s3://{stack.bucket}/vault"
        yard = Yard(tracking_uri=stack.tracking_uri, vault=vault)
        name = "bench-ui"
        clock = time.perf_counter()
        build(yard, name, size,
              lambda model, last: bulk_mod.copy_server(stack.pg_port, model, last))
        print(f"  server: {size} versions built in {time.perf_counter() - clock:.1f} s",
              file=sys.stderr, flush=True)
        folder = root / "server"
        folder.mkdir()
        env = _clean_env() | stack_env | {"MODELYARD_VAULT": vault,
                                          "MODELYARD_CACHE_DIR": str(folder / "cache")}
        return measure(env, folder, name, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["embedded"],
                        choices=["embedded", "server"])
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-ui-") as tmp:
        root = Path(tmp)
        for backend in args.backends:
            run = run_embedded if backend == "embedded" else run_server
            results[backend] = run(args.versions, args.n, root)
    print(f"\nDashboard pages at {args.versions} versions: server time per page, median of "
          f"{args.n} (max), target <= {TARGET_S} s")
    print(f"{'page':<18}" + "".join(f"{b:>22}" for b in results))
    slow = []
    for label in PAGES:
        cells = []
        for backend, found in results.items():
            median, worst = found[label]["median"], found[label]["max"]
            cells.append(f"{median:8.3f} s ({worst:.3f})")
            if median > TARGET_S:
                slow.append(f"{backend} {label}")
        print(f"{label:<18}" + "".join(f"{c:>22}" for c in cells))
    for backend, found in results.items():
        print(f"{backend}: mlflow imported by the dashboard's process: "
              f"{found['mlflow imported']}")
    if slow:
        print(f"over {TARGET_S} s: {', '.join(slow)}")


if __name__ == "__main__":
    main()
