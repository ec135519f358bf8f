"""MLflow's transports as one yard's ``Connection`` uses them: bounded, bound to its URIs, silent.

MLflow reads its HTTP retry policy (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``_TIMEOUT``,
``_BACKOFF_FACTOR``) from the environment on every request, and its defaults retry a dead
server for about four minutes; its S3 artifact repository reads the endpoint from
``MLFLOW_S3_ENDPOINT_URL``. A library must not write the environment, so this module holds
small subclasses of MLflow's REST stores and artifact repositories that take the policy and the
endpoint as arguments instead:

- ``BoundedClient``: an ``MlflowClient`` whose tracking and registry REST stores pass
  ``max_retries``/``timeout``/``backoff_factor`` to ``http_request`` explicitly, and which
  never prints run URLs to stdout (MLflow does on ``set_terminated`` against a server).
- ``artifact_repository``: the repository for a concrete artifact location; ``s3://`` gets an
  S3 client from ``store.s3`` (explicit endpoint, capped retries, timeouts) and
  ``mlflow-artifacts:`` a bounded HTTP repository.

It is written against MLflow 3.17's store internals (``RestStore._call_endpoint``, the
repositories' ``_download_file``/``_get_s3_client`` hooks);
``tests/integration/test_tracking.py`` fails if they change. Only ``connection`` and
``artifacts`` import this module, lazily.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import FileInfo
from mlflow.exceptions import RestException
from mlflow.protos.databricks_pb2 import ENDPOINT_NOT_FOUND, ErrorCode
from mlflow.store.artifact.artifact_repo import ArtifactRepository, verify_artifact_path
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository
from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore

# MlflowClient builds its service clients from these two private modules and has no public
# hook for the transport they use; subclassing them is the only way to put one deadline and
# capped retries on every call without process-wide settings (tests/integration/
# test_tracking.py fails if MLflow moves them).
from mlflow.tracking._model_registry.client import ModelRegistryClient
from mlflow.tracking._tracking_service.client import TrackingServiceClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.mime_type_utils import _guess_mime_type
from mlflow.utils.proto_json_utils import parse_dict
from mlflow.utils.rest_utils import (
    MlflowHostCreds,
    augmented_raise_for_status,
    http_request,
    verify_rest_response,
)
from mlflow.utils.uri import validate_path_is_safe


@dataclass(frozen=True)
class Limits:
    """How long one Connection waits for a tracking server, and how often it retries."""

    timeout: float = 10.0
    max_retries: int = 2
    backoff_factor: float = 0.5

    def http(self) -> dict[str, Any]:
        """Keyword arguments for MLflow's ``http_request``.

        The connect timeout is the shared budget of every attempt (a host that drops packets
        fails in about ``timeout`` seconds); a server's Retry-After is not obeyed, since it may
        ask for minutes.
        """
        attempts = self.max_retries + 1
        return {
            "max_retries": self.max_retries,
            "backoff_factor": self.backoff_factor,
            "backoff_jitter": 0.0,
            "timeout": (max(1.0, self.timeout / attempts), self.timeout),
            "respect_retry_after_header": False,
        }


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


# The artifact proxy answers 500 when its store failed, after the server's own S3 client has
# retried; retrying that again only multiplies the wait (gateway errors are still retried).
_ARTIFACT_RETRY_CODES = frozenset({408, 429, 502, 503, 504})


# What a failed attempt's text says when another attempt may help: the connection was refused
# or dropped, or the server answered a retryable status (urllib3's "too many N error
# responses"). A read timeout is not among them: the server took the request and went silent,
# so it stays silent, and a write it may have carried out must not be sent twice.
_RETRYABLE = ("connection refused", "too many", "connection aborted", "remotedisconnected",
              "connection reset", "newconnectionerror", "connecttimeout")


def _request(limits: Limits, host_creds: MlflowHostCreds, endpoint: str, method: str,
             **kwargs: Any) -> Any:
    """``http_request`` with this yard's retries done here, one attempt at a time, so that a
    read timeout ends the call (a silent server fails in ``timeout`` seconds, once), while a
    refused connection or a retryable status is tried again with backoff."""
    import time

    from mlflow.exceptions import MlflowException

    policy = {**limits.http(), "max_retries": 0}
    attempt = 0
    while True:
        try:
            return http_request(host_creds, endpoint, method, **policy, **kwargs)
        except MlflowException as exc:
            text = str(exc).lower()
            if (attempt >= limits.max_retries or "read timed out" in text
                    or not any(marker in text for marker in _RETRYABLE)):
                raise
        attempt += 1
        if attempt > 1:  # urllib3's schedule: the first retry at once, then backoff
            time.sleep(limits.backoff_factor * 2 ** (attempt - 1))


def _artifact_request(limits: Limits, host_creds: MlflowHostCreds, endpoint: str, method: str,
                      **kwargs: Any) -> Any:
    return _request(limits, host_creds, endpoint, method, retry_codes=_ARTIFACT_RETRY_CODES,
                    **kwargs)


def _call_endpoint(limits: Limits, host_creds: MlflowHostCreds, endpoint: str, method: str,
                   json_body: str | None, response_proto: Any,
                   extra_headers: dict[str, str] | None = None) -> Any:
    """MLflow's ``rest_utils.call_endpoint`` with this client's retry policy."""
    body = json.loads(json_body) if json_body is not None else None
    payload = {"params": body} if method == "GET" else {"json": body}
    response = _request(limits, host_creds, endpoint, method, extra_headers=extra_headers,
                        **payload)
    response = verify_rest_response(response, endpoint)
    if response.status_code == 204:
        return response_proto
    parse_dict(js_dict=json.loads(response.text), message=response_proto)
    return response_proto


class BoundedTrackingStore(TrackingRestStore):
    """The tracking REST store, with capped retries and timeouts."""

    def __init__(self, uri: str, limits: Limits) -> None:
        super().__init__(partial(get_default_host_creds, uri))
        self.limits = limits

    def _call_endpoint(self, api: Any, json_body: Any = None, endpoint: Any = None,
                       retry_timeout_seconds: Any = None, response_proto: Any = None) -> Any:
        method_to_info = self._V3_METHOD_TO_INFO if api in self._V3_APIS else self._METHOD_TO_INFO
        self._validate_workspace_support_if_specified()
        if endpoint:
            _, method = method_to_info[api]
        else:
            endpoint, method = method_to_info[api]
        return _call_endpoint(self.limits, self.get_host_creds(), endpoint, method, json_body,
                              response_proto or api.Response())


class BoundedRegistryStore(RegistryRestStore):
    """The model-registry REST store, with capped retries and timeouts."""

    def __init__(self, uri: str, limits: Limits) -> None:
        super().__init__(partial(get_default_host_creds, uri))
        self.limits = limits

    def _call_endpoint(self, api: Any, json_body: Any, call_all_endpoints: bool = False,
                       extra_headers: Any = None) -> Any:
        self._validate_workspace_support_if_specified()
        response_proto = self._get_response_from_method(api)
        endpoints = (self._get_all_endpoints_from_method(api) if call_all_endpoints
                     else [self._get_endpoint_from_method(api)])
        for index, (endpoint, method) in enumerate(endpoints):
            try:
                return _call_endpoint(self.limits, self.get_host_creds(), endpoint, method,
                                      json_body, response_proto, extra_headers)
            except RestException as exc:
                last = index == len(endpoints) - 1
                if exc.error_code != ErrorCode.Name(ENDPOINT_NOT_FOUND) or last:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


class _TrackingServiceClient(TrackingServiceClient):
    def __init__(self, tracking_uri: str, limits: Limits) -> None:
        self._limits = limits
        self._bounded: BoundedTrackingStore | None = None
        super().__init__(tracking_uri)

    @property
    def store(self) -> Any:
        if not is_http(self.tracking_uri):
            return super().store
        if self._bounded is None:
            self._bounded = BoundedTrackingStore(self.tracking_uri, self._limits)
        return self._bounded

    def _log_url(self, run_id: str) -> None:
        """MLflow prints the run's URL (credentials included) here; the library never prints."""


class _SqlRegistryStore:
    """MLflow's SQL registry store, except where it would read the process-wide tracking URI.

    For a version made from ``models:/m-...``, MLflow's SQL store looks the logged model up with
    ``MlflowClient()``, i.e. through the global tracking URI (a TODO in MLflow 3.17). Here the
    logged model is found through this client's own tracking store; the version is created from
    its artifact location and then gets its ``models:/m-...`` source back, as MLflow would
    have stored it.
    """

    def __init__(self, inner: Any, tracking_store: Callable[[], Any]) -> None:
        self._inner = inner
        self._tracking_store = tracking_store

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._inner, attribute)

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: Any = None, run_link: str | None = None,
                             description: str | None = None, local_model_path: Any = None,
                             model_id: str | None = None) -> Any:
        logged = source.removeprefix("models:/") if source.startswith("models:/m-") else None
        if logged is None or "/" in logged:
            return self._inner.create_model_version(name, source, run_id, tags, run_link,
                                                    description, local_model_path, model_id)
        model = self._tracking_store().get_logged_model(logged)
        run_id = run_id or model.source_run_id
        created = self._inner.create_model_version(
            name, model.artifact_location, run_id, tags, run_link, description,
            local_model_path, model_id if run_id else None)
        with self._inner.ManagedSessionMaker(read_only=False) as session:
            self._inner._get_sql_model_version(session, name, created.version).source = source
        return self._inner.get_model_version(name, created.version)


class _RegistryClient(ModelRegistryClient):
    def __init__(self, registry_uri: str, tracking: TrackingServiceClient, limits: Limits
                 ) -> None:
        self._limits = limits
        self._tracking = tracking
        self._bounded: BoundedRegistryStore | None = None
        self._sql: _SqlRegistryStore | None = None
        super().__init__(registry_uri, tracking.tracking_uri)

    @property
    def store(self) -> Any:
        if not is_http(self.registry_uri):
            inner = super().store
            if self._sql is None or self._sql._inner is not inner:
                self._sql = _SqlRegistryStore(inner, lambda: self._tracking.store)
            return self._sql
        if self._bounded is None:
            self._bounded = BoundedRegistryStore(self.registry_uri, self._limits)
        return self._bounded


class BoundedClient(MlflowClient):
    """An ``MlflowClient`` bound to explicit URIs, with this Connection's limits."""

    def __init__(self, tracking_uri: str, registry_uri: str, limits: Limits) -> None:
        super().__init__(tracking_uri, registry_uri)
        self.limits = limits
        self._tracking_client = _TrackingServiceClient(tracking_uri, limits)

    def _get_registry_client(self) -> ModelRegistryClient:
        client: ModelRegistryClient | None = getattr(self, "_registry_client_lazy", None)
        if client is None:
            registry_uri = str(self._registry_uri or self.tracking_uri)
            client = _RegistryClient(registry_uri, self._tracking_client, self.limits)
            self._registry_client_lazy = client
        return client

    def _raise_if_prompt(self, name: str) -> None:
        """MLflow reads the registered model before every registry write, to refuse a prompt
        (one more round trip per write). A name found to be a model is one for this client's
        life: it is checked once, then its writes go straight out."""
        checked: set[str] | None = getattr(self, "_checked_models", None)
        if checked is None:
            checked = set()
            self._checked_models = checked
        if name in checked:
            return
        super()._raise_if_prompt(name)
        checked.add(name)


# -- artifact repositories ----------------------------------------------------------------------
class EndpointS3Repository(S3ArtifactRepository):
    """MLflow's S3 repository on a client made by ``store.s3``: an explicit endpoint
    (never ``MLFLOW_S3_ENDPOINT_URL`` from the environment), capped retries and timeouts."""

    def __init__(self, artifact_uri: str, client: Callable[[], Any]) -> None:
        super().__init__(artifact_uri)
        self._client = client

    def _get_s3_client(self) -> Any:
        return self._client()


class BoundedArtifactsRepository(MlflowArtifactsRepository):
    """The tracking server's artifact proxy (``mlflow-artifacts:``), with capped retries.

    Multipart transfers, which the server offers only for large files when configured so, stay
    on MLflow's own code path and policy.
    """

    def __init__(self, artifact_uri: str, tracking_uri: str, limits: Limits) -> None:
        super().__init__(artifact_uri, tracking_uri=tracking_uri)
        self.limits = limits

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        verify_artifact_path(artifact_path)
        if self._should_multipart_upload(local_file):
            super().log_artifact(local_file, artifact_path)
            return
        file_name = os.path.basename(local_file)
        paths = (artifact_path, file_name) if artifact_path else (file_name,)
        endpoint = posixpath.join("/", *paths)
        with open(local_file, "rb") as handle:
            response = _artifact_request(
                self.limits, self._host_creds, endpoint, "PUT", data=handle,
                extra_headers={"Content-Type": _guess_mime_type(file_name)})
            augmented_raise_for_status(response)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        endpoint = "/mlflow-artifacts/artifacts"
        url, tail = self.artifact_uri.split(endpoint, maxsplit=1)
        root = tail.lstrip("/")
        params = {"path": posixpath.join(root, path) if path else root}
        response = _artifact_request(self.limits, get_default_host_creds(url), endpoint, "GET",
                                     params=params)
        augmented_raise_for_status(response)
        infos = []
        for item in response.json().get("files", []):
            rel = validate_path_is_safe(item["path"])
            size = int(item["file_size"]) if "file_size" in item else None
            infos.append(FileInfo(posixpath.join(path, rel) if path else rel, item["is_dir"],
                                  size))
        # A listing of a single file is empty, as MLflow's API expects.
        if (len(infos) == 1 and not infos[0].is_dir and path is not None
                and infos[0].path == posixpath.join(path, os.path.basename(path))):
            return []
        return sorted(infos, key=lambda info: info.path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        if self._is_multipart_download_enabled():
            super()._download_file(remote_file_path, local_path)
            return
        endpoint = posixpath.join("/", remote_file_path)
        response = _artifact_request(self.limits, self._host_creds, endpoint, "GET",
                                     stream=True)
        augmented_raise_for_status(response)
        with open(local_path, "wb") as handle:
            for chunk in response.iter_content(chunk_size=1024 * 1024):
                handle.write(chunk)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        endpoint = posixpath.join("/", artifact_path) if artifact_path else "/"
        response = _artifact_request(self.limits, self._host_creds, endpoint, "DELETE",
                                     stream=True)
        augmented_raise_for_status(response)


def artifact_repository(location: str, tracking_uri: str, registry_uri: str,
                        limits: Limits, s3: Callable[[], Any]) -> ArtifactRepository:
    """The repository for a concrete artifact location (not ``runs:/`` or ``models:/``).

    ``s3`` gives the S3 client for ``s3://`` locations.
    """
    scheme = urlparse(location).scheme
    if scheme == "s3":
        return EndpointS3Repository(location, s3)
    if scheme == "mlflow-artifacts":
        return BoundedArtifactsRepository(location, tracking_uri, limits)
    if scheme in ("runs", "models"):  # these resolve through MLflow's global URIs
        raise ValueError(f"not a concrete artifact location: {location}")
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(location, tracking_uri=tracking_uri,
                                   registry_uri=registry_uri)
