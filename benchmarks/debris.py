"""What the debris checks cost: ``health`` and ``verify --all`` on an embedded registry of N
versions (medians of 3), and one registration (the journal's writes).

Build the registry once, then time it with any checkout's code (its ``src`` first on
PYTHONPATH), so the figures before and after the checks are taken on the same registry:

    PYTHONPATH=src python benchmarks/debris.py --home /tmp/reg --build --versions 300
    PYTHONPATH=src python benchmarks/debris.py --home /tmp/reg          # this checkout
    PYTHONPATH=/path/to/older/src python benchmarks/debris.py --home /tmp/reg
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

from timing import median_seconds

os.environ.setdefault("MODELYARD_USER", "bench")


def _saved(folder: Path) -> Path:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=50, n_features=3, n_informative=2, n_redundant=0,
                               random_state=0)
    model = LogisticRegression().fit(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    mlflow.sklearn.save_model(model, str(folder), serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--versions", type=int, default=300)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from modelyard import Yard

    yard = Yard(home=args.home)
    if args.build:
        with tempfile.TemporaryDirectory() as tmp:
            saved = _saved(Path(tmp) / "saved")
            start = time.perf_counter()
            for i in range(args.versions):
                mv = yard.register_directory(saved, f"m{i % 3}", params={"i": i})
            print(f"built {args.versions} versions in {time.perf_counter() - start:.1f} s")
            yard.promote(mv.name, mv.version, to="production", force=True, reason="bench")
            one = median_seconds(lambda: yard.register_directory(saved, "m0", params={"x": "y"}))
            print(f"one registration: {one * 1000:.0f} ms")
        return
    health = median_seconds(lambda: yard.incidents.health())
    verify = median_seconds(lambda: yard.protection.verify_all())
    print(f"health: {health:.2f} s   verify --all: {verify:.2f} s")


if __name__ == "__main__":
    main()
