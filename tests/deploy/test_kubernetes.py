"""deploy/kubernetes, offline: every object valid for Kubernetes (kubernetes-validate, strict),
every kustomization rendered, every command a container runs one the CLI accepts, and the
pieces that refer to each other (probes, ports, selectors, ConfigMaps, Secrets) in step."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import pytest

from tests.deploy import files

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The oldest Kubernetes the manifests are meant for (autoscaling/v2, batch/v1 CronJob and
# seccompProfile are all older) and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29.0", "latest")
# Kinds of operators the manifests use; kubernetes-validate has no schema for them, so their
# pod specs are validated as Pods and their references checked below.
CUSTOM_KINDS = {"ServiceMonitor", "InferenceService"}
RENDERED = {folder.relative_to(files.KUBERNETES).as_posix(): files.render(folder)
            for folder in files.KUSTOMIZATIONS}


def _validate(obj: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(obj, version, strict=True)


def _as_pod(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A KServe predictor is a pod spec plus KServe's own fields: the pod part, as a Pod."""
    kserve_only = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
                   "containerConcurrency", "timeout", "canaryTrafficPercent", "logger",
                   "batcher", "model"}
    spec = {k: v for k, v in pod_spec.items() if k not in kserve_only}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": spec}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", files.manifest_files(),
                         ids=lambda p: p.relative_to(files.KUBERNETES).as_posix())
def test_every_manifest_file_is_valid_kubernetes(path: Path, version: str) -> None:
    for obj in files.documents(path):
        if obj["kind"] in CUSTOM_KINDS:
            for _name, pod in files.pod_specs(obj):
                _validate(_as_pod(pod), version)
        else:
            _validate(obj, version)


@pytest.mark.parametrize("folder", sorted(RENDERED))
def test_every_kustomization_renders_to_valid_kubernetes(folder: str) -> None:
    objects = RENDERED[folder]
    assert objects
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), f"{folder}: an object twice: {keys}"
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            for _name, pod in files.pod_specs(obj):
                _validate(_as_pod(pod), "latest")
        else:
            _validate(obj, "latest")


def test_the_overlays_do_what_they_say() -> None:
    production = {(o["kind"], o["metadata"]["name"]): o for o in RENDERED["overlays/production"]}
    serve = production[("Deployment", "modelyard-serve")]
    [container] = serve["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["serve", "churn@production"]
    assert container["image"] == "registry.example.com/ml/modelyard:" + files.version()
    assert production[("HorizontalPodAutoscaler", "modelyard-serve")]["spec"]["minReplicas"] == 3
    assert {o["metadata"].get("namespace") for k, o in production.items()
            if k[0] != "Namespace"} == {"modelyard"}
    kserve = {(o["kind"], o["metadata"]["name"]) for o in RENDERED["overlays/kserve"]}
    assert ("InferenceService", "modelyard-churn") in kserve
    assert not {k for k in kserve if k[1] == "modelyard-serve"}, kserve  # KServe serves instead
    for kind in ("CronJob", "Deployment"):  # the rest of the base stays
        assert {k for k in kserve if k[0] == kind}


# -- the commands the containers run -------------------------------------------------------
def _runs() -> list[files.Run]:
    entrypoint = ["modelyard"]  # deploy/Containerfile's ENTRYPOINT (test_image_and_compose)
    image = files.image().rpartition(":")[0]
    runs: list[files.Run] = []
    for path in files.manifest_files():
        for obj in files.documents(path):
            for name, pod in files.pod_specs(obj):
                for container in pod["containers"]:
                    if container["image"].rpartition(":")[0] != image:
                        continue
                    where = f"{path.relative_to(files.KUBERNETES).as_posix()}:{name}"
                    argv = files.container_argv(entrypoint, container.get("command"),
                                                container.get("args"))
                    runs += files.modelyard_runs(where, argv)
    return runs


RUNS = _runs()


def check_command(argv: tuple[str, ...]) -> None:
    """Parse ARGV with the real click app, as the CLI would, without running the command: an
    unknown command or option, a bad choice or a missing argument raises click's error."""
    group: click.Group
    if argv[0] == "mlflow":
        from mlflow.cli import cli as group  # the tracking server's own CLI
    else:
        from modelyard.cli import main as group
    command: click.Command = group
    context = click.Context(group, info_name=argv[0])
    rest = list(argv[1:])
    while isinstance(command, click.Group):
        assert rest, f"{' '.join(argv)}: names no subcommand"
        sub = command.get_command(context, rest[0])
        if sub is None:
            raise click.UsageError(f"no such command {rest[0]!r}", context)
        context = click.Context(sub, info_name=rest[0], parent=context)
        command, rest = sub, rest[1:]
    command.make_context(context.info_name, rest, parent=context.parent)


def test_the_manifests_run_the_commands_the_issue_names() -> None:
    commands = {run.argv[:4] for run in RUNS}
    assert ("modelyard", "health", "--notify") in {c[:3] for c in commands}
    assert ("modelyard", "drill", "run", "--all") in commands
    assert ("modelyard", "backup", "--all") in {c[:3] for c in commands}
    assert ("modelyard", "health", "--prometheus") in {c[:3] for c in commands}
    assert {c[:2] for c in commands} >= {("modelyard", "serve"), ("modelyard", "ui")}


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.id)
def test_every_container_command_is_one_the_cli_accepts(run: files.Run) -> None:
    check_command(run.argv)


@pytest.mark.parametrize("argv", [
    ("modelyard", "health", "--notfy"),
    ("modelyard", "drill", "sprint", "--all"),
    ("modelyard", "serve", "churn", "--port", "eighty"),
    ("modelyard", "serve"),
    ("modelyard", "serve", "churn", "--log-level", "loud"),
    ("modelyard", "backupp", "--all"),
])
def test_the_command_check_refuses_what_the_cli_refuses(argv: tuple[str, ...]) -> None:
    with pytest.raises(click.UsageError):
        check_command(argv)


# -- references between the pieces --------------------------------------------------------
def test_probes_ports_and_selectors_meet() -> None:
    base = {(o["kind"], o["metadata"]["name"]): o for o in RENDERED["base"]}
    for (kind, name), obj in base.items():
        if kind == "Service":
            [(_, pod)] = [(n, p) for k, o in base.items() for n, p in files.pod_specs(o)
                          if k[0] == "Deployment" and _selects(obj["spec"]["selector"], o)]
            ports = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= ports, name
        if kind == "ServiceMonitor":
            services = [o for k, o in base.items() if k[0] == "Service"
                        and _labels_match(obj["spec"]["selector"]["matchLabels"],
                                          o["metadata"]["labels"])]
            assert len(services) == 1, name
            service_ports = {p["name"] for p in services[0]["spec"]["ports"]}
            assert {e["port"] for e in obj["spec"]["endpoints"]} <= service_ports
            for endpoint in obj["spec"]["endpoints"]:
                credentials = endpoint.get("authorization", {}).get("credentials")
                if credentials:
                    secret = base[("Secret", credentials["name"])]
                    assert credentials["key"] in secret["stringData"]
    serve = base[("Deployment", "modelyard-serve")]["spec"]["template"]["spec"]
    [container] = serve["containers"]
    port = int(container["args"][container["args"].index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert "/ready" in container["readinessProbe"]["exec"]["command"][-1]
    assert f"127.0.0.1:{port}/ready" in container["readinessProbe"]["exec"]["command"][-1]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    compile(container["readinessProbe"]["exec"]["command"][-1], "readiness probe", "exec")
    assert container["resources"]["requests"]
    hpa = base[("HorizontalPodAutoscaler", "modelyard-serve")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "modelyard-serve"


def _labels_match(wanted: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def _selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    return _labels_match(selector, deployment["spec"]["template"]["metadata"]["labels"])


def test_every_configmap_and_secret_a_pod_names_exists() -> None:
    for folder, objects in RENDERED.items():
        if folder == "kserve":
            continue  # the predictor alone: it reads the base's, as its kustomization says
        names = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        for obj in objects:
            for _name, pod in files.pod_specs(obj):
                for volume in pod.get("volumes", []):
                    if "configMap" in volume:
                        assert ("ConfigMap", volume["configMap"]["name"]) in names
                    if "secret" in volume:
                        secret = names[("Secret", volume["secret"]["secretName"])]
                        for item in volume["secret"].get("items", []):
                            assert item["key"] in secret["stringData"]
                for container in pod["containers"]:
                    for source in container.get("envFrom", []):
                        ref = source.get("configMapRef") or source["secretRef"]
                        kind = "ConfigMap" if "configMapRef" in source else "Secret"
                        assert (kind, ref["name"]) in names, (folder, ref)


def test_the_secrets_are_templates_and_the_settings_load() -> None:
    """No real credential is committed, and modelyard accepts the settings as written."""
    from modelyard.core.config import load_settings

    for obj in files.documents(files.KUBERNETES / "base" / "secret.yaml"):
        assert all("CHANGE-ME" in value for value in obj["stringData"].values()), obj
    toml = files.KUBERNETES / "base" / "modelyard.toml"
    tomllib.loads(toml.read_text())
    [env] = [o for o in files.documents(files.KUBERNETES / "base" / "configmap.yaml")
             if o["metadata"]["name"] == "modelyard-env"]
    environ = {**env["data"], "MODELYARD_CONFIG": str(toml)}
    settings = load_settings(environ=environ, cwd=toml.parent)
    assert settings.vault == env["data"]["MODELYARD_VAULT"]
    assert settings.resolved_tracking_uri == env["data"]["MLFLOW_TRACKING_URI"]
