"""deploy/compose.yaml against the Compose Specification's JSON schema (vendored in
tests/deploy/schemas/), and in step with the image and the Kubernetes manifests: one image
name, one set of environment names, one modelyard.toml, commands the CLI accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import files
from tests.deploy.test_kubernetes import check_command

SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
CONTAINERFILE = files.DEPLOY / "Containerfile"
COMPOSE: dict[str, Any] = yaml.safe_load(files.COMPOSE.read_text())
IMAGE_DEFAULT = re.compile(r"^\$\{MODELYARD_IMAGE:-(?P<image>[^}]+)\}$")


def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_compose_file_follows_the_compose_specification() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _validator().iter_errors(COMPOSE)]
    assert not errors, errors


@pytest.mark.parametrize("mistake", [
    {"services": {"serve": {"image": "x", "replicas": 2}}},  # replicas belong under deploy
    {"services": {"serve": {"image": "x", "entrypoints": ["modelyard"]}}},
    {"services": {"serve": {"image": "x", "depends_on": {"db": {"condition": "soon"}}}}},
    {"services": {"serve": {"image": "x", "healthcheck": {"interval": 5}}}},
])
def test_the_schema_refuses_what_compose_refuses(mistake: dict[str, Any]) -> None:
    assert list(_validator().iter_errors(mistake))


def _modelyard_services() -> dict[str, dict[str, Any]]:
    image = files.image()
    out = {}
    for name, service in COMPOSE["services"].items():
        match = IMAGE_DEFAULT.match(str(service.get("image", "")))
        if match:
            assert match["image"] == image, f"{name}: {match['image']} is not {image}"
            out[name] = service
    return out


def test_one_image_everywhere() -> None:
    """The image `make image` tags is the one compose, every manifest and KServe run."""
    image = files.image()
    services = _modelyard_services()
    assert {"serve", "ui", "mlflow", "health"} <= set(services)
    assert services["serve"]["build"]["dockerfile"] == "deploy/Containerfile"
    assert (files.DEPLOY / services["serve"]["build"]["context"] / "deploy"
            / "Containerfile").is_file()
    assert services["serve"]["deploy"]["replicas"] == 2
    assert services["mlflow"]["deploy"]["replicas"] == 2
    seen = set()
    for path in files.manifest_files():
        for obj in files.documents(path):
            for _name, pod in files.pod_specs(obj):
                for container in pod["containers"]:
                    if "modelyard" in container["image"]:
                        seen.add(container["image"])
    assert seen == {image}
    base = yaml.safe_load((files.KUBERNETES / "base" / "kustomization.yaml").read_text())
    [entry] = base["images"]
    assert f"{entry['name']}:{entry['newTag']}" == image


def test_the_image_runs_modelyard_as_a_user_with_a_ready_check() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["modelyard"\]$', text, re.M)
    user = re.search(r"^USER (\S+)$", text, re.M)
    assert user and not user[1].startswith(("0", "root"))
    joined = text.replace("\\\n", " ")  # continuation lines made one
    healthcheck = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", joined, re.M)
    assert healthcheck and "/ready" in healthcheck[1] and "MODELYARD_SERVE_TOKEN" in healthcheck[1]
    argv = json.loads(healthcheck[1])
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")
    serve_check = COMPOSE["services"]["serve"]["healthcheck"]["test"]
    assert serve_check[1:] == argv  # compose asks as the image does
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert "constraints.txt" in text and "[${EXTRAS}]" in text
    # The build context lets in the install's files only: no .env, key, venv or .modelyard/.
    rules = [line for line in (files.ROOT / ".containerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {r[1:] for r in rules if r.startswith("!")} == {
        "src", "pyproject.toml", "constraints.txt"}
    copied = set(re.findall(r"^COPY (.+) \S+$", text, re.M))
    assert copied == {"pyproject.toml constraints.txt", "src"}


def _compose_env() -> dict[str, Any]:
    return dict(COMPOSE["x-modelyard-env"])


def test_the_same_environment_names_as_the_manifests() -> None:
    configmap = [o for o in files.documents(files.KUBERNETES / "base" / "configmap.yaml")
                 if o["metadata"]["name"] == "modelyard-env"]
    [secret] = [o for o in files.documents(files.KUBERNETES / "base" / "secret.yaml")
                if o["metadata"]["name"] == "modelyard-credentials"]
    kubernetes = set(configmap[0]["data"]) | set(secret["stringData"])
    assert set(_compose_env()) == kubernetes
    for name in secret["stringData"]:  # credentials come from deploy/.env, never the file
        assert str(_compose_env()[name]).startswith("${"), name
    for name, service in _modelyard_services().items():
        if name.startswith("mlflow"):
            continue  # the tracking server itself: its own settings
        assert service["environment"] == _compose_env(), name
        [config] = service["configs"]
        assert config["target"] == _compose_env()["MODELYARD_CONFIG"]
    source = COMPOSE["configs"]["modelyard-toml"]["file"]
    assert (files.DEPLOY / source).resolve() == files.KUBERNETES / "base" / "modelyard.toml"
    example = (files.DEPLOY / ".env.example").read_text()
    for variable in sorted(set(re.findall(r"\$\{(\w+)", files.COMPOSE.read_text()))):
        assert re.search(rf"^{variable}=", example, re.M), f"{variable} not in .env.example"


def test_every_compose_command_is_one_the_cli_accepts() -> None:
    from modelyard.cli import main

    checked = 0
    for name, service in _modelyard_services().items():
        # Compose: entrypoint replaces the image's ENTRYPOINT, command follows it (as args do).
        argv = files.container_argv(service.get("entrypoint", ["modelyard"]), None,
                                    service.get("command"))
        for run in files.modelyard_runs(name, argv):
            argv_ = tuple(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", a) for a in run.argv)
            if argv_[:2] == ("modelyard", "ui") and "ui" not in main.commands:
                continue  # `modelyard ui` (issue #26) is not in this tree yet
            check_command(argv_)
            checked += 1
    assert checked >= 4


def test_prometheus_scrapes_what_compose_runs() -> None:
    config = yaml.safe_load((files.DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    serve = jobs["modelyard-serve"]
    [sd] = serve["dns_sd_configs"]
    assert sd["names"] == ["serve"] and sd["port"] == 8080
    assert "--port" in COMPOSE["services"]["serve"]["command"]
    command = COMPOSE["services"]["serve"]["command"]
    assert command[command.index("--port") + 1] == "8080"
    token = serve["authorization"]["credentials_file"]
    assert token == "/run/secrets/serve-token"
    assert "serve-token" in COMPOSE["services"]["prometheus"]["secrets"]
    assert COMPOSE["secrets"]["serve-token"]["environment"] == "MODELYARD_SERVE_TOKEN"
    [target] = jobs["modelyard-health"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in COMPOSE["services"]
    assert f"--web.listen-address=:{port}" in COMPOSE["services"][host]["command"]
    mounts = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    mounts = {m.split(":")[0]: m.split(":")[1] for m in COMPOSE["services"]["grafana"]["volumes"]
              if m.startswith("./")}
    for source in mounts:
        assert (files.DEPLOY / source).exists(), source
    provider = yaml.safe_load((files.DEPLOY / "grafana" / "provisioning" / "dashboards"
                               / "modelyard.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/modelyard.json"] == f"{folder}/modelyard.json"
    datasource = yaml.safe_load((files.DEPLOY / "grafana" / "provisioning" / "datasources"
                                 / "prometheus.yaml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
