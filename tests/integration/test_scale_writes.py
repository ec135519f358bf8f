"""Write paths stay bounded as a model grows (issue 10, "Scale").

A model of 2,000 versions (version 1 registered through modelyard, the bulk copied by SQL: see
``tests/support/bulk.py``; 1 in 89 left pending by a crash a day ago, 1 in 97 deleted) takes one
more registration through modelyard's own write path, on both backends. Its semver must be right,
and it must read the registry with bounded searches only: never a listing of every version
(which, at 10,000 versions on a server, outlives the clients' 10 s deadline), and a few
hundred rows at most however many versions there are.

Beside it, exporting a small model reads that model only: a fixed number of registry calls,
none of them about the big model (the export of a whole registry reads every version of
every model, by design; ``export([name])`` must not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import bulk

LAST = 2_000  # versions 2..LAST copied; the registration below becomes LAST + 1
ROWS_BOUND = 300  # rows the write path may read, whatever the number of versions
SEMVER_HIGH = "modelyard.semver_high"


class Reads:
    """Counts what the write path reads through the yard's listing and readers."""

    def __init__(self, yard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.searches = 0
        self.rows = 0
        self.listings: list[str] = []
        ctx = yard.ctx
        targets = {id(o): o for o in (ctx.listing, ctx.reads, ctx.tracking)}
        for target in targets.values():
            monkeypatch.setattr(target, "search_versions",
                                self._search(target.search_versions))
            monkeypatch.setattr(target, "versions", self._listing(target.versions))

    def _search(self, real: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        def search(*args: Any, **kwargs: Any) -> list[Any]:
            found = real(*args, **kwargs)
            self.searches += 1
            self.rows += len(found)
            return found

        return search

    def _listing(self, real: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        def versions(name: str, *args: Any, **kwargs: Any) -> list[Any]:
            self.listings.append(name)
            return real(name, *args, **kwargs)

        return versions


def _copy(yard: Any, backend: str, stack_or_none: Any, name: str) -> None:
    if backend == "server":
        bulk.copy_server(stack_or_none.pg_port, name, LAST)
    else:
        bulk.copy_embedded(yard.settings.home_path / "mlflow.db", name, LAST)


def test_registering_into_a_big_model_reads_a_bounded_number_of_rows(
        make_yard: Any, backend: str, stack_or_none: Any, name: str,
        trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model = trained["model"]
    yard = make_yard()
    first = yard.register(model, name, params={"depth": 1})
    assert first.semver == "1.0.0"
    _copy(yard, backend, stack_or_none, name)
    small = f"small-{name}"
    try:
        _register_into_the_big_model(make_yard, name, model, monkeypatch)
        _export_beside_the_big_model(make_yard, small, name, model, monkeypatch)
    finally:
        if backend == "server":
            bulk.drop_server(stack_or_none.pg_port, name)
            bulk.drop_server(stack_or_none.pg_port, small)


def _register_into_the_big_model(make_yard: Any, name: str, model: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    yard = make_yard()  # a fresh yard: nothing cached from before the copy
    reads = Reads(yard, monkeypatch)

    newest = yard.register(model, name, params={"depth": 2})

    assert newest.version == LAST + 1
    assert newest.semver == f"1.0.{LAST}"  # after v1.0.<LAST-1>, the newest copy
    assert "depth 1 -> 2" in (newest.bump_reason or "")  # compared with its fingerprint
    assert reads.listings == [], "the write path listed every version"
    assert 0 < reads.rows <= ROWS_BOUND, (reads.searches, reads.rows)
    assert reads.searches <= 12, reads.searches
    assert yard.ctx.reads.get_model(name).tags[SEMVER_HIGH] == f"1.0.{LAST}"

    # The highest semver held by a low version number (an imported or restored version) is
    # found through the model's hint, checked against its holder...
    yard.tracking.set_version_tags(name, 5, {"modelyard.semver": "5.0.0"})
    yard.tracking.set_model_tag(name, SEMVER_HIGH, "5.0.0")
    reads.rows = 0
    above = yard.register(model, name, params={"depth": 3})
    assert above.semver == "5.0.1"
    assert reads.rows <= ROWS_BOUND and reads.listings == []

    # ... and a hint whose holder is gone costs one paged read of every version, is
    # repaired, and never gives a wrong semver.
    yard.tracking.set_model_tag(name, SEMVER_HIGH, "9.0.0")
    again = yard.register(model, name, params={"depth": 4})
    assert again.semver == "5.0.2"
    assert yard.ctx.reads.get_model(name).tags[SEMVER_HIGH] == "5.0.2"
    latest = yard.ctx.reads.latest_visible(name)
    assert latest is not None and latest.version == LAST + 3
    assert reads.listings == []


# Every registry read a verb can make, on MLflow's client and on the lean readers.
_READS = ("list_models", "get_model", "get_version", "alias_holder", "version_by_tag",
          "latest_visible", "versions", "count_visible", "search_versions", "get_run",
          "artifact_location")


def _export_beside_the_big_model(make_yard: Any, small: str, big: str, model: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    yard = make_yard()
    yard.register(model, small, params={"depth": 1})
    calls: list[tuple[str, str]] = []
    ctx = yard.ctx
    for target in {id(o): o for o in (ctx.listing, ctx.reads, ctx.tracking)}.values():
        for method in _READS:
            real = getattr(target, method, None)
            if real is None:
                continue

            def counted(*args: Any, _real: Any = real, _method: str = method, **kw: Any) -> Any:
                about = args[0] if args else ""
                calls.append((_method, getattr(about, "name", about)))
                return _real(*args, **kw)

            monkeypatch.setattr(target, method, counted)

    doc = yard.export([small])

    [exported] = doc["models"]
    assert exported["name"] == small and [v["version"] for v in exported["versions"]] == [1]
    assert not [c for c in calls if c[1] == big], calls  # nothing about the big model
    assert "list_models" not in [c[0] for c in calls], calls  # nor the registry's model list
    assert {about for method, about in calls if method != "get_run"} == {small}, calls
    assert len(calls) <= 6, calls  # the model, its versions; per version: run, location

