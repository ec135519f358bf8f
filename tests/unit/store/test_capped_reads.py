"""Every whole-file read a user can point at stops one byte past its limit (#31.9).

``stat().st_size`` is 0 for ``/dev/zero`` and a FIFO, so the limit must be kept by the read:
``import /dev/zero`` once grew to 23 GB until the kernel killed it. The CLI cases run the
real process under an address-space limit, so a read that does not stop fails fast instead
of eating the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.store.files import read_capped

_MEMORY = 1 << 30  # 1 GiB of address space: the CLI plus one capped document fits easily


def _limited() -> None:  # pragma: no cover - runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY, _MEMORY))


def _modelyard(args: list[str], cwd: Path, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelyard", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=60,
                          preexec_fn=_limited, check=False)


@pytest.fixture
def endless_fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO whose writer never stops until the reader goes away."""
    fifo = tmp_path / "endless.fifo"
    os.mkfifo(fifo)
    done = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "wb") as handle:
                block = b"{" * 65536
                while not done.is_set():
                    handle.write(block)
        except (BrokenPipeError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    yield fifo
    done.set()
    # Unblock a writer still waiting for a reader (the test failed before reading).
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass
    writer.join(timeout=5)


def _source(kind: str, tmp_path: Path, fifo: Path, size: int) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "fifo":
        return fifo
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(size)  # sparse: no disk is spent on the zeros
    return big


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "oversized-file"])
def test_import_refuses_an_endless_or_oversized_document_in_one_line(
        kind: str, tmp_path: Path, endless_fifo: Path) -> None:
    from modelyard.registry.export_format import MAX_DOCUMENT_BYTES

    source = _source(kind, tmp_path, endless_fifo, MAX_DOCUMENT_BYTES + 1)
    started = time.monotonic()
    done = _modelyard(["import", str(source)], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"Error: {source} is larger than {MAX_DOCUMENT_BYTES} bytes (the limit "
                     "for an export document)"]
    assert time.monotonic() - started < 30
    assert not (tmp_path / ".modelyard").exists()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "oversized-file"])
def test_a_config_file_that_never_ends_is_refused_in_one_line(
        kind: str, tmp_path: Path, endless_fifo: Path) -> None:
    source = _source(kind, tmp_path, endless_fifo, (1 << 20) + 1)
    done = _modelyard(["list"], tmp_path, {"MODELYARD_CONFIG": str(source)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: {source}: (file): larger than 1048576 bytes (the limit for a config file)"]


def test_a_config_file_given_through_a_pipe_is_read(tmp_path: Path) -> None:
    """``MODELYARD_CONFIG=<(...)`` is a FIFO, not "file not found"."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write(b"experiment = 'piped'\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    from modelyard.core.config import load_settings

    settings = load_settings(environ={"MODELYARD_CONFIG": str(fifo)}, cwd=tmp_path)
    writer.join(timeout=5)
    assert settings.experiment == "piped"


def test_a_folder_named_as_the_config_file_is_called_a_folder(tmp_path: Path) -> None:
    from modelyard.core.config import load_settings
    from modelyard.errors import ConfigError

    with pytest.raises(ConfigError, match=r": \(file\): a folder, not a config file$"):
        load_settings(environ={"MODELYARD_CONFIG": str(tmp_path)}, cwd=tmp_path)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=0, max_value=300), limit=st.integers(min_value=0,
                                                                       max_value=300))
def test_read_capped_returns_the_file_or_names_the_limit(tmp_path_factory: pytest.TempPathFactory,
                                                         size: int, limit: int) -> None:
    path = tmp_path_factory.mktemp("capped") / "file"
    content = bytes(range(256)) * 2
    path.write_bytes(content[:size])
    if size <= limit:
        assert read_capped(path, limit, "a test file") == content[:size]
        return
    with pytest.raises(InvalidInput) as caught:
        read_capped(path, limit, "a test file")
    assert caught.value.message == (f"{path} is larger than {limit} bytes (the limit for "
                                    "a test file)")
    assert caught.value.fields["too_large"]


def test_read_capped_stops_reading_dev_zero() -> None:
    with pytest.raises(InvalidInput, match=r"^/dev/zero is larger than 4096 bytes \(the limit "
                       r"for a test file\)$"):
        read_capped(Path("/dev/zero"), 4096, "a test file")


def test_read_capped_names_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r": no such file$"):
        read_capped(tmp_path / "missing", 10, "a test file")
    with pytest.raises(InvalidInput, match=r" is a folder, not a test file$"):
        read_capped(tmp_path, 10, "a test file")


def test_a_model_folders_mlmodel_is_read_within_its_limit(tmp_path: Path) -> None:
    from modelyard.backend.mlmodel import MAX_MLMODEL_BYTES, read_mlmodel

    with open(tmp_path / "MLmodel", "wb") as handle:
        handle.truncate(MAX_MLMODEL_BYTES + 1)
    with pytest.raises(InvalidInput, match=rf"MLmodel is larger than {MAX_MLMODEL_BYTES} "
                       r"bytes \(the limit for an MLmodel file\)$"):
        read_mlmodel(tmp_path)


def test_a_followed_link_to_a_device_is_refused_not_copied_forever(tmp_path: Path) -> None:
    from modelyard.store.files import tree_plan

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").symlink_to("/dev/zero")
    with pytest.raises(InvalidInput, match=r"^weights\.bin is a symlink to /dev/zero, which is "
                       r"not a regular file; refused$"):
        tree_plan(tmp_path / "model", follow_links=True)


def test_a_dvc_lock_past_its_limit_is_named(tmp_path: Path) -> None:
    from modelyard.project.dvc import MAX_DVC_FILE_BYTES, load_dvc_yaml

    lock = tmp_path / "dvc.lock"
    with open(lock, "wb") as handle:
        handle.truncate(MAX_DVC_FILE_BYTES + 1)
    with pytest.raises(InvalidInput, match=r"dvc\.lock is larger than .* \(the limit for a DVC "
                       r"file\)$"):
        load_dvc_yaml(lock)
    lock.write_text("stages: {}\n")
    assert load_dvc_yaml(lock) == {"stages": {}}
    assert load_dvc_yaml(tmp_path / "missing.lock") is None
