"""Backup speed per object store: ``Yard.backup`` beside that store's own SDK uploading the same
files in parallel threads, to the same emulator on loopback, in the same run: boto3's
``upload_file`` (s3transfer) to moto S3, google-cloud-storage's ``upload_from_filename`` to
gcp-storage-emulator, azure-storage-blob's ``upload_blob`` to Azurite (installed by
``make test``).

A model folder with FILES files of SIZE MB each (plus a tiny saved sklearn model) is
registered on the embedded default (local vault); then, alternately, 3 times each:

- ``modelyard``: ``yard.protection.backup([(name, 1)])`` into a fresh prefix (a size
  look-up per object, hash check of every vault object, upload, manifest, audit trail,
  version record; on GCS and Azure the files go through the same SDK calls as the peer, in
  the backup's threads, and on Azure one more look-up per file proves the stored size);
- the SDK peer: one upload per file, all files in parallel threads (boto3's default
  ``TransferConfig``: 8 MB parts, 10 threads per file; GCS one resumable session per file;
  Azure one Put Blob per file under 64 MiB).

gcp-storage-emulator answers one request at a time: the test stack starts it with a deep
listen backlog (tests/support/clouds.py), else every client with more than a few requests in
flight waits 1 s per dropped connection. The load average is printed: on a shared machine
compare ratios from the same run only.

Then a second version with one file changed is backed up into the same store: bytes sent over
the version's total shows the deduplication.

    python benchmarks/backup.py [--files 10] [--size-mb 20] [--stores s3,gcs,azure]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--stores", default="s3,gcs,azure")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    logging.disable(logging.WARNING)
    size = args.size_mb * 1024 * 1024
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    moto = _start_moto(port)
    clouds = None
    try:
        if {"gcs", "azure"} & set(stores):
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.support.clouds import Emulators

            clouds = Emulators().start()
            os.environ.update(clouds.env())
        with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
            os.chdir(tmp)
            os.environ["MODELYARD_CACHE_DIR"] = str(Path(tmp) / "cache")
            run(Path(tmp), endpoint, args.files, size, stores)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(10)
        if clouds is not None:
            clouds.stop()


class Peer:
    """One store: modelyard's backup URL for a prefix, and its SDK's own parallel upload."""

    def __init__(self, label: str, url: str, overrides: dict[str, Any],
                 upload: Any) -> None:
        self.label, self.url, self.overrides, self.upload = label, url, overrides, upload


def _peers(endpoint: str, parts: list[Path]) -> dict[str, Peer]:
    def s3_upload(prefix: str) -> None:
        import boto3

        # Its own client, as modelyard's fresh Yard makes one (boto3 caches the models).
        peer = boto3.client("s3", endpoint_url=endpoint)
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(lambda p: peer.upload_file(str(p), BUCKET, f"{prefix}/{p.name}"),
                          parts))

    def gcs_upload(prefix: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        bucket = storage.Client(credentials=AnonymousCredentials(), project="bench").bucket(
            "modelyard")
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(lambda p: bucket.blob(f"{prefix}/{p.name}").upload_from_filename(
                str(p)), parts))

    def azure_upload(prefix: str) -> None:
        from azure.storage.blob import ContainerClient

        container = ContainerClient.from_connection_string(
            os.environ["AZURE_STORAGE_CONNECTION_STRING"], "modelyard")

        def one(path: Path) -> None:
            with path.open("rb") as handle:
                container.upload_blob(f"{prefix}/{path.name}", handle, overwrite=True,
                                      max_concurrency=4)

        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(one, parts))

    return {
        "s3": Peer("boto3 upload_file", f"s3://{BUCKET}/{{}}",
                   {"backup_endpoint_url": endpoint}, s3_upload),
        "gcs": Peer("GCS SDK upload", "gs://modelyard/{}", {}, gcs_upload),
        "azure": Peer("Azure SDK upload", "az://modelyard/{}", {}, azure_upload),
    }


def run(work: Path, endpoint: str, files: int, size: int, stores: list[str]) -> None:
    import boto3

    from modelyard import Yard
    from modelyard.store.storage import open_store

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    folder = _model_folder(work, files, size)
    parts = sorted(folder.glob("part-*.bin"))
    total = sum(p.stat().st_size for p in parts)
    yard = Yard()
    mv = yard.register_directory(folder, "big")
    changed = work / "model-v2"
    shutil.copytree(folder, changed)
    (changed / "part-00.bin").write_bytes(os.urandom(size))
    second = yard.register_directory(changed, "big")
    peers = _peers(endpoint, parts)
    mb = total / 1e6
    print(f"\nbackup of {files} files x {size // (1024 * 1024)} MB ({mb:.0f} MB) per store, "
          f"emulators on loopback, median of {ROUNDS}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'store':<7} {'':<20} {'seconds':>8} {'MB/s':>8}")
    for store_name in stores:
        peer = peers[store_name]

        def modelyard_backup(prefix: str, version: int = mv.version, peer: Peer = peer) -> Any:
            backup = Yard(backup=peer.url.format(prefix), **peer.overrides)
            report = backup.protection.backup([("big", version)])
            assert report.ok, report.failed
            return report

        def empty(prefix: str, peer: Peer = peer) -> None:
            store = open_store(peer.url.format(prefix),
                               endpoint_url=peer.overrides.get("backup_endpoint_url"))
            for key in store.list(""):
                store.delete(key)

        timings: dict[str, list[float]] = {"modelyard backup": [], peer.label: []}
        for index in range(ROUNDS):
            for label in (list(timings) if index % 2 == 0 else list(reversed(timings))):
                prefix = f"{store_name}-{label.split()[0]}-{index}"
                start = time.perf_counter()
                if label == "modelyard backup":
                    modelyard_backup(prefix)
                else:
                    peer.upload(prefix)
                timings[label].append(time.perf_counter() - start)
                if index < ROUNDS - 1:
                    empty(prefix)
        medians = {label: statistics.median(values) for label, values in timings.items()}
        for label, seconds in medians.items():
            print(f"{store_name:<7} {label:<20} {seconds:>8.2f} {mb / seconds:>8.0f}")
        ratio = medians["modelyard backup"] / medians[peer.label]
        print(f"{store_name:<7} ratio modelyard / SDK: {ratio:.2f}x (goal: <= 1.1x; load "
              f"average {os.getloadavg()[0]:.1f})")
        # The second version, one file changed, into the store that holds the first.
        report = modelyard_backup(f"{store_name}-modelyard-{ROUNDS - 1}", second.version)
        version_total = report.versions[0].bytes_total
        print(f"{store_name:<7} second version, 1 of {files} files changed: "
              f"{report.bytes_sent / 1e6:.1f} MB sent of {version_total / 1e6:.1f} MB "
              f"({100 * report.bytes_sent / version_total:.1f}%, goal: <= 15%)")


if __name__ == "__main__":
    main()
