"""Backup speed: ``Yard.backup`` beside boto3's ``upload_file`` (s3transfer, files in parallel
threads), to the same moto S3 server on loopback, in the same run.

A model folder with FILES files of SIZE MB each (plus a tiny saved sklearn model) is
registered on the embedded default (local vault); then, alternately, 3 times each:

- ``modelyard``: ``yard.protection.backup([(name, 1)])`` into a fresh prefix (hash check of
  every vault
  object, upload, manifest, audit trail, version record);
- ``boto3 peer``: one ``upload_file`` per file, all files in parallel threads (default
  ``TransferConfig``: 8 MB parts, 10 threads per file).

Then a second version with one file changed is backed up into the same store: bytes sent over
the version's total shows the deduplication.

    python benchmarks/backup.py [--files 10] [--size-mb 20]     # the issue's figure: --size-mb 100
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BUCKET = "bench"
ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto server did not start")


def _model_folder(root: Path, files: int, size: int) -> Path:
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    folder = root / "model"
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    mlflow.sklearn.save_model(model, folder, serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    rng = np.random.default_rng(0)
    for index in range(files):
        (folder / f"part-{index:02d}.bin").write_bytes(rng.bytes(size))
    return folder


def _empty(client: Any, prefix: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=20)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    size = args.size_mb * 1024 * 1024
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    moto = _start_moto(port)
    try:
        with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
            os.chdir(tmp)
            os.environ["MODELYARD_CACHE_DIR"] = str(Path(tmp) / "cache")
            run(Path(tmp), endpoint, args.files, size)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(10)


def run(work: Path, endpoint: str, files: int, size: int) -> None:
    import boto3

    from modelyard import Yard

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    folder = _model_folder(work, files, size)
    parts = sorted(folder.glob("part-*.bin"))
    total = sum(p.stat().st_size for p in parts)
    yard = Yard()
    mv = yard.register_directory(folder, "big")

    def modelyard_backup(prefix: str) -> int:
        backup = Yard(backup=f"s3://{BUCKET}/{prefix}", backup_endpoint_url=endpoint)
        report = backup.backup([("big", mv.version)])
        assert report.ok, report.failed
        return report.bytes_sent

    def peer_upload(prefix: str) -> None:
        # Its own client, as modelyard's fresh Yard makes one (boto3 caches the models).
        peer = boto3.client("s3", endpoint_url=endpoint)
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(lambda p: peer.upload_file(str(p), BUCKET, f"{prefix}/{p.name}"),
                          parts))

    timings: dict[str, list[float]] = {"modelyard backup": [], "boto3 upload_file": []}
    for index in range(ROUNDS):
        for label in (list(timings) if index % 2 == 0 else list(reversed(timings))):
            prefix = f"{label.split()[0]}-{index}"
            start = time.perf_counter()
            if label == "modelyard backup":
                modelyard_backup(prefix)
            else:
                peer_upload(prefix)
            timings[label].append(time.perf_counter() - start)
            if index < ROUNDS - 1:
                _empty(client, prefix)

    # A second version with one file changed, into the store that holds the first.
    changed = work / "model-v2"
    shutil.copytree(folder, changed)
    (changed / "part-00.bin").write_bytes(os.urandom(size))
    second = yard.register_directory(changed, "big")
    store = Yard(backup=f"s3://{BUCKET}/modelyard-{ROUNDS - 1}", backup_endpoint_url=endpoint)
    report = store.backup([("big", second.version)])
    version_total = report.versions[0].bytes_total

    mb = total / 1e6
    print(f"\nbackup of {files} files x {size // (1024 * 1024)} MB ({mb:.0f} MB) to moto S3 "
          f"on loopback, median of {ROUNDS}")
    print(f"{'':<20} {'seconds':>8} {'MB/s':>8}")
    medians = {label: statistics.median(values) for label, values in timings.items()}
    for label, seconds in medians.items():
        print(f"{label:<20} {seconds:>8.2f} {mb / seconds:>8.0f}")
    ratio = medians["modelyard backup"] / medians["boto3 upload_file"]
    print(f"ratio modelyard / boto3: {ratio:.2f}x (goal: <= 1.1x)")
    print(f"second version, 1 of {files} files changed: {report.bytes_sent / 1e6:.1f} MB sent "
          f"of {version_total / 1e6:.1f} MB ({100 * report.bytes_sent / version_total:.1f}%, "
          "goal: <= 15%)")


if __name__ == "__main__":
    main()
