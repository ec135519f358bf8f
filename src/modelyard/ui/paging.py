"""Paging, links to MLflow's UI and the small helpers every dashboard page shares (which
names modelyard manages, the headline metrics, a schema as text)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from modelyard.core.names import check_name
from modelyard.errors import InvalidInput, NotFound, YardError

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.core.settings import Settings

PER_PAGE = 25  # rows of a long list per page
MAX_PAGE = 10**6  # a page number beyond any list here: 400, not an attempt to read it
LEVELS = ("ok", "warn", "degraded", "critical")


# -- paging ---------------------------------------------------------------------------------
def page_number(text: str | None) -> int:
    """``?page=`` as a number from 1 to ``MAX_PAGE``; anything else is ``InvalidInput``."""
    if text is None or text == "":
        return 1
    if not (text.isascii() and text.isdigit()) or len(text) > 7 or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidInput(f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def version_number(text: str | None) -> int | None:
    """``?below=`` (a version number) or None."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) < 1:
        raise InvalidInput("below must be a version number (a whole number from 1)")
    return int(text)


@dataclass
class Page:
    """One page of a list held in memory; a page past the end is ``NotFound`` (404)."""

    items: list[Any]
    page: int
    pages: int
    total: int
    params: dict[str, str] = field(default_factory=dict)

    def query(self, page: int) -> str:
        return "?" + urlencode({**{k: v for k, v in self.params.items() if v}, "page": page})


def paged(items: list[Any], page: int, params: Mapping[str, str] | None = None,
          per_page: int = PER_PAGE) -> Page:
    pages = max(1, -(-len(items) // per_page))
    if page > pages:
        raise NotFound(f"no page {page}: there are {pages}")
    start = (page - 1) * per_page
    return Page(items[start:start + per_page], page, pages, len(items), dict(params or {}))


# -- links to MLflow's UI ------------------------------------------------------------------
@dataclass(frozen=True)
class MlflowLinks:
    """Addresses of MLflow's own UI pages (its single-page app's ``#/`` routes)."""

    base: str

    @property
    def home(self) -> str:
        return f"{self.base}/"

    def model(self, name: str) -> str:
        return f"{self.base}/#/models/{quote(name, safe='')}"

    def version(self, name: str, version: int) -> str:
        return f"{self.base}/#/models/{quote(name, safe='')}/versions/{version}"

    def run(self, run_id: str | None, experiment_id: str | None = None) -> str | None:
        if not run_id:
            return None
        return (f"{self.base}/#/experiments/{quote(str(experiment_id or '0'), safe='')}"
                f"/runs/{quote(run_id, safe='')}")


def mlflow_base(settings: Settings, given: str | None = None) -> str:
    """MLflow's UI: the one given, the tracking server itself, or what ``modelyard mlflow-ui``
    serves for the embedded registry (http://127.0.0.1:5000). Never with credentials."""
    from urllib.parse import urlsplit, urlunsplit

    uri = given or settings.resolved_tracking_uri
    if not uri.startswith(("http://", "https://")):
        return "http://127.0.0.1:5000"
    parts = urlsplit(uri.rstrip("/"))
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- small helpers ---------------------------------------------------------------------------
def age_s(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - moment).total_seconds())


def worst(levels: Iterable[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")


def at_once(calls: list[Callable[[], Any]], concurrent: bool) -> list[Any]:
    """Independent reads; at once from threads on a server (pooled keep-alive connections)."""
    if not concurrent or len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(8, len(calls)),
                            thread_name_prefix="modelyard-ui") as pool:
        return list(pool.map(lambda call: call(), calls))


def quiet(call: Callable[[], Any], default: Any = None) -> Any:
    """A part of a page that cannot be read shows as absent, not as an error page."""
    try:
        return call()
    except (YardError, OSError, ValueError):
        return default


HEADLINE = 5  # metrics in the versions table and the chart (every one is on the version page)


def headline(names: set[str]) -> list[str]:
    """The metrics a version is judged by: not the cross-validation spread (``cv_*``,
    ``*_std``, ``*_mean``) when others exist; at most ``HEADLINE``, by name."""
    main = sorted(n for n in names
                  if not n.startswith("cv_") and not n.endswith(("_std", "_mean")))
    return (main or sorted(names))[:HEADLINE]


def managed(name: str) -> bool:
    """Whether modelyard could have registered this name (MLflow's own client takes names
    modelyard refuses, ``<script>`` among them: those are listed, never read further)."""
    try:
        check_name(name)
        return True
    except InvalidInput:
        return False


def schema_text(tags: Mapping[str, str]) -> str:
    from modelyard.core.names import T_SCHEMA
    from modelyard.core.versioning import Fingerprint

    inputs, _ = Fingerprint.parse_schema(tags.get(T_SCHEMA))
    if inputs is None:
        return "-"
    def one(column: Any) -> str:
        if isinstance(column, dict):
            return f"{column.get('name', '?')} {column.get('type', '?')}"
        if isinstance(column, (list, tuple)) and len(column) >= 2:
            return f"{column[0]} {column[1]}"
        return str(column)

    return ", ".join(one(c) for c in inputs)


__all__ = ["MlflowLinks", "Page", "headline", "managed", "mlflow_base", "page_number",
           "paged", "schema_text", "version_number"]
