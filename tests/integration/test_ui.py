"""The dashboard (``modelyard ui``): every page shows what modelyard recorded, on both
backends; bad input gets a clean 400/404 page; names and tags are shown as text; the UI's
process never imports mlflow."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.support.helpers import run_cli
from tests.support.ui_project import XSS, XSS_TAG, UiProject, build

PAGES = ("/", "/model?name={name}", "/model?name={name}&a=v1.0.0&b=production",
         "/version?name={name}&ref=production", "/version?name={name}&ref=1",
         "/audit", "/audit?model={name}&action=promote", "/incidents",
         "/serving?name={name}&since=1h")


def _client(yard: Any) -> Any:
    from fastapi.testclient import TestClient

    from modelyard.ui.app import create_app

    return TestClient(create_app(yard.settings))


def _text(page: str) -> str:
    """A page's visible text, tags dropped and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _points(page: str) -> list[tuple[str, str]]:
    return re.findall(r'class="point"[^>]*data-x="([^"]*)" data-y="([^"]*)"', page)


@pytest.fixture
def backed_up(make_yard: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A yard with a backup store (a folder; the UI's own process finds it the same way)."""
    monkeypatch.setenv("MODELYARD_BACKUP", str(tmp_path / "backup"))
    return make_yard()


def test_every_page_shows_what_was_recorded(backed_up: Any, name: str,
                                            trained: dict[str, Any], backend: str) -> None:
    yard = backed_up
    project = build(yard, name, trained, foreign=backend == "embedded")
    client = _client(yard)
    semvers = sorted(project.versions)  # 1.0.0, 1.0.1 or 1.1.0, ...
    first, prod, staging = project.versions[semvers[0]], project.production, project.staging

    overview = client.get("/")
    assert overview.status_code == 200
    row = overview.text.split(f'data-model="{name}"')[1].split("</tr>")[0]
    assert f"v{prod}" in row and f"v{staging}" in row  # the holders, by semver
    assert "healthy" not in row and ">ok<" in row  # the lean checks all pass
    assert "model-corruption passed" in row
    assert f"{project.requests} requests" in row  # served in the last hour
    assert f"#/models/{name}" in row  # MLflow's model page
    # the chain as last verified is never shown as a fresh verdict (only /audit checks now)
    assert "as of the last check" in _text(row) and "checked now" not in row

    model = client.get(f"/model?name={name}")
    assert model.status_code == 200
    text = _text(model.text)
    for semver, number in project.versions.items():
        assert f"v{semver}" in text
        assert f"#/models/{name}/versions/{number}" in model.text
    points = _points(model.text)
    assert len(points) == 2 * len(project.versions)  # accuracy and roc_auc, per version
    assert (f"v{semvers[-1]}", "0.86") in points or (f"v{staging}", "0.86") in points
    assert 'class="marked"' in model.text  # the production holder's rule
    timeline = model.text.split('id="timeline"')[1]
    assert timeline.count(">promote<") == 3 and "more trees" in timeline
    card = _text(model.text.split('id="chain-checked"')[1].split("</div>")[0])
    assert "as of the last check" in card and "verify now" in card

    compared = client.get(f"/model?name={name}&a=v{semvers[0]}&b=production")
    table = compared.text.split('id="compare"')[1].split("</table>")[0]
    assert "metrics.accuracy" in compared.text and "params.n_estimators" in compared.text
    assert "0.81" in table and "0.84" in table

    version = client.get(f"/version?name={name}&ref=production")
    assert version.status_code == 200
    text = _text(version.text)
    assert f"v{prod}" in text and "MLMODEL" in text.upper()  # the manifest's files
    assert project.snapshot in text and "backed up 20" in text
    tagged = client.get(f"/version?name={name}&ref={first}")
    assert XSS_TAG in _text(tagged.text) and XSS_TAG not in tagged.text  # a tag is text
    assert f"#/models/{name}/versions/{project.versions[prod]}" in version.text
    assert re.search(r"#/experiments/[^/\"]+/runs/[0-9a-f]{32}", version.text)
    assert "n_estimators" in text and "more trees" in text

    audit = client.get(f"/audit?model={name}")
    chain = audit.text.split('id="chains"')[1].split("</table>")[0]
    assert "verified" in chain and "checked now" in _text(chain)
    assert "as of the last check" not in chain
    events = _text(audit.text.split('id="events"')[1])
    assert "promote" in events and "alice" in events and "register" in events
    filtered = client.get(f"/audit?model={name}&action=register")
    assert _text(filtered.text.split('id="events"')[1]).count("register") >= 3
    assert "promote" not in _text(filtered.text.split('id="events"')[1].split("</table>")[0])

    incidents = client.get("/incidents")
    assert incidents.status_code == 200
    text = _text(incidents.text)
    assert "model-corruption" in text and "1.25" in text and "vault" in text
    assert _points(incidents.text)  # the MTTR chart
    rows = [_text(r) for r in incidents.text.split('id="checks"')[1].split("</table>")[0]
            .split("<tr>") if f"<td>{name}</td>" in r]
    assert any("audit chain" in r and "as of the last check" in r for r in rows), rows
    assert any("audited holders" in r and "checked now" in r for r in rows), rows

    serving = client.get(f"/serving?name={name}&since=1h")
    assert serving.status_code == 200
    served = _text(serving.text.split('id="served"')[1].split("</table>")[0])
    assert f"v{prod}" in served and f"v{staging}" in served
    arms = _text(serving.text.split('id="arms"')[1].split("</table>")[0])
    assert "production" in arms and "staging" in arms
    assert "Recommendation" in serving.text
    assert _points(serving.text)

    if backend == "embedded":  # a model MLflow's client registered under an HTML name
        overview = client.get("/")
        assert XSS not in overview.text and html.escape(XSS) in overview.text
        refused = client.get("/model", params={"name": f"{XSS}-{name[-6:]}"})
        assert refused.status_code == 400 and XSS not in refused.text
        assert "invalid model name" in refused.text
        _no_mlflow_in_the_ui_process(name, Path.cwd())


def _no_mlflow_in_the_ui_process(name: str, project: Path) -> None:
    """A fresh process renders every page; mlflow, boto3 or sklearn never load."""
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from modelyard.core.config import load_settings\n"
        "from modelyard.ui.app import create_app\n"
        "client = TestClient(create_app(load_settings()))\n"
        f"for page in {[p.format(name=name) for p in PAGES]!r}:\n"
        "    answer = client.get(page)\n"
        "    assert answer.status_code == 200, (page, answer.status_code, answer.text[-300:])\n"
        "print(sorted(m for m in ('mlflow', 'sklearn') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- bad input -------------------------------------------------------------------------------
@pytest.fixture
def small(backed_up: Any, name: str, trained: dict[str, Any]) -> tuple[Any, UiProject]:
    yard = backed_up
    return yard, build(yard, name, trained, traffic=0, foreign=False)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_bad_input_gets_a_clean_page(small: tuple[Any, UiProject]) -> None:
    yard, project = small
    client = _client(yard)
    name = project.name
    for url, status, says in [
        ("/model?name=nope", 404, "nope"),
        (f"/version?name={name}&ref=v9.9.9", 404, "9.9.9"),
        (f"/version?name={name}&ref=%3Cb%3Ebad", 400, "&lt;b&gt;bad"),
        ("/model", 400, "missing ?name="),
        ("/audit?page=99999999999999", 400, "page must be"),
        ("/audit?page=4000", 404, "no page 4000"),
        ("/audit?page=-1", 400, "page must be"),
        (f"/model?name={name}&below=x", 400, "below must be"),
        (f"/serving?name={name}&since=forever", 400, "since"),
        ("/no-such-page", 404, "no such page"),
        (f"/model?name={XSS}", 400, html.escape(XSS)),
        (f"/version?name={name}&ref={XSS}", 400, html.escape(XSS)),
    ]:
        answer = client.get(url)
        assert (answer.status_code, answer.headers["content-type"].split(";")[0]) == (
            status, "text/html"), url
        assert says in answer.text, (url, answer.text[-400:])
        assert "Traceback" not in answer.text and XSS not in answer.text


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@hsettings(max_examples=30, deadline=None, database=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=st.text(min_size=1, max_size=40), page=st.text(max_size=12),
       name=st.text(min_size=1, max_size=30))
def test_any_ref_page_or_name_is_a_page_never_a_failure(
        small: tuple[Any, UiProject], ref: str, page: str, name: str) -> None:
    yard, project = small
    client = _client(yard)
    for path, params in [("/version", {"name": project.name, "ref": ref}),
                         ("/audit", {"page": page}),
                         ("/model", {"name": project.name, "page": page}),
                         ("/model", {"name": name}),
                         ("/serving", {"name": name, "since": ref})]:
        answer = client.get(path, params=params)
        assert answer.status_code in (200, 400, 404), (path, params, answer.status_code)
        assert "Traceback" not in answer.text


# -- the command -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_ui_command_prints_its_address_and_refuses_a_bad_link(backend: str) -> None:
    shown = run_cli("ui", "--port", "8123", "--print")
    assert (shown.returncode, shown.stdout.strip()) == (0, "http://127.0.0.1:8123")
    bad = run_cli("ui", "--mlflow-ui", "javascript:alert(1)")
    assert bad.returncode == 2 and "--mlflow-ui must be an http(s):// address" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_an_edited_trail_is_broken_now_on_audit_and_cached_elsewhere(
        small: tuple[Any, UiProject]) -> None:
    """The Audit page re-reads every event: an edited one is "broken", checked now. The
    model page shows the copy verified earlier and says so (as of the last check), with a
    link to check it now: a cached verdict never reads as a fresh one."""
    from modelyard.trail.audit import event_key

    yard, project = small
    client = _client(yard)
    assert client.get(f"/model?name={project.name}").status_code == 200  # copy kept
    store = yard.vault.store
    event = json.loads(store.get_bytes(event_key(project.name, 2)))
    event["reason"] = "nobody will notice"
    store.put_bytes(event_key(project.name, 2), json.dumps(event).encode())
    audit = client.get(f"/audit?model={project.name}")
    chain = _text(audit.text.split('id="chains"')[1].split("</table>")[0])
    assert "broken" in chain and "event 2 was modified" in chain and "checked now" in chain
    model = client.get(f"/model?name={project.name}")
    card = _text(model.text.split('id="chain-checked"')[1].split("</div>")[0])
    assert "as of the last check" in card and "verify now" in card
    assert f'href="/audit?model={project.name}"' in model.text


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_move_made_around_modelyard_is_red_with_its_undo(
        small: tuple[Any, UiProject]) -> None:
    from mlflow.tracking import MlflowClient

    yard, project = small
    first = min(project.versions.values())
    MlflowClient(yard.settings.resolved_tracking_uri).set_registered_model_alias(
        project.name, "production", str(first))  # what the MLflow UI lets anyone do
    client = _client(yard)
    overview = client.get("/")
    row = overview.text.split(f'data-model="{project.name}"')[1].split("</tr>")[0]
    assert 'class="unaudited"' in overview.text.split(f'data-model="{project.name}"')[0][-40:]
    assert "unaudited move" in row and "critical" in row and "checked now" in _text(row)
    audit = client.get(f"/audit?model={project.name}")
    moved = audit.text.split('id="unaudited"')[1].split("</table>")[0]
    assert 'class="unaudited"' in moved and f"modelyard recover {project.name}" in moved
    assert "production" in moved
