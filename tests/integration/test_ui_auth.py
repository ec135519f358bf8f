"""The dashboard on a tracking server with MLflow authentication (``tests/support/authstack``):
without credentials it shows only a login; with a viewer's it reads as that viewer (what they
may not read is absent), never with the process's own; a password is in no page and no log."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator

import pytest

from tests.support.authstack import ADMIN, AuthStack

USERS = {"dana": "dana-pw-12345", "erin": "erin-pw-12345"}


@pytest.fixture(scope="module")
def auth_stack() -> Iterator[AuthStack]:
    with AuthStack(bucket="ui-auth") as running:
        for user, password in USERS.items():
            running.create_user(user, password)
        yield running


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_the_dashboard_reads_as_its_viewer(auth_stack: AuthStack,
                                           monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient

    from modelyard.core.config import load_settings
    from modelyard.ui.app import create_app

    suffix = uuid.uuid4().hex[:6]
    shared, secret = f"ui-shared-{suffix}", f"ui-secret-{suffix}"
    # The process runs with the admin's credentials: a viewer must never read with them.
    for key, value in auth_stack.env_for(*ADMIN).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELYARD_VAULT", f"s3://{auth_stack.bucket}/vault-{suffix}")
    admin = MlflowClient(auth_stack.tracking_uri)
    admin.create_registered_model(shared)
    admin.create_registered_model(secret)
    auth_stack.grant("dana", secret, "DENY")  # erin keeps the default READ

    caplog.set_level(logging.DEBUG)
    client = TestClient(create_app(load_settings()))

    for path in ("/", f"/model?name={shared}", "/audit", "/incidents"):
        anonymous = client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"].startswith("Basic ")
        assert "Sign in" in anonymous.text and shared not in anonymous.text
        assert secret not in anonymous.text

    wrong = client.get("/", headers=_basic("dana", "not-her-password"))
    assert wrong.status_code == 401 and shared not in wrong.text

    dana = client.get("/", headers=_basic("dana", USERS["dana"]))
    assert dana.status_code == 200
    assert shared in dana.text and secret not in dana.text
    assert "signed in as dana" in dana.text
    hidden = client.get(f"/model?name={secret}", headers=_basic("dana", USERS["dana"]))
    assert hidden.status_code in (403, 404) and "Traceback" not in hidden.text
    audit = client.get("/audit", headers=_basic("dana", USERS["dana"]))
    assert audit.status_code == 200 and secret not in audit.text

    erin = client.get("/", headers=_basic("erin", USERS["erin"]))
    assert erin.status_code == 200 and shared in erin.text and secret in erin.text
    assert client.get(f"/model?name={secret}",
                      headers=_basic("erin", USERS["erin"])).status_code == 200

    pages = [anonymous.text, wrong.text, dana.text, hidden.text, audit.text, erin.text]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for password in (*USERS.values(), ADMIN[1], "not-her-password"):
        assert all(password not in page for page in pages)
        assert password not in logged
