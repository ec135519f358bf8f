"""A version's files in MLflow's artifact store: download, list, fetch and put them.

The artifact side of the MLflow edge. A location (``s3://...``, ``file://...``,
``mlflow-artifacts:/...``) is opened as MLflow's artifact repository for it, bounded and bound
to this yard (``tracking_transport.artifact_repository``); ``models:/`` and ``runs:/`` URIs
are resolved through the yard's own client, never the process-wide tracking URI. Every
operation runs through the ``Connection`` (capped retries, errors translated), so a failure
names the artifact store or S3 endpoint that failed. Where a version's files live is a
registry question: ``Tracking.artifact_location``.

>>> files = tracking.artifacts.artifact_files(location)
>>> tracking.artifacts.fetch_artifact(location, "model.pkl", Path("model.pkl"))
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput
from modelyard.store.storage import redact

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from modelyard.backend.connection import Connection


class Artifacts:
    """The files under artifact locations, through one yard's connection to MLflow."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._s3: Any = None

    def _repository(self, location: str) -> ArtifactRepository:
        """The artifact repository for a concrete location, bounded and bound to this yard."""
        from modelyard.backend.tracking_transport import artifact_repository

        connection = self.connection
        return artifact_repository(location, connection.tracking_uri, connection.registry_uri,
                                   connection.limits, self._s3_client)

    def _s3_client(self) -> Any:
        """One fail-fast S3 client per connection, for artifacts on s3:// (made on first use)."""
        if self._s3 is None:
            from mlflow.environment_variables import MLFLOW_S3_IGNORE_TLS

            from modelyard.store.s3 import s3_client

            connection = self.connection
            self._s3 = s3_client(connection.settings.s3_endpoint_url, timeout=connection.timeout,
                                 max_retries=connection.max_retries,
                                 verify=False if MLFLOW_S3_IGNORE_TLS.get() else None)
        return self._s3

    def _resolve(self, uri: str) -> tuple[str, str, str]:
        """(concrete location, path inside it, subfolder of the destination) for a URI.

        ``models:/`` and ``runs:/`` URIs are resolved through this yard's client: MLflow's own
        resolution of them reads the process-wide tracking URI.
        """
        client = self.connection.client
        if uri.startswith("models:"):
            from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
            from mlflow.store.artifact.utils.models import get_model_name_and_version

            base, path = ModelsArtifactRepository.split_models_uri(uri)
            found = get_model_name_and_version(client, base)
            if len(found) == 1:
                location = client.get_logged_model(found[0]).artifact_location
            else:
                location = client.get_model_version_download_uri(found[0], found[1])
            return str(location), path, ""
        if uri.startswith("runs:"):
            from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

            run_id, path = RunsArtifactRepository.parse_runs_uri(uri)
            run = client.get_run(run_id)
            head, _, rest = (path or "").partition("/")
            model = self._logged_model_named(run.info.experiment_id, run_id, head) if head else None
            if model is not None:  # MLflow 3 keeps a run's models as logged models
                return str(model.artifact_location), rest, head
            return str(run.info.artifact_uri), path or "", ""
        from mlflow.tracking.artifact_utils import _get_root_uri_and_artifact_path

        root, path = _get_root_uri_and_artifact_path(uri)
        return str(root), str(path or ""), ""

    def _logged_model_named(self, experiment_id: str, run_id: str, name: str) -> Any:
        escaped = name.replace("'", "\\'")
        token: str | None = None
        while True:
            page = self.connection.client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"name = '{escaped}'",
                page_token=token)
            for model in page:
                if model.source_run_id == run_id:
                    return model
            token = page.token
            if not token:
                return None

    def download(self, uri: str, dest: Path) -> Path:
        """Download a model's artifacts (models:/..., runs:/..., or a store URI) to dest."""

        def fetch() -> Path:
            location, path, subfolder = self._resolve(uri)
            target = dest / subfolder if subfolder else dest
            target.mkdir(parents=True, exist_ok=True)
            self._download_tree(self._repository(location), path, target)
            return target / path if path else target

        return self.connection.call(fetch, op=f"download {redact(uri)}")

    @staticmethod
    def _download_tree(repository: ArtifactRepository, path: str, target: Path) -> None:
        """Download ``path`` (a file or a folder, "" for all) of a repository into ``target``.

        The same parallel, per-file transfer as MLflow's ``download_artifacts``, without its
        tqdm bars: the library never prints, and MLflow only turns them off through a
        process-wide environment variable. A listed path that would land outside ``target``
        is refused.
        """
        from concurrent.futures import ThreadPoolExecutor

        root = target.resolve()
        if path and not repository._is_directory(path):
            files = [path]
        else:
            files = []
            for info in Artifacts._walk(repository, path or None):
                local = (root / info.path).resolve()
                if not local.is_relative_to(root):
                    raise InvalidInput(f"artifact path {info.path!r} leaves the destination")
                if info.is_dir:
                    local.mkdir(parents=True, exist_ok=True)
                else:
                    files.append(info.path)

        def one(rel: str) -> None:
            local = root / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            repository._download_file(rel, str(local))

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(files)))) as pool:
            for _ in pool.map(one, files):
                pass

    def delete_artifacts(self, location: str) -> None:
        """Delete every file under an artifact location (a version's logged-model folder).

        MLflow's own garbage collection leaves a deleted version's files behind; retention
        (``cleanup --delete``) calls this. ``file://`` folders are removed directly, other
        schemes (``mlflow-artifacts:``, ``s3://``) through MLflow's artifact repository.
        """
        from urllib.parse import unquote, urlparse

        parsed = urlparse(location)
        if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a path (or C:\...)
            import shutil

            path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(location)
            with self.connection.translate(op="delete a version's files"):
                if path.exists():
                    shutil.rmtree(path)
            return
        self.connection.call(lambda: self._repository(location).delete_artifacts(),
                             op="delete a version's files")

    def put_artifacts(self, location: str, local_dir: Path, *,
                      op: str = "write a version's files") -> None:
        """Upload every file under ``local_dir`` into an artifact location, over what is there
        (a registration uploads a new version's files; recovery puts a version's verified
        files back; drills damage them on purpose). ``op`` names the step in an error."""
        self.connection.call(lambda: self._repository(location).log_artifacts(str(local_dir)),
                             op=op)

    # -- artifact files, one by one (verify_all / repair) ---------------------------------
    @staticmethod
    def local_artifact_root(location: str) -> Path | None:
        """The folder of a ``file://`` (or plain path) artifact location, else None."""
        from urllib.parse import unquote, urlparse

        parsed = urlparse(location)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or C:\...)
            return Path(location)
        return None

    def artifact_files(self, location: str) -> dict[str, int | None]:
        """Every file under an artifact location, recursively: relative path -> size (None
        when the store does not say). A location that does not exist has no files."""
        root = self.local_artifact_root(location)
        if root is not None:
            with self.connection.translate(op="list a version's files"):
                if not root.is_dir():
                    return {}
                return {p.relative_to(root).as_posix(): p.stat().st_size
                        for p in root.rglob("*") if p.is_file()}

        def walk() -> dict[str, int | None]:
            return {info.path: info.file_size
                    for info in self._walk(self._repository(location), None) if not info.is_dir}

        return self.connection.call(walk, op="list a version's files")

    @staticmethod
    def _walk(repository: ArtifactRepository, folder: str | None) -> Iterator[Any]:
        """Every entry (folders too) under ``folder`` of a repository, depth first."""
        folders = [folder]
        while folders:
            for info in repository.list_artifacts(folders.pop()):
                yield info
                if info.is_dir:
                    folders.append(info.path)

    def fetch_artifact(self, location: str, rel_path: str, local: Path) -> None:
        """Download one file of an artifact location to ``local``."""
        local.parent.mkdir(parents=True, exist_ok=True)
        self.connection.call(
            lambda: self._repository(location)._download_file(rel_path, str(local)),
            op=f"download {rel_path}")

    def put_artifact(self, location: str, rel_path: str, local_file: Path) -> None:
        """Write one file into an artifact location at ``rel_path`` (replacing what is there),
        through MLflow's artifact repository for that location (``repair``)."""
        import posixpath
        import shutil
        import tempfile

        folder, _, base = rel_path.rpartition("/")
        if not base or ".." in rel_path.split("/") or rel_path.startswith("/"):
            raise InvalidInput(f"unsafe artifact path {rel_path!r}")
        with tempfile.TemporaryDirectory(prefix="modelyard-put-") as tmp:
            # The repository names the file after the local file: give it the right name.
            named = Path(tmp) / base
            if local_file.name == base:
                named = local_file
            else:
                shutil.copyfile(local_file, named)
            self.connection.call(lambda: self._repository(location).log_artifact(
                str(named), posixpath.normpath(folder) if folder else None),
                op=f"upload {rel_path}")

    def delete_artifact(self, location: str, rel_path: str) -> None:
        """Delete exactly one file of an artifact location (``repair`` takes out a file the
        version's manifest does not list, after keeping a copy of it).

        MLflow's repositories delete by prefix (on S3, ``a/x.py`` also takes ``a/x.pyc``):
        any other file the prefix covers is kept aside first and written back after."""
        import tempfile

        if not rel_path or ".." in rel_path.split("/") or rel_path.startswith("/"):
            raise InvalidInput(f"unsafe artifact path {rel_path!r}")
        root = self.local_artifact_root(location)
        if root is not None:
            with self.connection.translate(op=f"delete {rel_path}"):
                path = root / rel_path
                path.unlink()
                for parent in path.parents:  # folders the file alone made
                    if parent == root or not parent.is_relative_to(root) or any(
                            parent.iterdir()):
                        break
                    parent.rmdir()
            return
        covered = [rel for rel in self.artifact_files(location)
                   if rel != rel_path and rel.startswith(rel_path)]
        with tempfile.TemporaryDirectory(prefix="modelyard-delete-") as tmp:
            kept = {rel: Path(tmp) / str(index) / rel.rsplit("/", 1)[-1]
                    for index, rel in enumerate(covered)}
            for rel, local in kept.items():
                self.fetch_artifact(location, rel, local)
            self.connection.call(lambda: self._repository(location).delete_artifacts(rel_path),
                                 op=f"delete {rel_path}")
            for rel, local in kept.items():
                self.put_artifact(location, rel, local)
