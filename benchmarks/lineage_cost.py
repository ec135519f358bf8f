"""What recording lineage costs P1 (registration of one sklearn model, as
``benchmarks/register.py`` registers it): two modelyard source trees side by side, one run.

Each tree (``--before`` and ``--after``: folders holding the ``modelyard`` package, e.g. a
``git archive REV src`` export) gets a worker process of its own, in its own DVC + git project
with a pipeline and a dirty tracked file (so the dirty check reads ``dvc.yaml`` and filters, its
most expensive path) and an embedded registry. Each worker registers once to warm up, then
the driver asks them in turn, ROUNDS times, so machine noise falls on both alike; the answer
is each side's median seconds per registration and the difference.

    git archive BASE src | tar -x -C /tmp/before
    python benchmarks/lineage_cost.py --before /tmp/before/src --after src [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import sys, time
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from modelyard import Yard

features, target = make_classification(n_samples=500, n_features=8, random_state=0)
frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(8)])
model = RandomForestClassifier(n_estimators=30, random_state=0).fit(frame, target)
example = frame.head(3)
yard = Yard()
yard.register(model, "bench-lineage", input_example=example)  # warm-up
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    yard.register(model, "bench-lineage", input_example=example, data=["data.csv"])
    print(time.perf_counter() - start, flush=True)
"""

DVC_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py, data.csv]
    params: [train]
    outs: [model.pkl]
    metrics:
      - metrics.json:
          cache: false
"""


def _project(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("train:\n  seed: 1\n")
    (root / "train.py").write_text("print('train')\n")
    (root / "metrics.json").write_text("{}\n")
    (root / "data.csv").write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(1000)))
    (root / ".gitignore").write_text("/.modelyard/\n")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b.invalid"]
    for argv in ([*git, "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                 [*git, "add", "-A"], [*git, "commit", "-q", "-m", "start"]):
        subprocess.run(argv, cwd=root, check=True, capture_output=True)
    (root / "metrics.json").write_text('{"accuracy": 1}\n')  # the pipeline's: not dirty
    (root / "train.py").write_text("print('train, edited')\n")  # dirty


def _worker(source: Path, root: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODELYARD_", "MLFLOW_", "AWS_"))}
    env.update(PYTHONPATH=str(source.resolve()), MODELYARD_CACHE_DIR=str(root / "cache"),
               PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=root, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"the worker on {source} did not start ({line!r})")
    return proc


def _one(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-lineage-") as tmp:
        sides = {}
        for side in ("before", "after"):
            root = Path(tmp) / side
            _project(root)
            sides[side] = _worker(getattr(args, side), root)
        samples: dict[str, list[float]] = {side: [] for side in sides}
        try:
            for index in range(args.rounds):
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                for side in order:
                    samples[side].append(_one(sides[side]))
        finally:
            for proc in sides.values():
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=120)
    medians = {side: statistics.median(values) for side, values in samples.items()}
    change = medians["after"] / medians["before"] - 1
    print(json.dumps({"rounds": args.rounds, "median_s": medians,
                      "change_percent": round(100 * change, 2)}, indent=1))


if __name__ == "__main__":
    main()
