"""verify --all throughput beside hashlib, and snapshot restore of N models; one run, medians.

1. ``yard.protection.verify_all(name)`` on the embedded default for a model of FILES files of
   SIZE MB
   (every artifact file and every vault object is hashed), beside the peer: hashlib's
   SHA-256 on one core over the very same files (artifact copies and vault objects), read in
   1 MiB chunks, as ``sha256sum``-style scripts do. Medians of 3; ratio = modelyard's rate /
   the peer's (> 1: faster, with more than one core).
2. ``Yard.snapshot_restore`` of N models whose production alias moved since the snapshot, on
   the embedded default and (``--server``) on the team stack (tests/support/devstack.py),
   beside the peer: the same N alias moves with a plain
   ``MlflowClient.set_registered_model_alias`` loop (no audit, no stage tags). Medians of 3.

    python benchmarks/verify.py [--files 10] [--size-mb 20] [--models 50] [--server]
    python benchmarks/verify.py --size-mb 100          # the issue's 1 GB in 10 files
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timing import median_seconds

os.environ.setdefault("MODELYARD_USER", "bench")


def _tiny_model() -> tuple[Any, Any]:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=50, n_features=3, n_informative=2, n_redundant=0,
                               random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    return LogisticRegression().fit(frame, y), frame


def bench_verify(work: Path, files: int, size_mb: int) -> None:
    import mlflow.sklearn

    from modelyard import Yard
    from modelyard.store.vault import object_key

    model, frame = _tiny_model()
    folder = work / "big-model"
    mlflow.sklearn.save_model(model, str(folder), input_example=frame.head(2),
                              pip_requirements=["scikit-learn"])
    block = os.urandom(1024 * 1024)
    for i in range(files):
        with open(folder / f"weights-{i:02d}.bin", "wb") as handle:
            for j in range(size_mb):
                handle.write(block[:-8] + i.to_bytes(4, "big") + j.to_bytes(4, "big"))
    yard = Yard(home=str(work / ".modelyard"))
    mv = yard.register_directory(folder, "big")
    manifest = yard._loader.manifest_of(yard.get("big", mv.version, full=False))
    root = yard.tracking.artifacts.local_artifact_root(yard.tracking.artifact_location(
        yard.resolve("big", mv.version)))
    assert root is not None
    vault_root = Path(yard.settings.resolved_vault)
    paths = [root / rel for rel in manifest.files]
    paths += [vault_root / object_key(oid) for oid in {o for o, _ in manifest.files.values()}]
    total = sum(p.stat().st_size for p in paths)

    def peer() -> None:
        for path in paths:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)

    def ours() -> None:
        report = yard.protection.verify_all("big")
        assert report.ok and report.bytes_hashed == total, report

    ours()  # warm: the page cache holds every file for both
    peer()
    t_peer, t_ours = median_seconds(peer), median_seconds(ours)
    gb = total / 1e9
    print(f"verify: {len(paths)} files, {gb:.2f} GB hashed (artifact store + vault), "
          f"{os.cpu_count()} cores")
    print(f"  {'hashlib sha256, 1 core (peer)':34} {t_peer:7.3f} s  {gb / t_peer:6.2f} GB/s")
    print(f"  {'modelyard verify_all':34} {t_ours:7.3f} s  {gb / t_ours:6.2f} GB/s")
    print(f"  ratio (modelyard rate / peer rate): {t_peer / t_ours:.2f}x")


def bench_restore(label: str, models: int, make_yard: Callable[[], Any]) -> None:
    from mlflow import MlflowClient

    from modelyard.core.names import T_MANIFEST, T_SEMVER, T_STAGE, T_STATUS

    yard = make_yard()
    model, frame = _tiny_model()
    prefix = f"snap-{uuid.uuid4().hex[:6]}"
    real = yard.register(model, f"{prefix}-base", input_example=frame.head(2),
                         pip_requirements=["scikit-learn"])
    record = yard.tracking.get_version(real.name, real.version)
    names = [f"{prefix}-{i:03d}" for i in range(models)]
    for name in names:  # two versions each, made directly (a registration costs seconds)
        yard.tracking.ensure_registered_model(name)
        for patch in (0, 1):
            yard.tracking.create_version(
                name, record.source, record.run_id,
                {T_SEMVER: f"1.0.{patch}", T_STATUS: "ready", T_STAGE: "none",
                 T_MANIFEST: record.tags.get(T_MANIFEST, "")}, None, record.model_id)
        yard.promote(name, 1, to="production", force=True, reason="bench")
    tag = f"{prefix}-snap"
    yard.protection.snapshots.create(tag, models=names, include_data=False)
    client = MlflowClient(yard.tracking.tracking_uri, yard.tracking.registry_uri)

    def drift() -> None:  # every production alias moves away (audited, like a promotion)
        for name in names:
            yard.promote(name, 2, to="production", force=True, reason="bench drift")

    def ours() -> None:
        result = yard.protection.snapshots.restore(tag)
        assert len(result.moves) == models, len(result.moves)

    def peer() -> None:
        for name in names:
            client.set_registered_model_alias(name, "production", "1")

    samples_ours, samples_peer = [], []
    for _ in range(3):
        drift()
        start = time.perf_counter()
        ours()
        samples_ours.append(time.perf_counter() - start)
        for name in names:
            client.set_registered_model_alias(name, "production", "2")
        start = time.perf_counter()
        peer()
        samples_peer.append(time.perf_counter() - start)
    # all as recorded: nothing moves
    nothing = median_seconds(lambda: yard.protection.snapshots.restore(tag))
    t_ours, t_peer = statistics.median(samples_ours), statistics.median(samples_peer)
    print(f"snapshot restore, {models} models, {label}:")
    print(f"  {'MlflowClient alias loop (peer)':34} {t_peer:7.3f} s")
    print(f"  {'modelyard snapshot_restore':34} {t_ours:7.3f} s  (audited moves, stage tags)")
    print(f"  {'modelyard, nothing to move':34} {nothing:7.3f} s")
    print(f"  ratio (modelyard / peer): {t_ours / t_peer:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--server", action="store_true", help="also on the team stack")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        work = Path(tmp)
        os.chdir(work)
        os.environ["MODELYARD_CACHE_DIR"] = str(work / "cache")
        from modelyard import Yard

        if not args.skip_verify:
            bench_verify(work, args.files, args.size_mb)
        bench_restore("embedded default", args.models,
                      lambda: Yard(home=str(work / "embedded")))
        if args.server:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support
            from tests.support.devstack import Stack  # the test stack: with the tests

            with Stack() as stack:
                os.environ.update(stack.env())
                os.environ["MODELYARD_VAULT"] = f"s3://{stack.bucket}/bench-vault"
                bench_restore("team stack (server)", args.models, Yard)


if __name__ == "__main__":
    main()
