"""Reads at command-line speed: the lean reader beside MLflow's client, each in a new process.

    python benchmarks/reads.py [--sizes 1 10000] [--n 5] [--backends embedded server] [--cli]

For each backend (the embedded default; the team stack, started from ``tests/devstack.py``)
and each size, one model gets SIZE versions: v1.0.0 registered through modelyard and promoted
to staging, then production; the bulk copied from its rows in one SQL statement (MLflow's
``create_model_version`` costs O(n) per call: hours at 10,000); the newest registered through
modelyard, so every version a look-up names came through modelyard's write path. 1 in 97 bulk
versions is deleted, 1 in 89 pending.

Each look-up then runs N times as a new Python process (wall clock, median):
- ``lean``: settings + ``open_reader`` (``modelyard.reader``), what the read verbs will run;
- ``mlflow``: ``MlflowClient`` doing the same look-ups (``get_model_version_by_alias``,
  ``search_model_versions`` with a tag filter, newest first), as a script would;
- ``cli`` (with ``--cli``): today's ``modelyard --json list`` / ``details`` for reference.
``gto show`` does not apply (GTO reads git tags, not an MLflow registry).
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

LOOKUPS = ("list", "details@production", "details@v1.0.0", "details@latest")

LEAN = r"""
import json, sys
from modelyard.config import load_settings
from modelyard.reader import open_reader
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
import json, os, sys
from mlflow import MlflowClient
op, name = sys.argv[1:3]
client = MlflowClient(os.environ["BENCH_TRACKING_URI"])
by_name = "name = '%s'"
if op == "list":
    for model in client.search_registered_models():
        versions = client.search_model_versions(by_name % model.name, max_results=10000)
        found = len(versions)
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

_BULK_VERSIONS = """
INSERT INTO model_versions ({columns})
WITH RECURSIVE seq(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM seq WHERE k < {last})
SELECT {picked} FROM model_versions mv, seq WHERE mv.name = {p} AND mv.version = 1
"""
_BULK_TAGS = """
INSERT INTO model_version_tags (key, value, name, version, workspace)
WITH RECURSIVE seq(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM seq WHERE k < {last})
SELECT t.key, CASE t.key WHEN 'modelyard.semver' THEN '1.0.' || CAST(k - 1 AS TEXT)
                         WHEN 'modelyard.stage' THEN 'none'
                         WHEN 'modelyard.status' THEN
                              CASE WHEN k {mod} 89 = 0 THEN 'pending' ELSE 'ready' END
                         ELSE t.value END,
       t.name, k, t.workspace
FROM model_version_tags t, seq WHERE t.name = {p} AND t.version = 1
"""
_BULK_DELETE = """
UPDATE model_versions SET current_stage = 'Deleted_Internal', source = 'REDACTED-SOURCE-PATH',
       run_id = 'REDACTED-RUN-ID'
WHERE name = {p} AND version > 1 AND version < {end} AND version {mod} 97 = 0
"""


def _bulk_sql(connection: Any, columns: list[str], name: str, size: int, mark: str) -> None:
    """Copy version 1 (and its tags) into versions 2..size-1 in three statements."""
    picked = ", ".join("seq.k" if c == "version" else
                       ("mv.creation_time + seq.k - 86400000" if c == "creation_time"
                        else f"mv.{c}")
                       for c in columns)
    mod = "%%" if mark == "%s" else "%"  # psycopg2 wants a literal % doubled
    cursor = connection.cursor()
    cursor.execute(_BULK_VERSIONS.format(columns=", ".join(columns), last=size - 1,
                                         picked=picked, p=mark), (name,))
    cursor.execute(_BULK_TAGS.format(last=size - 1, p=mark, mod=mod), (name,))
    cursor.execute(_BULK_DELETE.format(p=mark, end=size, mod=mod), (name,))
    connection.commit()


def _model() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.random((60, 3))
    return LogisticRegression().fit(features, (features[:, 0] > 0.5).astype(int))


def build(yard: Any, name: str, size: int, bulk: Callable[[list[str], str, int], None]) -> None:
    model = _model()
    options: dict[str, Any] = {"pip_requirements": ["scikit-learn"]}
    first = yard.register(model, name, params={"c": 1}, metrics={"accuracy": 0.9}, **options)
    yard.promote(name, first.version, to="staging")
    yard.promote(name, first.version, to="production")
    if size > 2:
        bulk(_version_columns(yard), name, size)
    if size > 1:
        newest = yard.register(model, name, params={"c": 2}, metrics={"accuracy": 0.91},
                               **options)
        assert newest.version == size, (newest.version, size)


def _version_columns(yard: Any) -> list[str]:
    # MLflow's model_versions columns, read from MLflow's own table definition.
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    return [column.name for column in SqlModelVersion.__table__.columns]


def _median(command: list[str], env: dict[str, str], cwd: Path, n: int
            ) -> tuple[float, dict[str, Any]]:
    samples: list[float] = []
    answer: dict[str, Any] = {}
    for attempt in range(n + 1):  # the first run warms the file cache and is not counted
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[:3])} failed:\n{done.stderr[-2000:]}")
        if attempt:
            samples.append(elapsed)
        lines = done.stdout.strip().splitlines()
        if lines and lines[-1].startswith("{"):
            answer = json.loads(lines[-1])
    return statistics.median(samples), answer


def measure(backend: str, size: int, name: str, env: dict[str, str], cwd: Path, n: int,
            cli: bool) -> list[dict[str, Any]]:
    rows = []
    for lookup in LOOKUPS:
        lean, lean_answer = _median([sys.executable, "-c", LEAN, lookup, name], env, cwd, n)
        peer, _ = _median([sys.executable, "-c", MLFLOW, lookup, name], env, cwd, n)
        row = {"backend": backend, "versions": size, "lookup": lookup, "lean": lean,
               "mlflow": peer, "requests": lean_answer.get("requests")}
        if cli:
            verb = ["list"] if lookup == "list" else ["details",
                                                      f"{name}@{lookup.split('@', 1)[1]}"]
            row["cli"], _ = _median([sys.executable, "-m", "modelyard.cli", "--json", *verb],
                                    env, cwd, n)
        rows.append(row)
        print(f"  {backend:<8} {size:>6} {lookup:<20} lean {lean:6.2f} s   mlflow {peer:6.2f} s"
              + (f"   cli {row['cli']:6.2f} s" if cli else ""), file=sys.stderr, flush=True)
    return rows


def run_embedded(sizes: list[int], n: int, cli: bool, root: Path) -> list[dict[str, Any]]:
    import sqlite3

    from modelyard import Yard

    rows: list[dict[str, Any]] = []
    for size in sizes:
        folder = root / f"embedded-{size}"
        folder.mkdir()
        home = folder / ".modelyard"
        yard = Yard(home=str(home))
        db_path = home / "mlflow.db"

        def bulk(columns: list[str], name: str, count: int, db_path: Path = db_path) -> None:
            with sqlite3.connect(db_path) as connection:
                _bulk_sql(connection, columns, name, count, "?")

        name = f"bench-{size}"
        build(yard, name, size, bulk)
        env = _clean_env() | {"MODELYARD_HOME": str(home),
                              "BENCH_TRACKING_URI": yard.settings.resolved_tracking_uri}
        rows += measure("embedded", size, name, env, folder, n, cli)
    return rows


def run_server(sizes: list[int], n: int, cli: bool, root: Path) -> list[dict[str, Any]]:
    import psycopg2
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from devstack import PG_DATABASE, PG_USER, Stack
    from modelyard import Yard

    rows: list[dict[str, Any]] = []
    with Stack() as stack:
        stack_env = stack.env()
        os.environ.update(stack_env)  # this script's own process: boto3 / MLflow find S3

        def bulk(columns: list[str], name: str, count: int) -> None:
            connection = psycopg2.connect(host="127.0.0.1", port=stack.pg_port, user=PG_USER,
                                          dbname=PG_DATABASE)
            try:
                _bulk_sql(connection, columns, name, count, "%s")
            finally:
                connection.close()

        for size in sizes:
            folder = root / f"server-{size}"
            folder.mkdir()
            yard = Yard(tracking_uri=stack.tracking_uri, vault=f"s3://{stack.bucket}/v-{size}")
            name = f"bench-{size}"
            build(yard, name, size, bulk)
            env = _clean_env() | stack_env | {"BENCH_TRACKING_URI": stack.tracking_uri,
                                              "MODELYARD_VAULT": f"s3://{stack.bucket}/v-{size}"}
            rows += measure("server", size, name, env, folder, n, cli)
    return rows


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MODELYARD_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}


def report(rows: list[dict[str, Any]], n: int) -> None:
    print(f"\nreads as a new process, median of {n} runs (seconds); one model per size")
    header = f"{'backend':<9}{'versions':>9}  {'lookup':<20}{'lean':>7}{'mlflow':>8}{'ratio':>7}"
    has_cli = any("cli" in r for r in rows)
    print(header + (f"{'cli today':>11}" if has_cli else "") + f"{'HTTP calls':>12}")
    for r in rows:
        line = (f"{r['backend']:<9}{r['versions']:>9}  {r['lookup']:<20}{r['lean']:>7.2f}"
                f"{r['mlflow']:>8.2f}{r['mlflow'] / r['lean']:>6.1f}x")
        if has_cli:
            line += f"{r.get('cli', float('nan')):>11.2f}"
        line += f"{r['requests'] if r['requests'] is not None else '-':>12}"
        print(line)
    sizes = sorted({r["versions"] for r in rows})
    if len(sizes) > 1:
        print(f"\nflatness (lean, {sizes[-1]} versions / {sizes[0]} version):")
        for backend in sorted({r["backend"] for r in rows}):
            for lookup in LOOKUPS:
                pair = {r["versions"]: r["lean"] for r in rows
                        if r["backend"] == backend and r["lookup"] == lookup}
                if sizes[0] in pair and sizes[-1] in pair:
                    print(f"  {backend:<9} {lookup:<20} {pair[sizes[-1]] / pair[sizes[0]]:.2f}x")
    bare = _median([sys.executable, "-c", "pass"], dict(os.environ), Path.cwd(), n)[0]
    print(f"\n(python -c pass: {bare:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10_000])
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["embedded", "server"],
                        choices=["embedded", "server"])
    parser.add_argument("--cli", action="store_true", help="also time today's CLI verbs")
    args = parser.parse_args()
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
