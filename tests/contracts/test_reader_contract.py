"""Contract: the lean reader answers exactly as MLflow's client does, on both backends.

Registries are built by modelyard (registrations, promotions, archived, deleted and pending
versions, user aliases, unicode tags; hypothesis varies their shape), then every reader call is
compared with the MLflow-client path (``yard.tracking`` and ``yard.resolve``). The revision
guard, the import budget, the network failure modes and MLflow's client settings (basic auth
against a real MLflow auth server, TLS and proxies against small stand-ins) are tested too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.server
import ipaddress
import json
import logging
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from modelyard.backend.lean import sqlite as reader_sqlite
from modelyard.backend.lean.reader import (
    KNOWN_SCHEMA_REVISIONS,
    Reader,
    RestReader,
    SqliteReader,
    open_reader,
)
from modelyard.core.records import ModelRecord, VersionRecord
from modelyard.core.refs import VersionRef, resolve
from modelyard.core.settings import Settings
from modelyard.errors import BackendError, ModelNotFound, NotFound, UserError, VersionNotFound
from tests.support.paged import PagedVersions

STATUS = "modelyard.status"
SEMVER = "modelyard.semver"
HEAVY = ("mlflow", "pandas", "sklearn", "boto3", "botocore", "sqlalchemy", "numpy", "requests")


# -- helpers ------------------------------------------------------------------------------------

def lean(yard: Any, backend: str) -> Reader:
    """The reader open_reader picks for the yard's settings (the one the read verbs will use)."""
    found = open_reader(yard.settings)
    assert found is not None
    assert isinstance(found, SqliteReader if backend == "embedded" else RestReader)
    return found


def norm(record: Any) -> VersionRecord:
    """The MLflow-client path's version record, as a ``records.VersionRecord`` (tracking.py
    still has its own copy of the class until the merge), with its two store artefacts
    normalised as the lean path normalises them: aliases come in the store's order (sorted
    here), and MLflow's REST client turns an unset ``user_id`` into ``""`` (``None`` here)."""
    fields = dataclasses.asdict(record)
    fields |= {"aliases": sorted(record.aliases), "user_id": record.user_id or None}
    return VersionRecord(**fields)


def models(records: list[Any]) -> list[ModelRecord]:
    """MLflow-client model records as ``records.ModelRecord`` (see ``norm``)."""
    return [ModelRecord(**dataclasses.asdict(r)) for r in records]


def outcome(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """("ok", value) or ("error", exception type): compares answers and failures alike."""
    try:
        value = call(*args)
    except (NotFound, UserError, BackendError) as exc:
        return "error", type(exc)
    return "ok", norm(value) if hasattr(value, "aliases") and hasattr(value, "version") else value


def resolved(yard: Any, name: str, ref: str, visible: list[Any] | None = None
             ) -> VersionRecord | None:
    """What ``Yard.resolve`` (MLflow's client, every version listed) answers; None if none.
    With ``visible`` (``yard.versions(name)``, listed once) the same ``refs.resolve`` runs on
    it instead of listing the versions again for every reference."""
    try:
        if visible is None:
            return norm(yard.resolve(name, ref))
        return norm(resolve(name, VersionRef.parse(ref), visible))
    except VersionNotFound:
        return None


def assert_same_answers(yard: Any, reader: Reader, names: list[str], *,
                        sample: Callable[[list[int]], list[int]] | None = None) -> None:
    """Every reader call against the MLflow-client path; ``sample`` picks the version numbers
    (and semvers) to look up one by one in a large model."""
    tracking = yard.tracking
    assert reader.list_models() == models(tracking.list_models())
    for name in names:
        assert [reader.get_model(name)] == models([tracking.get_model(name)])
        expected = [norm(v) for v in tracking.versions(name)]
        assert reader.versions(name) == expected
        visible = yard.versions(name) if sample else None
        assert reader.count_visible(name) == len(visible if visible is not None
                                                 else yard.versions(name))
        newest = max((v.version for v in expected), default=0)
        numbers = list(range(1, newest + 2))  # deleted and absent numbers included
        picked = sample(numbers) if sample else numbers
        for number in picked:
            assert outcome(reader.get_version, name, number) == outcome(
                tracking.get_version, name, number), (name, number)
        for alias in {*tracking.get_model(name).aliases, "staging", "production", "latest",
                      "absent-alias", "v1"}:
            assert reader.alias_holder(name, alias) == tracking.alias_holder(name, alias), alias
        assert reader.latest_visible(name) == resolved(yard, name, "latest", visible)
        chosen = set(picked)
        semvers = {v.tags[SEMVER] for v in expected
                   if SEMVER in v.tags and v.version in chosen} | {"9.9.9"}
        for semver in semvers:
            assert reader.version_by_tag(name, SEMVER, semver) == resolved(
                yard, name, f"v{semver}", visible), semver
        runs = sorted({v.run_id for v in expected if v.run_id})
        for run_id in runs:
            assert reader.get_run(run_id) == tracking.get_run(run_id)
        absent_run = uuid.uuid4().hex
        assert reader.get_runs([absent_run, *runs, *runs]) == tracking.get_runs(
            [absent_run, *runs]) == {r: tracking.get_run(r) for r in runs}
    absent = f"absent-{uuid.uuid4().hex[:8]}"
    assert outcome(reader.get_model, absent) == ("error", ModelNotFound)
    assert outcome(tracking.get_model, absent) == ("error", ModelNotFound)
    assert outcome(reader.versions, absent) == outcome(tracking.versions, absent)
    assert outcome(reader.get_version, absent, 1) == outcome(tracking.get_version, absent, 1)
    assert reader.alias_holder(absent, "production") is tracking.alias_holder(
        absent, "production") is None
    for call in (reader.latest_visible, reader.count_visible,
                 lambda n: reader.version_by_tag(n, SEMVER, "1.0.0")):
        assert outcome(call, absent) == outcome(yard.versions, absent)


# -- registries built by modelyard ----------------------------------------------------------------

_STAGES_AND_RESERVED = {"staging", "production", "archived", "none", "development", "latest"}
ALIASES = st.from_regex(r"[a-zà-ö][a-zà-ö0-9_-]{0,9}", fullmatch=True).filter(
    lambda a: a.lower() not in _STAGES_AND_RESERVED and not (
        a[0] in "vV" and a[1:].isdigit()))
# Tag values: any printable unicode (no surrogates; no control characters, which PostgreSQL's
# text type refuses in part).
TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co")),
                min_size=1, max_size=16)
MODEL_PLANS = st.fixed_dictionaries({
    "registered": st.integers(1, 3),  # versions through yard.register
    "plain": st.integers(0, 1),  # versions made by plain MLflow (no modelyard tags)
    "production": st.booleans(),
    "staging": st.booleans(),
    "archive": st.booleans(),
    "alias": st.none() | st.tuples(ALIASES, st.integers(0, 9)),
    "tag": st.tuples(TEXTS, st.integers(0, 9)),
    "delete": st.none() | st.integers(0, 9),
    "pending": st.booleans(),
})
FULL_PLAN = {"registered": 3, "plain": 1, "production": True, "staging": True, "archive": True,
             "alias": ("champion-é", 1), "tag": ("naïve ✓ 数据 🚀", 2), "delete": 2,
             "pending": True}
SMALL_PLAN = {"registered": 1, "plain": 0, "production": False, "staging": False,
              "archive": False, "alias": None, "tag": ("x", 0), "delete": None,
              "pending": False}


def build_model(yard: Any, trained: dict[str, Any], name: str, plan: dict[str, Any]) -> None:
    """One model as a team's registry would hold it, every change made through modelyard
    (plain-MLflow and pending versions through the tracking edge, as they arise)."""
    tracking = yard.tracking
    registered = [
        yard.register(trained["model"], name, metrics={"accuracy": 0.8 + i / 100},
                      params={"depth": i + 1}, tags={"größe": f"v{i} ✓"}).version
        for i in range(plan["registered"])
    ]
    first = tracking.get_version(name, registered[0])
    plain = [
        tracking.create_version(name, first.source, first.run_id, {"note": "plain MLflow ✓"},
                                "made by plain MLflow", first.model_id).version
        for _ in range(plan["plain"])
    ]
    numbers = registered + plain
    if plan["production"]:
        yard.promote(name, registered[0], to="staging")
        yard.promote(name, registered[0], to="production")
    if plan["staging"] and len(registered) > 1:
        yard.promote(name, registered[-1], to="staging")
    if plan["archive"] and len(registered) > 2 and not tracking.get_version(
            name, registered[1]).aliases:
        yard.promote(name, registered[1], to="archived")
    if plan["alias"]:
        alias, index = plan["alias"]
        yard.set_alias(name, numbers[index % len(numbers)], alias)
    text, index = plan["tag"]
    yard.set_tag(name, numbers[index % len(numbers)], "größe", text)
    if plan["delete"] is not None:
        tracking.delete_version(name, numbers[plan["delete"] % len(numbers)])
    if plan["pending"]:  # a registration in flight, claiming the newest semver
        newest = max((v for v in tracking.versions(name, with_aliases=False)
                      if SEMVER in v.tags), key=lambda v: v.version, default=None)
        tags = {STATUS: "pending"} | ({SEMVER: newest.tags[SEMVER]} if newest else {})
        tracking.create_version(name, first.source, first.run_id, tags, None, first.model_id)


@pytest.mark.slow
@hsettings(max_examples=5, deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                  HealthCheck.data_too_large])
@given(plans=st.lists(MODEL_PLANS, min_size=1, max_size=2))
@example(plans=[FULL_PLAN, SMALL_PLAN])
def test_reader_answers_as_mlflow_client(yard: Any, backend: str, trained: dict[str, Any],
                                         plans: list[dict[str, Any]]) -> None:
    names = [f"contract-{uuid.uuid4().hex[:8]}" for _ in plans]
    for name, plan in zip(names, plans, strict=True):
        build_model(yard, trained, name, plan)
    with contextlib.closing(lean(yard, backend)) as reader:
        assert_same_answers(yard, reader, names)


def test_runs_read_together(yard: Any, backend: str, name: str,
                            trained: dict[str, Any]) -> None:
    """``get_runs``: a page of versions' runs in one search on a server (not one call per
    run), as MLflow's client reads each; a run in an experiment made after the reader listed
    them is still found, and an absent run is left out."""
    first = yard.register(trained["model"], name, metrics={"accuracy": 0.5}, params={"c": 1})
    second = yard.register(trained["model"], name, metrics={"accuracy": 0.7})
    client = yard.tracking.client
    with contextlib.closing(lean(yard, backend)) as reader:
        ids = [first.run_id, second.run_id, uuid.uuid4().hex]
        expected = {r: yard.tracking.get_run(r) for r in ids[:2]}
        assert reader.get_runs(ids) == expected
        assert reader.get_runs([]) == {}
        late = client.create_run(client.create_experiment(f"late-{uuid.uuid4().hex[:8]}"))
        client.log_metric(late.info.run_id, "loss", 0.25)
        ids.append(late.info.run_id)
        expected[late.info.run_id] = yard.tracking.get_run(late.info.run_id)
        before = getattr(reader, "requests", 0)
        assert reader.get_runs(ids) == expected
        assert expected[late.info.run_id]["metrics"] == {"loss": 0.25}
        if backend == "server":
            # one search, then get_run for the two ids it did not find (the late one and
            # the absent one), sent at once; the late run's experiment is now known
            assert reader.requests - before == 3
            before = reader.requests
            assert reader.get_runs(ids) == expected
            assert reader.requests - before == 2  # the absent id is still read on its own


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_remembered_reads_each_model_once(yard: Any, backend: str, name: str,
                                          trained: dict[str, Any]) -> None:
    """Inside ``remembered`` (a dashboard page) a model or version asked for by several parts,
    at once or one after another, is one request; each caller gets its own copy; once the
    scope closes the server is asked again (a change made meanwhile is seen)."""
    from modelyard.backend.lean.base import at_once

    first = yard.register(trained["model"], name)
    with contextlib.closing(lean(yard, backend)) as reader:
        assert isinstance(reader, RestReader)
        before = reader.requests
        with reader.remembered():
            found = at_once(reader, [lambda: reader.get_model(name)] * 4
                            + [lambda: reader.get_version(name, first.version)] * 3)
            mine = reader.get_model(name)
            mine.tags["changed"] = "by this caller"
            assert "changed" not in reader.get_model(name).tags
            assert reader.requests - before == 2  # one model read, one version read
        assert all(m == found[0] for m in found[:4])
        assert all(v == found[4] for v in found[4:])
        yard.tracking.set_model_tag(name, "after", "seen")
        assert reader.get_model(name).tags.get("after") == "seen"
        assert reader.requests - before == 3


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_two_thousand_versions(yard: Any, backend: str, name: str,
                               trained: dict[str, Any]) -> None:
    """2,000 versions; those read by reference come through modelyard's own register and
    promote, the bulk between them is copied from a registered version's rows in one SQL
    transaction (MLflow's create_model_version is O(n) per call on SQLite: 90 s here)."""
    first = yard.register(trained["model"], name, params={"depth": 1})
    yard.promote(name, first.version, to="staging")
    yard.promote(name, first.version, to="production")
    bulk = range(2, 1998)
    db = sqlite3.connect(yard.settings.home_path / "mlflow.db")
    with db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(model_versions)")]
        picked = ", ".join("?" if c == "version" else ("creation_time + ?" if c ==
                           "creation_time" else c) for c in columns)
        assert columns.index("version") < columns.index("creation_time")
        db.executemany(
            f"INSERT INTO model_versions ({', '.join(columns)}) SELECT {picked} "
            "FROM model_versions WHERE name = ? AND version = ?",
            # Created a day ago: the pending ones are left over from crashed registrations,
            # not in flight (a registration waits for pending versions younger than
            # pending_timeout).
            [(k, k - 86_400_000, name, first.version) for k in bulk])
        tags = dict(db.execute("SELECT key, value FROM model_version_tags WHERE name = ? AND "
                               "version = ?", (name, first.version)).fetchall())
        rows: list[tuple[str, str, str, int]] = []
        for k in bulk:
            own = tags | {SEMVER: f"1.0.{k - 1}", "modelyard.stage": "none",
                          "modelyard.bump": "patch", STATUS: "pending" if k % 89 == 0 else
                          "ready"}
            rows.extend((key, value, name, k) for key, value in own.items())
        db.executemany("INSERT INTO model_version_tags (key, value, name, version) "
                       "VALUES (?, ?, ?, ?)", rows)
        db.executemany("UPDATE model_versions SET current_stage = 'Deleted_Internal', "
                       "source = 'REDACTED-SOURCE-PATH', run_id = 'REDACTED-RUN-ID' "
                       "WHERE name = ? AND version = ?",
                       [(name, k) for k in bulk if k % 97 == 0])
    db.close()
    yard.set_alias(name, 1500, "canary")
    newest = yard.register(trained["model"], name, params={"depth": 2})
    assert newest.version == 1998
    with contextlib.closing(lean(yard, backend)) as reader:
        assert reader.count_visible(name) == 1998 - 20 - 22  # 20 deleted, 22 pending
        assert reader.alias_holder(name, "production") == first.version
        assert reader.alias_holder(name, "canary") == 1500
        latest = reader.latest_visible(name)
        assert latest is not None and latest.version == newest.version
        by_semver = reader.version_by_tag(name, SEMVER, "1.0.0")
        assert by_semver is not None and by_semver.aliases == ["production"]
        assert_same_answers(yard, reader, [name], sample=lambda numbers: [
            n for n in numbers if n <= 3 or n >= 1996
            or n in (89, 97, 178, 194, 1500, 1501, 1940, 1958)])


@hsettings(max_examples=300, deadline=None, database=None)
@given(newest=st.integers(1, 20_000),
       gaps=st.sampled_from(["none", "retention", "few", "uniform", "clustered", "most",
                             "pending"]),
       seed=st.integers(0, 2**32 - 1))
def test_counting_probes_are_few(newest: int, gaps: str, seed: int) -> None:
    import random

    rng = random.Random(seed)
    numbers = list(range(1, newest + 1))
    if gaps == "retention":  # cleanup deleted the oldest ones
        numbers = numbers[rng.randrange(newest):]
    elif gaps == "few":
        numbers = [n for n in numbers if rng.random() > 0.001]
    elif gaps == "uniform":
        numbers = [n for n in numbers if rng.random() > 0.05]
    elif gaps == "clustered":
        start = rng.randrange(newest)
        numbers = [n for n in numbers if not start <= n < start + rng.randrange(newest + 1)]
    elif gaps == "most":
        numbers = [n for n in numbers if rng.random() > 0.9]
    elif gaps == "pending":  # the versions tagged pending: registrations in flight, sparse
        numbers = [n for n in numbers if rng.random() < 1 / 89]
    paged = PagedVersions(numbers)
    assert paged.counts.count("name = 'm'", None) == len(numbers)
    span = numbers[-1] - numbers[0] + 1 if numbers else 0
    assert paged.calls <= 4 + 2 * span.bit_length()  # O(log n) at worst
    if gaps in ("none", "retention"):
        assert paged.calls <= 3
    # Counted as a sparse set (how count_visible counts the pending versions): the same
    # answer, from a probe near the top instead of the span's end.
    sparse = PagedVersions(numbers)
    assert sparse.counts.count("name = 'm'", None, dense=False) == len(numbers)
    assert sparse.calls <= 4 + 2 * span.bit_length()
    if gaps == "pending":
        assert sparse.calls <= 10, (len(numbers), span)


# -- the schema revision guard ------------------------------------------------------------------

def test_known_revision_is_the_installed_mlflow_head(empty_embedded_db: Path) -> None:
    """A fresh database from the installed MLflow carries a revision the reader has proved;
    after an MLflow upgrade this fails until the contract suite passes on the new revision."""
    with contextlib.closing(sqlite3.connect(empty_embedded_db)) as db:
        (revision,), = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision in KNOWN_SCHEMA_REVISIONS


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_unknown_revision_falls_back_to_mlflow(
        yard: Any, backend: str, name: str, trained: dict[str, Any], tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    yard.register(trained["model"], name, params={"depth": 1})
    with contextlib.closing(lean(yard, backend)) as reader:
        lean_answer = reader.versions(name)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copyfile(yard.settings.home_path / "mlflow.db", copy / "mlflow.db")
    with contextlib.closing(sqlite3.connect(copy / "mlflow.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    copied = Settings(home=str(copy))
    with caplog.at_level(logging.DEBUG, logger="modelyard.reader"):
        assert open_reader(copied) is None
    assert "'feedfacecafe' is not one the lean reader has proved" in caplog.text
    # A revision MLflow itself knows but the reader has not proved: the same database is
    # answered by MLflow's client, with the answer the lean reader gave.
    monkeypatch.setattr(reader_sqlite, "KNOWN_SCHEMA_REVISIONS", frozenset())
    assert open_reader(yard.settings) is None
    assert [norm(v) for v in yard.tracking.versions(name)] == lean_answer


def test_open_reader_picks_by_uri(tmp_path: Path) -> None:
    assert open_reader(Settings(home=str(tmp_path / "none"))) is None  # no database yet
    for uri in ("databricks", "databricks-uc", "postgresql://u:p@db/mlflow",
                "file:///tmp/mlruns", "sqlite://", "sqlite:///:memory:"):
        assert open_reader(Settings(tracking_uri=uri)) is None, uri
    rest = open_reader(Settings(tracking_uri="https://mlflow.example.com/base"), environ={})
    assert isinstance(rest, RestReader)
    assert open_reader(Settings(tracking_uri="http://a:5000", registry_uri="http://b:5000"),
                       environ={}) is None
    assert open_reader(Settings(tracking_uri="http://a:5000"),
                       environ={"MLFLOW_TRACKING_AUTH": "plugin"}) is None


# -- the import budget --------------------------------------------------------------------------

_LEAN_SCRIPT = """
import json, sys
import modelyard.backend.lean.reader
light = sorted(m for m in ("pydantic", "modelyard.core.config", "modelyard.core.settings",
                           "modelyard.backend.connection", "modelyard.backend.tracking",
                           "modelyard.backend.artifacts")
               if m in sys.modules)
from modelyard.core.config import load_settings
from modelyard.backend.lean.reader import open_reader
reader = open_reader(load_settings())
name = sys.argv[1]
version = reader.latest_visible(name)
reader.list_models(); reader.versions(name); reader.count_visible(name)
reader.alias_holder(name, "production"); reader.version_by_tag(name, "modelyard.semver", "1.0.0")
reader.get_run(version.run_id); reader.get_version(name, version.version)
print(json.dumps({"reader": type(reader).__name__, "light": light,
                  "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def test_reads_import_no_mlflow(yard: Any, backend: str, name: str,
                                trained: dict[str, Any]) -> None:
    yard.register(trained["model"], name)
    done = subprocess.run([sys.executable, "-c", _LEAN_SCRIPT, name], capture_output=True,
                          text=True, timeout=120, check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"reader": "SqliteReader" if backend == "embedded" else "RestReader",
                      "light": [], "heavy": []}


# -- network failure modes ----------------------------------------------------------------------

def test_dead_server_fails_fast_with_redacted_uri() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    uri = f"http://alice:s3cret@127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        RestReader(uri, environ={}).list_models()
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in caught.value.message and "unreachable" in caught.value.message
    assert "s3cret" not in caught.value.message


def test_silent_server_fails_within_the_time_budget() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            RestReader(uri, timeout=1.5, retries=2, environ={}).get_model("m")
        elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert uri.removeprefix("http://") in caught.value.message


# -- MLflow's client settings: a real MLflow auth server ----------------------------------------

@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``mlflow server --app-name basic-auth`` on SQLite: admin, a user ``bob`` with no
    permission on the model ``secret``, a model ``open`` everyone may read."""
    pytest.importorskip("flask_wtf", reason="MLflow's auth app needs mlflow[auth] (Flask-WTF)")
    from tests.support.devstack import free_port

    root = tmp_path_factory.mktemp("auth")
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = admin\n"
        "admin_password = admin-pass-1234\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env |= {"MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "modelyard-tests"}  # the auth app's CSRF key
    with (root / "server.log").open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host",
             "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri",
             f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "art")],
            env=env, cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{uri}/health",
                                                                      timeout=2):
                break
            assert process.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "auth server did not start"
            time.sleep(0.5)
        admin = {"MLFLOW_TRACKING_USERNAME": "admin",
                 "MLFLOW_TRACKING_PASSWORD": "admin-pass-1234"}

        def post(path: str, body: dict[str, str]) -> None:
            url = f"{uri}{path}" if path.startswith("/") else f"{uri}/api/2.0/mlflow/{path}"
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json",
                         "Authorization": "Basic YWRtaW46YWRtaW4tcGFzcy0xMjM0"})
            urllib.request.urlopen(request, timeout=10).read()

        post("users/create", {"username": "bob", "password": "bob-pass-1234"})
        post("registered-models/create", {"name": "secret"})
        post("registered-models/create", {"name": "open"})
        post("/api/3.0/mlflow/users/permissions/grant",  # MLflow 3.17's grant API
             {"username": "bob", "resource_type": "registered_model", "resource_id": "open",
              "permission": "READ"})  # nothing on "secret" (the default: NO_PERMISSIONS)
        yield {"uri": uri, **admin}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=5)


def test_basic_auth_credentials_and_refusals(auth_server: dict[str, str], tmp_path: Path
                                             ) -> None:
    uri = auth_server["uri"]
    admin = {k: v for k, v in auth_server.items() if k.startswith("MLFLOW_")}
    assert RestReader(uri, environ=admin).get_model("secret").name == "secret"
    bob = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "bob-pass-1234"}
    assert RestReader(uri, environ=bob).get_model("open").name == "open"
    with pytest.raises(UserError, match=r"permission denied .*HTTP 403"):
        RestReader(uri, environ=bob).get_model("secret")
    with pytest.raises(UserError, match=r"refused the credentials .*HTTP 401") as caught:
        RestReader(uri, environ={**bob, "MLFLOW_TRACKING_PASSWORD": "wrong"}).get_model("open")
    assert "wrong" not in caught.value.message
    with pytest.raises(UserError, match="HTTP 401"):
        RestReader(uri, environ={}).get_model("open")
    # Credentials in the URI, and MLflow's ~/.mlflow/credentials file.
    host = uri.removeprefix("http://")
    assert RestReader(f"http://bob:bob-pass-1234@{host}", environ={}).get_model("open")
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = bob\nmlflow_tracking_password = bob-pass-1234\n")
    assert RestReader(uri, environ={"HOME": str(tmp_path)}).get_model("open")


# -- MLflow's client settings: TLS, tokens, workspaces, proxies (stand-in servers) ----------------
# MLflow's server has no TLS option of its own (TLS ends at a proxy in front of it), so a small
# stdlib HTTPS server stands in for that proxy and answers one registry call as MLflow does.

_MODEL_JSON = json.dumps({"registered_model": {
    "name": "m", "creation_timestamp": 1, "last_updated_timestamp": 2,
    "aliases": [{"alias": "production", "version": "3"}]}}).encode()


Answer = Callable[[str, dict[str, str]], tuple[int, bytes]]


def _model_answer(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    return 200, _MODEL_JSON


class _StandIn(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]
    answer: Answer

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.seen.append({"path": self.path, **headers})
        status, body = type(self).answer(self.path, headers)
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status == 200 else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def stand_in(context: ssl.SSLContext | None = None, answer: Answer = _model_answer
             ) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_StandIn,), {"seen": seen, "answer": staticmethod(answer)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_settings(tmp_path: Path) -> None:
    server_cert, server_key = _certificate(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_cert, server_key)
    with stand_in(context) as (uri, _seen):
        with pytest.raises(BackendError, match="TLS certificate not trusted"):
            RestReader(uri, environ={}).get_model("m")
        trusted = {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(server_cert)}
        assert RestReader(uri, environ=trusted).get_model("m").aliases == {"production": 3}
        insecure = {"MLFLOW_TRACKING_INSECURE_TLS": "true"}
        assert RestReader(uri, environ=insecure).get_model("m").name == "m"
    # A server that asks for a client certificate: MLFLOW_TRACKING_CLIENT_CERT_PATH (one PEM
    # file with the certificate and its key, as requests takes it).
    client_cert, client_key = _certificate(tmp_path, "client")
    bundle = tmp_path / "client.pem"
    bundle.write_bytes(client_cert.read_bytes() + client_key.read_bytes())
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_cert)
    with stand_in(context) as (uri, _seen):
        with pytest.raises(BackendError):
            RestReader(uri, timeout=3, environ=trusted).get_model("m")
        both = trusted | {"MLFLOW_TRACKING_CLIENT_CERT_PATH": str(bundle)}
        assert RestReader(uri, environ=both).get_model("m").name == "m"


def test_token_workspace_and_proxy_headers() -> None:
    with stand_in() as (uri, seen):
        RestReader(uri, environ={"MLFLOW_TRACKING_TOKEN": "tok-123",
                                 "MLFLOW_WORKSPACE": "team-a"}).get_model("m ü")
        assert seen[-1]["authorization"] == "Bearer tok-123"
        assert seen[-1]["x-mlflow-workspace"] == "team-a"
        assert seen[-1]["path"] == "/api/2.0/mlflow/registered-models/get?name=m%20%C3%BC"
        # Username and password win over a token, as in MLflow's client.
        RestReader(uri, environ={"MLFLOW_TRACKING_TOKEN": "tok-123",
                                 "MLFLOW_TRACKING_USERNAME": "u",
                                 "MLFLOW_TRACKING_PASSWORD": "p"}).get_model("m")
        assert seen[-1]["authorization"] == "Basic dTpw"
        # Through an http proxy: the stand-in plays the proxy, the request names the target.
        proxied = RestReader("http://mlflow.internal:5000/base",
                             environ={"http_proxy": uri.replace("127.0.0.1", "pu:pp@127.0.0.1")})
        proxied.get_model("m")
        assert seen[-1]["path"] == ("http://mlflow.internal:5000/base/api/2.0/mlflow/"
                                    "registered-models/get?name=m")
        assert seen[-1]["proxy-authorization"] == "Basic cHU6cHA="
        bypass = {"http_proxy": "http://127.0.0.1:9", "no_proxy": "localhost,127.0.0.1"}
        assert RestReader(uri, environ=bypass).get_model("m").name == "m"


def _auth_app_answer(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Answers as MLflow's basic-auth app does (``make_basic_auth_response`` and
    ``make_forbidden_response``: plain-text 401 and 403 bodies)."""
    if headers.get("authorization") != "Basic Ym9iOmJvYi1wYXNz":  # bob:bob-pass
        return 401, b"You are not authenticated. Please see https://www.mlflow.org/docs/latest/auth"
    if "name=secret" in path or "%27secret%27" in path:
        return 403, b"Permission denied"
    if "registered-models/search" in path:  # the reader's name-filtered look-up
        model = json.loads(_MODEL_JSON)["registered_model"]
        return 200, json.dumps({"registered_models": [{**model, "name": "open"}]}).encode()
    return 200, _MODEL_JSON


def test_refusals_are_one_clear_line() -> None:
    """401 and 403 as MLflow's auth app gives them (a stand-in: the real app is tested by
    test_basic_auth_credentials_and_refusals where mlflow[auth] is installed)."""
    with stand_in(answer=_auth_app_answer) as (uri, seen):
        bob = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "bob-pass"}
        assert RestReader(uri, environ=bob).get_model("open").aliases == {"production": 3}
        with pytest.raises(UserError, match=r"permission denied by tracking server .*HTTP 403"):
            RestReader(uri, environ=bob).get_model("secret")
        wrong = {**bob, "MLFLOW_TRACKING_PASSWORD": "guess"}
        with pytest.raises(UserError, match=r"refused the credentials \(HTTP 401\)") as caught:
            RestReader(f"http://bob:guess@{uri.removeprefix('http://')}", environ=wrong
                       ).get_model("open")
        assert "guess" not in caught.value.message and len(seen) == 3  # refusals: no retry
