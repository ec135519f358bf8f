"""Reads at command-line speed, flat in the number of versions: modelyard's verbs and its lean
reader beside MLflow's client, each in a new process.

    python benchmarks/reads.py [--sizes 100 1000 10000] [--n 3] [--backends server] [--no-cli]

For each backend (the embedded default; the team stack, started from
``tests/support/devstack.py`` with MLflow's default 4 server workers)
and each size, one model gets SIZE versions: v1.0.0 registered through modelyard and promoted
to staging, then production; the bulk copied from its rows by SQL (``tests/support/bulk.py``:
MLflow's ``create_model_version`` costs O(n) per call, hours at 10,000); the newest registered
through modelyard, so every version a look-up names came through modelyard's write path (and
that last registration, into SIZE - 1 versions, is timed too: ``register``). 1 in 97 bulk
versions is deleted, 1 in 89 pending.

Each look-up then runs N times as a new process (wall clock, median of N after one warm-up):
- ``modelyard``: the CLI verb (``modelyard --json list``, ``details NAME@REF``, ``history
  NAME``, ``load NAME@production --to DIR``), what a user types; ``first``: its warm-up run,
  the first on this machine (modelyard's local cache empty for this registry: the counts
  ``list`` confirms, the audit trail's verified copy, manifests and model files);
- ``lean``: settings + ``open_reader`` alone (``modelyard.reader``), where it applies;
- ``mlflow``: ``MlflowClient`` doing the nearest thing a script would: ``search_registered_
  models`` (list), ``get_model_version_by_alias`` / ``search_model_versions`` with a tag
  filter, newest first (details), the newest page of 100 versions (history: MLflow keeps no
  audit trail), ``mlflow.artifacts.download_artifacts("models:/NAME@production")`` (load).
The measured processes share one cache folder per backend and size (a machine that has
not read this registry before: ``first``). ``gto show`` does not apply (GTO reads git tags,
not an MLflow registry). The machine may be shared: the figures are wall clock and noisy;
compare the columns of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOOKUPS = ("list", "details@production", "details@v1.0.0", "details@latest", "history",
           "load")
LEAN_LOOKUPS = LOOKUPS[:4]

LEAN = r"""
import json, sys
from modelyard.core.config import load_settings
from modelyard.backend.lean.reader import open_reader
op, name = sys.argv[1:3]
reader = open_reader(load_settings())
assert reader is not None, "no lean reader for these settings"
if op == "list":
    for model in reader.list_models():
        count = reader.count_visible(model.name)
        latest = reader.latest_visible(model.name)
        holders = {s: reader.get_version(model.name, v).tags.get("modelyard.semver")
                   for s, v in model.aliases.items() if s in ("staging", "production")}
        found = (count, latest and latest.version, holders)
else:
    ref = op.split("@", 1)[1]
    if ref == "latest":
        record = reader.latest_visible(name)
    elif ref.startswith("v"):
        record = reader.version_by_tag(name, "modelyard.semver", ref[1:])
    else:
        record = reader.get_version(name, reader.alias_holder(name, ref))
    run = reader.get_run(record.run_id)
    found = (record.version, record.tags.get("modelyard.semver"), run["metrics"])
print(json.dumps({"requests": getattr(reader, "requests", None), "found": repr(found)}))
"""

MLFLOW = r"""
import json, os, sys, tempfile
from mlflow import MlflowClient
op, name = sys.argv[1:3]
client = MlflowClient(os.environ["BENCH_TRACKING_URI"])
by_name = "name = '%s'"
if op == "list":
    found = [(m.name, m.aliases) for m in client.search_registered_models()]
elif op == "history":
    found = len(client.search_model_versions(by_name % name, max_results=100,
                                             order_by=["version_number DESC"]))
elif op == "load":
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["BENCH_TRACKING_URI"]  # models:/ resolves
    import mlflow.artifacts
    with tempfile.TemporaryDirectory() as tmp:
        found = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}@production", dst_path=tmp,
            tracking_uri=os.environ["BENCH_TRACKING_URI"])
else:
    ref = op.split("@", 1)[1]
    if ref == "latest":
        page = client.search_model_versions(by_name % name, max_results=5,
                                            order_by=["version_number DESC"])
        record = next(v for v in page if v.tags.get("modelyard.status") != "pending")
    elif ref.startswith("v"):
        record = client.search_model_versions(
            (by_name % name) + " AND tags.`modelyard.semver` = '%s'" % ref[1:],
            max_results=1, order_by=["version_number DESC"])[0]
    else:
        record = client.get_model_version_by_alias(name, ref)
    found = (record.version, client.get_run(record.run_id).data.metrics)
print(json.dumps({"found": repr(found)}))
"""

def small_model() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.random((60, 3))
    return LogisticRegression().fit(features, (features[:, 0] > 0.5).astype(int))


def build(yard: Any, name: str, size: int, bulk: Callable[[str, int], None]) -> float:
    """The model of ``size`` versions; the seconds the last registration took."""
    model = small_model()
    options: dict[str, Any] = {"pip_requirements": ["scikit-learn"]}
    first = yard.register(model, name, params={"c": 1}, metrics={"accuracy": 0.9}, **options)
    yard.promote(name, first.version, to="staging")
    yard.promote(name, first.version, to="production")
    if size > 2:
        bulk(name, size - 1)
    started = time.perf_counter()
    if size > 1:
        newest = yard.register(model, name, params={"c": 2}, metrics={"accuracy": 0.91},
                               **options)
        assert newest.version == size, (newest.version, size)
    return time.perf_counter() - started


def _median(command: list[str], env: dict[str, str], cwd: Path, n: int
            ) -> tuple[float, dict[str, Any]]:
    samples, answer, _ = _timed(command, env, cwd, n)
    return statistics.median(samples), answer


def _timed(command: list[str], env: dict[str, str], cwd: Path, n: int
           ) -> tuple[list[float], dict[str, Any], float]:
    """N timed runs after one warm-up run: (samples, the last JSON answer, the warm-up's
    time: the first run on this machine, before modelyard's local cache holds anything
    for this registry: counts, the audit trail's verified copy, manifests, model files)."""
    samples: list[float] = []
    first = 0.0
    answer: dict[str, Any] = {}
    for attempt in range(n + 1):  # the first run warms the file cache and is not counted
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[:5])} failed:\n{done.stderr[-2000:]}")
        if attempt:
            samples.append(elapsed)
        else:
            first = elapsed
        lines = done.stdout.strip().splitlines()
        if lines and lines[-1].startswith("{"):
            answer = json.loads(lines[-1])
    return samples, answer, first


def _verb(lookup: str, name: str, dest: Path) -> list[str]:
    if lookup == "list":
        return ["list"]
    if lookup == "history":
        return ["history", name]
    if lookup == "load":
        return ["load", f"{name}@production", "--to", str(dest)]
    return ["details", f"{name}@{lookup.split('@', 1)[1]}"]


def measure(backend: str, size: int, name: str, env: dict[str, str], cwd: Path, n: int,
            cli: bool) -> list[dict[str, Any]]:
    rows = []
    for lookup in LOOKUPS:
        row: dict[str, Any] = {"backend": backend, "versions": size, "lookup": lookup,
                               "lean": None, "requests": None, "cli": None}
        if lookup in LEAN_LOOKUPS:
            row["lean"], answer = _median([sys.executable, "-c", LEAN, lookup, name], env,
                                          cwd, n)
            row["requests"] = answer.get("requests")
        row["mlflow"], _ = _median([sys.executable, "-c", MLFLOW, lookup, name], env, cwd, n)
        if cli:
            samples, _, row["first"] = _timed(
                [sys.executable, "-m", "modelyard.cli", "--json",
                 *_verb(lookup, name, cwd / "loaded")], env, cwd, n)
            row["cli"] = statistics.median(samples)
        rows.append(row)
        print(f"  {backend:<8} {size:>6} {lookup:<20} modelyard {_s(row['cli'])} (first "
              f"{_s(row.get('first'))})   lean "
              f"{_s(row['lean'])}   mlflow {_s(row['mlflow'])}", file=sys.stderr, flush=True)
    return rows


def _s(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.2f}"


def run_embedded(sizes: list[int], n: int, cli: bool, root: Path) -> list[dict[str, Any]]:
    from modelyard import Yard
    from tests.support import bulk as bulk_mod

    rows: list[dict[str, Any]] = []
    for size in sizes:
        folder = root / f"embedded-{size}"
        folder.mkdir()
        home = folder / ".modelyard"
        yard = Yard(home=str(home))
        db_path = home / "mlflow.db"
        name = f"bench-{size}"
        took = build(yard, name, size,
                     lambda model, last, db=db_path: bulk_mod.copy_embedded(db, model, last))
        env = _clean_env() | {"MODELYARD_HOME": str(home),
                              "MODELYARD_CACHE_DIR": str(folder / "cache"),
                              "BENCH_TRACKING_URI": yard.settings.resolved_tracking_uri}
        rows.append(_register_row("embedded", size, took))
        rows += measure("embedded", size, name, env, folder, n, cli)
    return rows


def run_server(sizes: list[int], n: int, cli: bool, root: Path) -> list[dict[str, Any]]:
    from modelyard import Yard
    from tests.support import bulk as bulk_mod
    from tests.support.devstack import MLFLOW_DEFAULT_WORKERS, Stack

    rows: list[dict[str, Any]] = []
    with Stack(mlflow_workers=MLFLOW_DEFAULT_WORKERS) as stack:
        stack_env = stack.env()
        os.environ.update(stack_env)  # this script's own process: boto3 / MLflow find S3
        # One registry, one vault, as a team deploys them. Each size's model is measured
        # alone, as on the embedded default (one home per size): it is dropped from the
        # database before the next size is built, so ``list`` compares one model of 1
        # version with one model of 10,000, not one model with two.
        vault = f"s3://{stack.bucket}/vault"
        for size in sizes:
            folder = root / f"server-{size}"
            folder.mkdir()
            yard = Yard(tracking_uri=stack.tracking_uri, vault=vault)
            name = f"bench-{size}"
            took = build(yard, name, size, lambda model, last: bulk_mod.copy_server(
                stack.pg_port, model, last))
            env = _clean_env() | stack_env | {"BENCH_TRACKING_URI": stack.tracking_uri,
                                              "MODELYARD_VAULT": vault,
                                              "MODELYARD_CACHE_DIR": str(folder / "cache")}
            rows.append(_register_row("server", size, took))
            rows += measure("server", size, name, env, folder, n, cli)
            bulk_mod.drop_server(stack.pg_port, name)
    return rows


def _register_row(backend: str, size: int, took: float) -> dict[str, Any]:
    print(f"  {backend:<8} {size:>6} register (in-process, once) {took:6.2f} s",
          file=sys.stderr, flush=True)
    return {"backend": backend, "versions": size, "lookup": "register (1 run)", "cli": took,
            "lean": None, "mlflow": None, "requests": None}


# Bytecode: the processes measured run as an installed modelyard does (pip compiles its
# modules; MLflow's in site-packages are compiled), even where PYTHONDONTWRITEBYTECODE is set
# (it is on the team's shared machine, and would make every run compile modelyard's ~50
# modules from source: 0.2-0.4 s). The cache lives in the temp folder, never in the tree.
# --compile-each-run measures without it.
PYCACHE: Path | None = Path(tempfile.gettempdir()) / "modelyard-bench-pycache"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODELYARD_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    if PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def report(rows: list[dict[str, Any]], n: int) -> None:
    print(f"\nreads as a new process, median of {n} runs (seconds); one model per size")
    print(f"{'backend':<9}{'versions':>9}  {'lookup':<20}{'modelyard':>10}{'first':>7}"
          f"{'lean':>7}{'mlflow':>8}{'mlflow/modelyard':>17}{'HTTP calls (lean)':>19}")
    for r in rows:
        ratio = (f"{r['mlflow'] / r['cli']:.2f}x" if r.get("cli") and r.get("mlflow")
                 else "-")
        print(f"{r['backend']:<9}{r['versions']:>9}  {r['lookup']:<20}{_s(r.get('cli')):>10}"
              f"{_s(r.get('first')):>7}{_s(r.get('lean')):>7}{_s(r.get('mlflow')):>8}{ratio:>17}"
              f"{r['requests'] if r.get('requests') is not None else '-':>19}")
    sizes = sorted({r["versions"] for r in rows})
    if len(sizes) > 1:
        print(f"\nflatness (modelyard, {sizes[-1]} versions / {sizes[0]} versions; goal <= 1.5x):")
        for backend in sorted({r["backend"] for r in rows}):
            for lookup in LOOKUPS:
                pair = {r["versions"]: r.get("cli") for r in rows
                        if r["backend"] == backend and r["lookup"] == lookup}
                if pair.get(sizes[0]) and pair.get(sizes[-1]):
                    print(f"  {backend:<9} {lookup:<20} "
                          f"{pair[sizes[-1]] / pair[sizes[0]]:.2f}x")
    bare = _median([sys.executable, "-c", "pass"], dict(os.environ), Path.cwd(), n)[0]
    print(f"\n(python -c pass: {bare:.2f} s; CPUs: {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}: the machine may be shared, figures are noisy; bytecode "
          f"{'cached, as installed' if PYCACHE else 'compiled on every run'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["embedded", "server"],
                        choices=["embedded", "server"])
    parser.add_argument("--no-cli", dest="cli", action="store_false",
                        help="skip modelyard's CLI verbs (lean reader and MLflow only)")
    parser.add_argument("--cli", action="store_true", help=argparse.SUPPRESS)  # the default
    parser.add_argument("--compile-each-run", action="store_true",
                        help="no bytecode cache for the measured processes (see PYCACHE)")
    parser.set_defaults(cli=True)
    args = parser.parse_args()
    global PYCACHE
    if args.compile_each_run:
        PYCACHE = None
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support: bulk, devstack
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelyard-reads-") as tmp:
        root = Path(tmp)
        if "embedded" in args.backends:
            rows += run_embedded(args.sizes, args.n, args.cli, root)
        if "server" in args.backends:
            rows += run_server(args.sizes, args.n, args.cli, root)
    report(rows, args.n)


if __name__ == "__main__":
    main()
