"""The lean reader for tracking servers: MLflow's documented REST API (``/api/2.0/mlflow/...``).

``RestReader`` asks the registry's questions (models, versions, aliases, tag look-ups,
counts, runs) and turns MLflow's answers into modelyard's records. How a request travels
(MLflow's client settings, the keep-alive pool, capped retries, one time budget per call) is
``transport.RestTransport``'s job; counting versions without listing them is
``counts.VersionCounts``'. Build it through ``reader.open_reader``. Never imports mlflow.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from modelyard.backend.lean.base import at_once
from modelyard.backend.lean.counts import VersionCounts
from modelyard.backend.lean.transport import Missing, Refused, RestTransport
from modelyard.core.names import STATUS_PENDING, T_STATUS
from modelyard.core.records import (
    SEARCH_PAGE_MAX,
    ModelRecord,
    VersionRecord,
    model_from_rest,
    run_from_rest,
    search_filter,
    version_from_rest,
)
from modelyard.errors import BackendError, ModelNotFound, NotFound, PermissionDenied, UserError

__all__ = ["RestReader"]

_VERSION_PAGE = 10_000
_MODEL_PAGE = 1_000
_RUNS_AT_ONCE = 100  # run ids in one runs/search filter (MLflow's filter stays short)


def _filter_quote(value: str) -> str:
    """A string literal for MLflow's search filter (as tracking.py quotes names)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _name_filter(name: str) -> str:
    return f"name = {_filter_quote(name)}"


def _tag_filter(key: str, value: str) -> str:
    return f"tags.`{key}` = {_filter_quote(value)}"


class RestReader:
    """Reads a tracking server through MLflow's REST API (``/api/2.0/mlflow/...``).

    Requests go through ``transport`` (a ``RestTransport`` built from ``tracking_uri``,
    ``timeout``, ``retries`` and ``environ``); ``writer.RestWriter`` writes through the
    same one, so a command's reads and writes share its connections and its counter.
    ``count_hints``: where the counts found for this server are remembered (``counts``).
    The reader holds a transport rather than being one: the writer needs the connection,
    not the registry look-ups, and the reader's surface stays the ``Reader`` protocol.
    """

    concurrent = True  # base.at_once may send its calls at the same time

    def __init__(
        self,
        tracking_uri: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        environ: Mapping[str, str] = os.environ,
        count_hints: Path | None = None,
    ) -> None:
        self.transport = RestTransport(tracking_uri, timeout=timeout, retries=retries,
                                       environ=environ)
        self.tracking_uri = tracking_uri
        self.counts = VersionCounts(self._search_versions, self.get_model, count_hints)
        # ``remembered``: registered models read once while a read-only caller's scope is open
        self._kept: dict[tuple[Any, ...], Any] | None = None
        self._kept_lock = threading.Lock()
        # experiments seen (``get_runs`` searches runs in them); grows as runs name new ones
        self._experiments: set[str] | None = None

    @property
    def requests(self) -> int:
        """Requests sent so far, the writer's included (the benchmark counts them)."""
        return self.transport.requests

    @property
    def timeout(self) -> float:
        return self.transport.timeout

    @property
    def retries(self) -> int:
        return self.transport.retries

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RestReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextlib.contextmanager
    def remembered(self) -> Iterator[None]:
        """While open, each registered model and version is read from the server once
        (``get_model``, ``get_version``): a read-only caller (a dashboard page) whose parts
        each ask for the same model pays one round trip, not one per part. Nothing is kept
        once it closes; a caller that writes must not open it (it would read its own write's
        model as it was before)."""
        with self._kept_lock:
            self._kept = {}
        try:
            yield
        finally:
            with self._kept_lock:
                self._kept = None

    # -- registry calls -------------------------------------------------------------------
    def _search_versions(self, filter_text: str, *, order_by: str, max_results: int,
                         page_token: str | None = None
                         ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a version search: (rows, next page token or None).

        The same search asked again while it is in flight (two look-ups sent at once that
        need the same page: ``list``'s newest versions and the count's newest row) waits for
        that request's answer instead of sending its own. Only version searches share: they
        are the calls a read verb sends at once (``at_once`` waits for every call of a round,
        so no search in flight outlives the round that sent it, and a later round's writes
        are never read through an earlier answer)."""
        params: list[tuple[str, str | int]] = [
            ("filter", filter_text), ("max_results", max_results), ("order_by", order_by)]
        if page_token:
            params.append(("page_token", page_token))
        try:
            answer = self.transport.get("model-versions/search", params, share=True)
        except Refused as exc:
            raise UserError(exc.message) from None
        except Missing as exc:
            raise NotFound(exc.message) from None
        return list(answer.get("model_versions") or []), answer.get("next_page_token") or None

    def _each_version(self, filter_text: str, order_by: str, page: int
                      ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            rows, token = self._search_versions(filter_text, order_by=order_by,
                                                max_results=page, page_token=token)
            yield from rows
            if not token or not rows:
                return

    def list_models(self) -> list[ModelRecord]:
        records: list[ModelRecord] = []
        token: str | None = None
        while True:
            params: list[tuple[str, str | int]] = [("max_results", _MODEL_PAGE)]
            if token:
                params.append(("page_token", token))
            try:
                answer = self.transport.get("registered-models/search", params)
            except (Missing, Refused) as exc:
                raise BackendError(detail=f"{self.transport.label}: {exc.message}") from None
            records.extend(model_from_rest(m) for m in answer.get("registered_models") or [])
            token = answer.get("next_page_token") or None
            if not token:
                return records

    def get_model(self, name: str) -> ModelRecord:
        """The registered model. Through a name-filtered search where the name can be quoted:
        MLflow's server answers ``registered-models/get`` in O(versions) (it loads every
        version for ``latest_versions``), the search with the same tags and aliases in O(1).
        Inside ``remembered``, read once (the same read sent twice at once is shared too)."""
        return self._remember(("model", name), lambda share: self._get_model(name, share=share))

    def _remember(self, key: tuple[Any, ...], read: Any) -> Any:
        """``read(share)``'s answer; inside ``remembered`` read once per key."""
        kept = self._kept
        if kept is None:
            return read(False)
        with self._kept_lock:
            found = kept.get(key)
        if found is None:
            found = read(True)
            with self._kept_lock:
                kept[key] = found
        return copy.deepcopy(found)  # a caller may change its copy (aliases, tags)

    def _get_model(self, name: str, *, share: bool = False) -> ModelRecord:
        if "'" not in name and "\\" not in name:
            try:
                found = self.transport.get("registered-models/search",
                                           [("filter", f"name = '{name}'"),
                                            ("max_results", 10)], share=share)
            except Missing:
                found = None  # registered-models/get answers below
            except Refused as exc:
                raise UserError(exc.message) from None
            for model in (found or {}).get("registered_models") or []:
                if model.get("name") == name:
                    return model_from_rest(model)
            # Not found by the search: absent, or hidden from this user on an auth server;
            # registered-models/get says which.
        try:
            answer = self.transport.get("registered-models/get", [("name", name)])
        except Missing:
            raise ModelNotFound(name=name) from None
        except Refused as exc:
            raise UserError(exc.message) from None
        return model_from_rest(answer["registered_model"])

    def get_version(self, name: str, version: int) -> VersionRecord:
        return self._remember(("version", name, int(version)),
                              lambda share: self._get_version(name, version, share))

    def _get_version(self, name: str, version: int, share: bool) -> VersionRecord:
        try:
            answer = self.transport.get("model-versions/get",
                                        [("name", name), ("version", int(version))],
                                        share=share)
        except Missing as exc:
            raise NotFound(exc.message or f"Model Version (name={name}, version={version}) "
                           "not found") from None
        except Refused as exc:
            raise UserError(exc.message) from None
        return version_from_rest(answer["model_version"])

    def alias_holder(self, name: str, alias: str) -> int | None:
        try:
            answer = self.transport.get("registered-models/alias",
                                        [("name", name), ("alias", alias)])
        except (Missing, Refused):
            return None  # no such alias (MLflow: INVALID_PARAMETER_VALUE) or no such model
        return int(answer["model_version"]["version"])

    def alias_version(self, name: str, alias: str) -> VersionRecord | None:
        """The version an alias points at, whole (tags and aliases): MLflow's alias look-up
        answers with the full version, so ``refs.lookup`` needs no second call. ``None`` if
        the alias or the model is absent (as ``alias_holder``)."""
        try:
            answer = self.transport.get("registered-models/alias",
                                        [("name", name), ("alias", alias)])
        except (Missing, Refused):
            return None
        return version_from_rest(answer["model_version"])

    def _with_aliases(self, row: dict[str, Any]) -> VersionRecord:
        record = version_from_rest(row)
        if row.get("aliases") is None:  # MLflow's search leaves aliases out; get has them
            try:
                return self.get_version(record.name, record.version)
            except NotFound:
                return record  # deleted in between: what search said
        return record

    def _newest_visible(self, filter_text: str, name: str, aliases: bool = True
                        ) -> VersionRecord | None:
        page = 1
        token: str | None = None
        while True:
            rows, token = self._search_versions(filter_text, order_by="version_number DESC",
                                                max_results=page, page_token=token)
            for row in rows:
                if _tag_of(row, T_STATUS) != STATUS_PENDING:
                    return self._with_aliases(row) if aliases else version_from_rest(row)
            if not token or not rows:
                self.get_model(name)  # ModelNotFound if the model itself is absent
                return None
            page = min(page * 4, 1000)  # pending versions are few: widen only if needed

    def version_by_tag(self, name: str, key: str, value: str, *, aliases: bool = True
                       ) -> VersionRecord | None:
        """``aliases=False``: the search row as it is, aliases not filled in (its caller
        reads the version whole at once with its other look-ups: ``Loader.get``)."""
        return self._newest_visible(f"{_name_filter(name)} AND {_tag_filter(key, value)}",
                                    name, aliases)

    def latest_visible(self, name: str, *, aliases: bool = True) -> VersionRecord | None:
        return self._newest_visible(_name_filter(name), name, aliases)

    def versions(self, name: str) -> list[VersionRecord]:
        records = [version_from_rest(row) for row in
                   self._each_version(_name_filter(name), "version_number ASC", _VERSION_PAGE)]
        model = self.get_model(name)  # aliases (search leaves them out); ModelNotFound
        for record in records:
            record.aliases = sorted(a for a, v in model.aliases.items() if v == record.version)
        return records

    def count_visible(self, name: str) -> int:
        # Both counts at once: all versions (dense: few are deleted) and the pending ones
        # (sparse: registrations in flight). Each is first asked near the count remembered
        # on this machine (one round, exact when it confirms); else counted by probes.
        pending = f"{_name_filter(name)} AND {_tag_filter(T_STATUS, STATUS_PENDING)}"
        total, waiting = at_once(self, [
            lambda: self.counts.counted(_name_filter(name), name),
            lambda: self.counts.counted(pending, None, dense=False)])
        return max(0, total - waiting) if total else 0

    def search_versions(self, name: str, *, tag: tuple[str, str] | None = None,
                        below: int | None = None, limit: int = 100) -> list[VersionRecord]:
        rows, _ = self._search_versions(
            search_filter(name, tag=tag, below=below), order_by="version_number DESC",
            max_results=max(1, min(int(limit), SEARCH_PAGE_MAX)))
        records = [version_from_rest(row) for row in rows]
        for record in records:
            record.aliases = []
        return records

    def artifact_location(self, record: VersionRecord) -> str:
        if record.model_id:
            try:
                answer = self.transport.get(
                    f"logged-models/{quote(record.model_id, safe='')}", [])
                uri = answer.get("model", {}).get("info", {}).get("artifact_uri")
                if uri:
                    return str(uri)
            except (Missing, Refused):
                pass
        return record.source

    def get_run(self, run_id: str) -> dict[str, Any]:
        try:
            answer = self.transport.get("runs/get", [("run_id", run_id)])
        except Missing as exc:
            raise NotFound(exc.message or f"Run with id={run_id} not found") from None
        except Refused as exc:
            raise UserError(exc.message) from None
        return run_from_rest(answer["run"])

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Several runs at once, each as ``get_run`` gives it, by id; a run that is absent
        (or that this user may not read) is left out. One ``runs/search`` per hundred ids in
        the experiments this reader has seen (listed on first use), so a page of versions
        costs one round trip, not one per run; a run in an experiment made since is read by
        ``get_run`` (at once) and its experiment remembered."""
        wanted = list(dict.fromkeys(r for r in run_ids if r))
        found: dict[str, dict[str, Any]] = {}
        if not wanted:
            return found
        experiments = sorted(self._experiments_seen())
        chunks = [wanted[i:i + _RUNS_AT_ONCE] for i in range(0, len(wanted), _RUNS_AT_ONCE)]

        def search(ids: list[str]) -> list[dict[str, Any]]:
            if not experiments:
                return []
            listed = ", ".join(_filter_quote(i) for i in ids)
            try:
                answer = self.transport.send("POST", "runs/search", {
                    "experiment_ids": experiments, "filter": f"attributes.run_id IN ({listed})",
                    "run_view_type": "ALL", "max_results": len(ids)})
            except (Missing, Refused):
                return []  # every id is then read by get_run, which says what is wrong
            return [run_from_rest(r) for r in answer.get("runs") or []]

        for runs in at_once(self, [partial(search, ids) for ids in chunks]):
            found.update((r["run_id"], r) for r in runs if r["run_id"] in wanted)

        def one(run_id: str) -> dict[str, Any] | None:
            try:
                return self.get_run(run_id)
            except (NotFound, PermissionDenied):
                return None

        rest = [r for r in wanted if r not in found]
        for run in at_once(self, [partial(one, r) for r in rest]):
            if run is not None:
                found[run["run_id"]] = run
                if self._experiments is not None:
                    self._experiments.add(run["experiment_id"])
        return {r: found[r] for r in wanted if r in found}

    def _experiments_seen(self) -> set[str]:
        if self._experiments is None:
            seen: set[str] = set()
            token: str | None = None
            while True:
                params: list[tuple[str, str | int]] = [("max_results", 1000),
                                                       ("view_type", "ALL")]
                if token:
                    params.append(("page_token", token))
                try:
                    answer = self.transport.get("experiments/search", params)
                except (Missing, Refused):
                    break
                seen |= {str(e.get("experiment_id")) for e in answer.get("experiments") or []}
                token = answer.get("next_page_token") or None
                if not token:
                    break
            self._experiments = seen
        return set(self._experiments)


def _tag_of(row: Mapping[str, Any], key: str) -> str | None:
    for tag in row.get("tags") or []:
        if tag.get("key") == key:
            return str(tag.get("value", ""))
    return None
