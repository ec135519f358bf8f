"""Time promote / rollback on the server backend for a model with 500 versions.

Run: .venv/bin/python benchmarks/lifecycle.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("MODELYARD_USER", "bench")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        run(count, Path(tmp))


def run(count: int, work: Path) -> None:
    os.chdir(work)
    os.environ["MODELYARD_CACHE_DIR"] = str(work / "cache")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
    from tests.support.devstack import Stack  # the test stack lives with the tests, not the wheel

    with Stack() as stack:
        os.environ.update(stack.env())
        os.environ["MODELYARD_VAULT"] = f"s3://{stack.bucket}/bench-vault"
        import pandas as pd
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        from modelyard import Yard

        X, y = make_classification(n_samples=50, n_features=3, n_informative=2, n_redundant=0,
                                   random_state=0)
        frame = pd.DataFrame(X, columns=["a", "b", "c"])
        yard = Yard()
        name = f"bench-{uuid.uuid4().hex[:6]}"
        first = yard.register(LogisticRegression().fit(frame, y), name,
                              input_example=frame.head(2), metrics={"accuracy": 0.9})
        record = yard.tracking.get_version(name, first.version)
        base_tags = {k: v for k, v in record.tags.items()
                     if k in ("modelyard.manifest_sha256", "modelyard.flavor")}
        t0 = time.perf_counter()

        def create(i: int) -> None:
            tags = {**base_tags, "modelyard.semver": f"1.0.{i}", "modelyard.stage": "none",
                    "modelyard.status": "ready"}
            yard.tracking.create_version(name, record.source, record.run_id, tags, None,
                                         record.model_id)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(1, count)))
        print(f"created {count} versions in {time.perf_counter() - t0:.1f}s")
        total = len(yard.tracking.versions(name))
        print(f"model {name} has {total} versions")

        calls: list[str] = []
        client = yard.tracking.client

        class Counting:
            def __getattr__(self, attr: str) -> object:
                target = getattr(client, attr)
                if not callable(target):
                    return target

                def wrapper(*args: object, **kwargs: object) -> object:
                    calls.append(attr)
                    return target(*args, **kwargs)

                return wrapper

        yard.tracking._client = Counting()  # type: ignore[assignment]

        def timed(label: str, action: object) -> None:
            calls.clear()
            start = time.perf_counter()
            action()  # type: ignore[operator]
            print(f"{label}: {time.perf_counter() - start:.3f}s, {len(calls)} registry calls")

        timed("promote #10 -> staging", lambda: yard.promote(name, 10, to="staging"))
        timed("promote #10 -> production", lambda: yard.promote(name, 10, to="production"))
        late = max(2, count - 50)
        timed(f"promote #{late} -> production (force)", lambda: yard.promote(
            name, late, to="production", force=True, reason="bench"))
        timed("rollback production", lambda: yard.rollback(name, reason="bench"))
        timed("promote @production(#10) ref -> staging", lambda: yard.promote(
            name, "production", to="staging"))
        timed("full listing (yard.versions) for comparison", lambda: yard.versions(name))


if __name__ == "__main__":
    main()
