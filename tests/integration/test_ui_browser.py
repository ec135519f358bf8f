"""The dashboard in a real browser (Debian's chromium driven by Playwright): each page loads
with no console error, shows the holders, semvers, events and figures, its charts have
points, links to MLflow's UI resolve (on the team stack, whose server serves that UI), and a
model named with HTML shows as text and runs nothing. On the embedded demo-like project and
on the team stack, one page sweep each, sharing one browser; screenshots go to
``.artifacts/screenshots/`` (the team stack's prefixed ``server-``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import serving
from tests.support.ui_project import XSS, XSS_TAG, build

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"

pytestmark = [
    pytest.mark.parametrize("backend", ["embedded", "server"], indirect=True),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (make test installs it)"),
]


def _serve(app: Any) -> Iterator[str]:
    with serving(app) as base:  # open until the test's generator is collected
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser for both backends' sweeps (starting chromium costs seconds)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_every_page_in_a_browser(chromium: Any, backend: str, make_yard: Any, name: str,
                                 trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    from modelyard.ui.app import create_app

    monkeypatch.setenv("MODELYARD_BACKUP", str(tmp_path / "backup"))
    yard = make_yard()
    project = build(yard, name, trained)
    SHOTS.mkdir(parents=True, exist_ok=True)
    served = _serve(create_app(yard.settings))
    base = next(served)
    problems: list[str] = []
    dialogs: list[str] = []
    prefix = "" if backend == "embedded" else "server-"
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def visit(path: str, shot: str) -> Any:
            answer = page.goto(f"{base}{path}")
            assert answer is not None and answer.status == 200, path
            page.screenshot(path=str(SHOTS / f"{prefix}{shot}.png"), full_page=True)
            return page

        overview = visit("/", "overview")
        row = overview.locator(f'tr[data-model="{name}"]')
        assert f"v{project.production}" in row.locator(".holder-production").inner_text()
        assert f"v{project.staging}" in row.locator(".holder-staging").inner_text()
        assert overview.get_by_text(f"{XSS}-{name[-6:]}").count() == 1  # text, not HTML
        assert overview.locator("img[src=x]").count() == 0

        model = visit(f"/model?name={name}", "model")
        assert model.locator("svg.chart circle.point").count() == 2 * len(project.versions)
        semvers = model.locator("#versions a.semver").all_inner_texts()
        assert sorted(semvers) == sorted(f"v{s}" for s in project.versions)
        href = model.locator("#versions a.mlflow").first.get_attribute("href") or ""
        assert f"/#/models/{name}/versions/" in href
        if backend == "server":  # the tracking server serves MLflow's UI: it resolves
            assert href.startswith(yard.settings.resolved_tracking_uri.rstrip("/"))
            landing = page.request.get(href.partition("#")[0])
            assert landing.ok and "<html" in landing.text().lower(), href
        assert model.locator("#timeline").inner_text().count("promote") == 3
        model.fill("input[name=a]", f"v{sorted(project.versions)[0]}")
        model.fill("input[name=b]", "production")
        model.click("form.filters button")
        model.wait_for_selector("#compare")
        assert "metrics.accuracy" in model.inner_text("body")
        page.screenshot(path=str(SHOTS / f"{prefix}compare.png"), full_page=True)

        first = min(project.versions.values())
        version = visit(f"/version?name={name}&ref={first}", "version")
        assert XSS_TAG in version.locator("tr.user-tag").inner_text()
        assert project.snapshot in version.locator("#backups").inner_text()

        audit = visit(f"/audit?model={name}", "audit")
        assert "verified" in audit.locator("#chains").inner_text()
        assert "promote" in audit.locator("#events").inner_text()

        incidents = visit("/incidents", "incidents")
        assert incidents.locator("svg.chart circle.point").count() >= 1
        assert "model-corruption" in incidents.locator("#mttr").inner_text()

        serving = visit(f"/serving?name={name}&since=1h", "serving")
        assert serving.locator("svg.chart circle.point").count() > 0
        assert "staging" in serving.locator("#arms").inner_text()

        assert problems == [], problems  # every page loaded clean (its icon too)
        missing = page.goto(f"{base}/model?name=no-such-model")
        assert missing is not None and missing.status == 404
        assert "no-such-model" in page.inner_text("#problem")
    finally:
        page.close()
        next(served, None)
    assert dialogs == []  # no script from a name or a tag ever ran
