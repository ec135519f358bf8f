"""A team stack whose MLflow server runs the basic-auth app (``mlflow server --app-name
basic-auth``): SQLite registry + moto S3, users created through the auth REST API.

Lean on purpose: SQLite instead of PostgreSQL (the auth app's behaviour does not depend on
the registry database), one server per session.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.support.devstack import HOST, MLFLOW_TIMEOUT, Stack, _http_status, _wait_until, free_port

ADMIN = ("admin", "modelyard-admin-pw-7")  # MLflow refuses its old default password
__all__ = ["ADMIN", "AuthStack"]


class AuthStack(Stack):
    """moto S3 + an MLflow server with the basic-auth app (its own auth database)."""

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def _steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [step for step in super()._steps() if step[0] in ("s3", "mlflow")]

    def _start_mlflow(self) -> None:
        if not self.mlflow_port:
            self.mlflow_port = free_port()
        config = self.root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{self.root / 'auth.db'}\n"
            f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # One PBKDF2 check per user and minute, not per request (the 2-core budget).
            "auth_cache_ttl_seconds = 60\n")
        env = self._child_env(MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint_url,
                              MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                              MLFLOW_AUTH_CONFIG_PATH=str(config),
                              MLFLOW_FLASK_SERVER_SECRET_KEY="modelyard-tests")
        self.mlflow = self._spawn(
            "mlflow",
            [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
             "--host", HOST, "--port", str(self.mlflow_port),
             "--backend-store-uri", self.backend_store_uri,
             "--artifacts-destination", f"s3://{self.bucket}/mlflow", "--workers", "1"],
            port=self.mlflow_port, env=env)
        _wait_until(lambda: _http_status(f"{self.tracking_uri}/health") == 200, self.mlflow,
                    MLFLOW_TIMEOUT, f"answer 200 on {self.tracking_uri}/health")

    # -- the auth REST API, as the admin ---------------------------------------------------
    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             auth: tuple[str, str] = ADMIN) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.tracking_uri}{path}", data=data,
                                         method=method)
        request.add_header("Authorization", "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode())
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else {}

    def create_user(self, username: str, password: str) -> None:
        try:
            self.call("POST", "/api/2.0/mlflow/users/create",
                      {"username": username, "password": password})
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if "already" not in body:  # anything but "already there" is a broken fixture
                raise RuntimeError(f"creating user {username}: HTTP {exc.code} {body}"
                                   ) from None

    def grant(self, username: str, model: str, permission: str) -> None:
        self.call("POST", "/api/3.0/mlflow/users/permissions/grant",
                  {"username": username, "resource_type": "registered_model",
                   "resource_id": model, "permission": permission})

    def env_for(self, user: str, password: str) -> dict[str, str]:
        return {**self.env(), "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": password}
