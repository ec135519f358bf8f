"""A tracking server that takes connections and never answers (issue #24.11): a write ends
after one ``http_timeout`` with one line naming the server, never after every attempt of every
call (a read timeout is not retried, and the verb's next calls fail at once)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def silent_server() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # accepted, never read from, never answered

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


def test_writes_against_a_silent_server_end_within_one_timeout(
    silent_server: str, trained: dict[str, Any], tmp_path: Path,
) -> None:
    from modelyard import Yard
    from modelyard.errors import BackendError, YardError

    yard = Yard(tracking_uri=silent_server, vault=str(tmp_path / "vault"), http_timeout=2)
    client = yard.tracking
    for write in (lambda: yard.promote("m", 1, to="staging", force=True, reason="x"),
                  lambda: client.call(lambda: client.client.get_experiment_by_name("x"))):
        with pytest.raises(BackendError):  # once untimed: what it imports on first use
            write()
        time.sleep(2.1)  # the window after a silent answer is over: it asks again
        clock = time.perf_counter()
        with pytest.raises(BackendError) as caught:
            write()
        assert time.perf_counter() - clock < 4.5  # one timeout of 2 s, not 3 attempts
        assert silent_server in caught.value.message
        assert "no answer within 2 s" in caught.value.message
        clock = time.perf_counter()
        with pytest.raises(BackendError):  # not asked again at once
            write()
        assert time.perf_counter() - clock < 0.5

    time.sleep(2.1)  # the window is over: a registration asks once, then stops
    clock = time.perf_counter()
    with pytest.raises(YardError) as caught:  # RegistrationFailed, naming the server
        yard.register(trained["model"], "m", input_example=trained["X"].head(3),
                      pip_requirements=["scikit-learn"])
    assert time.perf_counter() - clock < 12, caught.value.message
    assert silent_server in caught.value.message and "\n" not in caught.value.message


def test_a_silent_s3_endpoint_ends_a_call_within_one_timeout(
    silent_server: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An S3 endpoint that takes the request and never answers: botocore would retry the
    read timeout (every attempt its full timeout); one attempt, and the store's next calls
    fail at once, naming the endpoint."""
    from modelyard.errors import StorageError
    from modelyard.store.s3 import S3Store

    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    store = S3Store("bucket", "vault", silent_server, timeout=2)
    with pytest.raises(StorageError):  # once untimed: botocore loads its models on first use
        store.put_bytes("k", b"x")
    time.sleep(2.1)
    clock = time.perf_counter()
    with pytest.raises(StorageError) as caught:
        store.put_bytes("k", b"x")
    assert time.perf_counter() - clock < 4.5  # one read timeout of 2 s, not 3 attempts
    assert silent_server in caught.value.message and "no answer within 2 s" in caught.value.message
    clock = time.perf_counter()
    with pytest.raises(StorageError):
        store.get_bytes("k")
    assert time.perf_counter() - clock < 0.5
