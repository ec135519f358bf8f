"""Stage moves on the team stack: `modelyard promote` / `rollback` as new processes, with every
request they send to the tracking server (and to S3) counted, beside MLflow's client moving
the same alias in a fresh process.

    python benchmarks/moves.py [--sizes 10 1000] [--n 5]

The team stack (PostgreSQL + moto S3 + `mlflow server` with its default 4 workers) comes from
``tests/support/devstack.py``; a counting reverse proxy (``tests/support/counting_proxy.py``)
sits in front of the tracking server and another in front of S3, so a request is counted when
it reaches the server, whichever client sent it. For each size one model gets SIZE versions as
``benchmarks/reads.py`` builds them (v1.0.0 registered and promoted through modelyard; the bulk
copied in SQL; the newest registered through modelyard). Then N rounds of, each a new process,
timed (wall clock) and counted:

- ``promote NAME@vNEWEST --to production --force``: production moves from v1.0.0 to the
  newest (v1.0.0 archived);
- ``rollback NAME``: production goes back to v1.0.0 (the newest archived and marked).

The peer: a fresh ``python -c`` that imports MLflow and calls
``MlflowClient().set_registered_model_alias(NAME, "production", "1")``, the alias move
alone (no stage tags, no audit trail, no checks). Medians; registry calls of the last round,
and their sequential rounds: the longest chain of requests each sent after the one before it
was answered (requests sent at once share a round; ``CountingProxy.registry_rounds``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the repository: tests.support

PEER = r"""
import sys
from mlflow import MlflowClient
name, version = sys.argv[1:3]
MlflowClient().set_registered_model_alias(name, "production", version)
"""


def _run(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:6])} failed:\n{done.stderr[-2000:]}")
    return elapsed


def measure(name: str, newest: int, env: dict[str, str], cwd: Path, n: int,
            registry: Any, s3: Any) -> list[dict[str, Any]]:
    cli = [sys.executable, "-m", "modelyard", "--json"]
    moves = {
        "promote": [*cli, "promote", f"{name}@{newest}", "--to", "production", "--force",
                    "--reason", "bench"],
        "rollback": [*cli, "rollback", name, "--reason", "bench"],
    }
    samples: dict[str, list[float]] = {verb: [] for verb in moves}
    calls: dict[str, tuple[int, int, int, list[str]]] = {}
    for _ in range(n + 1):  # the first round warms the file cache and is not counted
        for verb, command in moves.items():
            registry.reset()
            s3.reset()
            elapsed = _run(command, env, cwd)
            samples[verb].append(elapsed)
            rounds = registry.registry_rounds()
            calls[verb] = (sum(len(r) for r in rounds), len(rounds), len(s3.calls),
                           [" + ".join(f"{m} {p.split('?')[0].removeprefix('/api/2.0/mlflow/')}"
                                       for m, p in step) for step in rounds])
    peer_samples = []
    for _ in range(n + 1):
        registry.reset()  # production is on version 1 (the rollback): the peer sets it again
        peer_samples.append(_run([sys.executable, "-c", PEER, name, "1"], env, cwd))
    peer_calls = len(registry.registry_calls())
    peer_rounds = len(registry.registry_rounds())
    peer = statistics.median(peer_samples[1:])
    rows = []
    for verb in moves:
        wall = statistics.median(samples[verb][1:])
        registry_calls, registry_rounds, s3_calls, what = calls[verb]
        rows.append({"verb": verb, "wall": wall, "registry": registry_calls,
                     "rounds": registry_rounds, "s3": s3_calls, "what": what, "peer": peer,
                     "peer_calls": peer_calls, "peer_rounds": peer_rounds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--show-calls", action="store_true", help="list the registry calls")
    args = parser.parse_args()

    from reads import _clean_env, build

    from modelyard import Yard
    from tests.support import bulk as bulk_sql
    from tests.support.counting_proxy import CountingProxy
    from tests.support.devstack import MLFLOW_DEFAULT_WORKERS, Stack

    results: list[tuple[int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="modelyard-moves-") as tmp, \
            Stack(mlflow_workers=MLFLOW_DEFAULT_WORKERS) as stack:
        stack_env = stack.env()
        os.environ.update(stack_env)  # this script's own process: boto3 / MLflow find S3

        def bulk(name: str, last: int) -> None:
            bulk_sql.copy_server(stack.pg_port, name, last)

        with CountingProxy(stack.tracking_uri) as registry, \
                CountingProxy(stack.s3_endpoint_url) as s3:
            for size in args.sizes:
                vault = f"s3://{stack.bucket}/moves-{size}"
                name = f"moves-{size}"
                build(Yard(tracking_uri=stack.tracking_uri, vault=vault), name, size, bulk)
                env = _clean_env() | stack_env | {
                    "MLFLOW_TRACKING_URI": registry.uri, "MLFLOW_S3_ENDPOINT_URL": s3.uri,
                    "MODELYARD_VAULT": vault}
                cwd = Path(tmp) / name
                cwd.mkdir()
                for row in measure(name, size, env, cwd, args.n, registry, s3):
                    results.append((size, row))
                    print(f"  {size:>6} {row['verb']:<9} {row['wall']:6.2f} s "
                          f"{row['registry']:>3} registry calls in {row['rounds']} rounds",
                          file=sys.stderr, flush=True)

    print(f"\nstage moves on the team stack, new processes, median of {args.n} runs (seconds)")
    print(f"{'versions':>9}  {'move':<9}{'modelyard':>10}{'calls':>7}{'rounds':>8}{'S3':>5}"
          f"{'mlflow alias':>14}{'calls':>7}{'rounds':>8}{'ratio':>8}")
    for size, r in results:
        print(f"{size:>9}  {r['verb']:<9}{r['wall']:>10.2f}{r['registry']:>7}{r['rounds']:>8}"
              f"{r['s3']:>5}{r['peer']:>14.2f}{r['peer_calls']:>7}{r['peer_rounds']:>8}"
              f"{r['wall'] / r['peer']:>7.2f}x")
    if args.show_calls:
        for size, r in results:
            print(f"\n{size} versions, {r['verb']}, round by round:")
            for number, step in enumerate(r["what"], 1):
                print(f"  {number}. {step}")
    bare = statistics.median(_run([sys.executable, "-c", "pass"], dict(os.environ), Path.cwd())
                             for _ in range(args.n))
    print("\n(bytecode cached, as installed: see reads.PYCACHE)")
    print(f"(python -c pass: {bare:.2f} s; 'calls' counts requests reaching the tracking "
          "server, 'rounds' their sequential round trips (requests sent at once share one), "
          "'S3' requests reaching the object store: the vault's audit trail)")


if __name__ == "__main__":
    main()
