"""Signing's cost: on P1 (registration of one scikit-learn model) and on verify throughput.

1. P1 on the embedded default: ``Yard.register`` of the RandomForest ``benchmarks/register.py``
   uses, N times, by a yard with ``signing_key`` and one without (each in its own home),
   round-robin in alternating order so the machine's noise falls on both alike; medians,
   and the added share (signed / unsigned - 1; the issue's bound: at most 10%). The warm-up
   pays the imports (model-signing's own import is shown apart: a fresh process pays it once).
2. Verify throughput on FILES files of SIZE MB: a signed version's check, every file hashed
   against the manifest (``Manifest.verify_directory``) and the signature checked against
   the trusted key (``Signatures.check``), beside hashlib's SHA-256 over the same files in
   1 MiB chunks, and the manifest check alone, round-robin in rotating order; medians of
   ROUNDS and the ratios (the issue's bound: signed / hashlib >= 0.9x).

    python benchmarks/signing.py [--n 7] [--files 4] [--size-mb 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MODELYARD_USER", "bench")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _keys(folder: Path) -> tuple[str, str]:
    from tests.unit.store.test_signatures import make_key

    return make_key(folder, "release")


def bench_register(work: Path, n: int, private: str, public: str) -> dict[str, float]:
    from register import _model

    from modelyard import Yard

    model, frame = _model()
    example = frame.head(3)
    yards = {"unsigned": Yard(home=str(work / "plain")),
             "signed": Yard(home=str(work / "signed"), signing_key=private,
                            trusted_keys=[public])}
    calls: dict[str, Callable[[], Any]] = {
        label: (lambda y=yard: y.register(model, "bench-signing", input_example=example))
        for label, yard in yards.items()}
    for call in calls.values():
        call()  # warm-up: imports, experiment, requirements
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for index in range(n):  # round-robin, order alternated: noise falls on both alike
        for label in (list(calls) if index % 2 == 0 else list(reversed(calls))):
            start = time.perf_counter()
            calls[label]()
            samples[label].append(time.perf_counter() - start)
    signed = yards["signed"].verify("bench-signing", "latest")
    assert signed.signature == "signed", signed
    return {label: statistics.median(values) for label, values in samples.items()}


def bench_verify(work: Path, files: int, size_mb: int, private: str, public: str,
                 rounds: int) -> dict[str, float]:
    from modelyard.core.settings import Settings
    from modelyard.store.signatures import Signatures
    from modelyard.store.storage import LocalStore
    from modelyard.store.vault import Manifest, Vault

    folder = work / "model"
    folder.mkdir()
    block = os.urandom(1024 * 1024)
    for index in range(files):
        with (folder / f"weights-{index}.bin").open("wb") as out:
            for _ in range(size_mb):
                out.write(block)
    manifest = Manifest.of_directory(folder)
    signatures = Signatures(Vault(LocalStore(work / "vault")),
                            Settings(signing_key=private, trusted_keys=[public]))
    key_id = signatures.sign("bench", manifest)

    def hashlib_only() -> None:
        for path in sorted(folder.iterdir()):
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)

    def unsigned_verify() -> None:
        manifest.verify_directory(folder, label="bench", semver="1.0.0")

    def signed_verify() -> None:
        signatures.check(manifest, key_id, name="bench", semver="1.0.0", stage="production")
        manifest.verify_directory(folder, label="bench", semver="1.0.0")

    hashlib_only()  # the page cache holds the files for both
    calls = {"hashlib": hashlib_only, "unsigned": unsigned_verify, "signed": signed_verify}
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for index in range(rounds):  # round-robin, order rotated: noise falls on all alike
        order = list(calls)[index % 3:] + list(calls)[:index % 3]
        for label in order:
            start = time.perf_counter()
            calls[label]()
            samples[label].append(time.perf_counter() - start)
    total_mb = files * size_mb
    return {label: total_mb / statistics.median(values) for label, values in samples.items()}


def import_cost() -> float:
    """Seconds a fresh process spends importing model-signing (paid once per process, by
    the first signature made or checked in it)."""
    code = ("import time; t = time.perf_counter(); import model_signing._signing.sign_ec_key; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=7)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
        work = Path(tmp)
        private, public = _keys(work)
        times = bench_register(work, args.n, private, public)
        added = times["signed"] / times["unsigned"] - 1
        print(f"P1 register (embedded, median of {args.n}): unsigned "
              f"{times['unsigned'] * 1000:.0f} ms, signed {times['signed'] * 1000:.0f} ms, "
              f"signing adds {added * 100:+.1f}% (bound: <= 10%)")
        rates = bench_verify(work, args.files, args.size_mb, private, public, args.rounds)
        print(f"verify {args.files} x {args.size_mb} MB (MB/s, median of {args.rounds}): "
              f"hashlib {rates['hashlib']:.0f}, manifest check {rates['unsigned']:.0f}, "
              f"manifest + signature check {rates['signed']:.0f}; signed / hashlib "
              f"{rates['signed'] / rates['hashlib']:.2f}x (bound: >= 0.9x), signed / unsigned "
              f"{rates['signed'] / rates['unsigned']:.2f}x")
    print(f"model-signing import in a fresh process: {import_cost():.2f} s (once per process)")


if __name__ == "__main__":
    main()
