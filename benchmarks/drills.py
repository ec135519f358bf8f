"""MTTR per drill scenario on the embedded default: median of N runs in one sandbox.

    python benchmarks/drills.py [--n 5] [--scenario model-corruption ...]

MTTR = detect + recover + verify (the inject phase is reported apart). No registry product
runs drills, so there is no peer to run beside it: each figure is printed beside the issue's
target (1 s for model, registry and storage scenarios, 5 s for data scenarios at 4,000 rows;
the pipeline scenario re-runs a DVC stage, bounded by that stage's run time) as a ratio.
The registry scenarios (model-deletion, registry-loss) run once, last: they need the backup
store's restore to recover, and without it they leave the sandbox without its model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = {"data": 5.0, "model": 1.0, "registry": 1.0, "storage": 1.0, "promotion": 1.0,
            "pipeline": float("nan")}
ONCE = ("model-deletion", "registry-loss")
PIPELINE_RUNS = 3  # each re-runs the train stage (a real training run): fewer, and said so


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--scenario", action="append", default=None)
    args = parser.parse_args()

    from modelyard import Yard
    from modelyard.core.config import load_settings
    from modelyard.incidents.scenarios import SCENARIOS

    folder = Path(tempfile.mkdtemp(prefix="modelyard-bench-drills-"))
    yard = Yard(load_settings({"home": str(folder / ".modelyard")}, environ={}, cwd=folder))
    kinds = {s.name: s.kind for s in SCENARIOS}
    wanted = args.scenario or [s.name for s in SCENARIOS if s.name not in ONCE] + list(ONCE)
    clock = time.perf_counter()
    yard.incidents.drill("model-corruption")  # builds the sandbox (not timed below)
    print(f"sandbox built in {time.perf_counter() - clock:.1f} s", file=sys.stderr)
    rows = []
    for name in wanted:
        runs = 1 if name in ONCE else min(args.n, PIPELINE_RUNS) \
            if name == "pipeline-failure" else args.n
        reports = [yard.incidents.drill(name) for _ in range(runs)]
        rows.append((name, reports))
        print(f"  {name}: {[round(r.mttr, 3) for r in reports]}", file=sys.stderr)
    print(f"MTTR per scenario, embedded default, median of {args.n} runs (seconds; "
          f"registry scenarios once, pipeline-failure {PIPELINE_RUNS} times)")
    header = (f"{'scenario':<18} {'runs':>4} {'detect':>7} {'recover':>8} {'verify':>7} "
              f"{'MTTR':>7} {'target':>7} {'MTTR/target':>11}  layer    ok")
    print(header)
    for name, reports in rows:
        med = {p: statistics.median(r.phases[p] for r in reports)
               for p in ("detect", "recover", "verify")}
        mttr = statistics.median(r.mttr for r in reports)
        target = TARGET_S[kinds[name]]
        ratio = f"{mttr / target:11.2f}" if target == target else f"{'-':>11}"
        ok = sum(r.ok for r in reports)
        print(f"{name:<18} {len(reports):>4} {med['detect']:7.3f} {med['recover']:8.3f} "
              f"{med['verify']:7.3f} {mttr:7.3f} {target:7.1f} {ratio}  "
              f"{reports[-1].layer or 'none':<8} {ok}/{len(reports)}")
    yard.incidents.close()


if __name__ == "__main__":
    main()
