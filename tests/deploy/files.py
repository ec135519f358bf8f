"""Reading the deployment files (deploy/) for the offline tests: YAML documents, the kustomize
subset the manifests use, rendered, and the modelyard commands every container runs.

The renderer knows only what deploy/kubernetes uses (resources, namespace, labels, images,
configMapGenerator files, JSON 6902 patches and ``$patch: delete``) and refuses anything else,
so a kustomization that grows a feature fails here instead of being rendered wrong.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
KUSTOMIZATIONS = sorted(p.parent for p in KUBERNETES.rglob("kustomization.yaml"))
# Kinds a namespace does not apply to (kustomize leaves them alone).
_CLUSTER_KINDS = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
_KNOWN_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images",
               "configMapGenerator", "patches"}


def version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match
    return match[1]


def image() -> str:
    """The image `make image` tags (the Makefile's IMAGE default, with its version)."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^IMAGE \?= (\S+)$", makefile, re.M)
    assert match, "Makefile has no IMAGE default"
    return match[1].replace("$(VERSION)", version())


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_files() -> list[Path]:
    """Every Kubernetes object file (the kustomizations themselves aside)."""
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")


# -- kustomize, the subset deploy/kubernetes uses ------------------------------------------
def render(folder: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build FOLDER`` gives for the features listed above."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - _KNOWN_KEYS
    assert not unknown, f"{folder}: kustomize features this renderer does not know: {unknown}"
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        objects += render(path) if path.is_dir() else documents(path)
    for generator in spec.get("configMapGenerator", []):
        assert set(generator) <= {"name", "files", "options"}, generator
        options = generator.get("options", {})
        assert options.get("disableNameSuffixHash") is True, "hash suffixes are not rendered"
        objects.append({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": generator["name"], "labels": dict(options.get("labels", {}))},
            "data": {Path(f).name: (folder / f).read_text() for f in generator["files"]},
        })
    for patch in spec.get("patches", []):
        objects = _patch(objects, patch)
    for label in spec.get("labels", []):
        assert set(label) == {"pairs"}, "only plain label pairs (no selectors) are rendered"
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for wanted in spec.get("images", []):
        for obj in objects:
            for holder in _image_holders(obj):
                name, _, tag = holder["image"].rpartition(":")
                if name == wanted["name"]:
                    holder["image"] = (f"{wanted.get('newName', name)}:"
                                       f"{wanted.get('newTag', tag)}")
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_KINDS:
                obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _patch(objects: list[dict[str, Any]], patch: dict[str, Any]) -> list[dict[str, Any]]:
    target = patch["target"]
    assert set(target) <= {"kind", "name"}, target

    def hit(obj: dict[str, Any]) -> bool:
        return (obj["kind"] == target.get("kind", obj["kind"])
                and obj["metadata"]["name"] == target.get("name", obj["metadata"]["name"]))

    matched = [obj for obj in objects if hit(obj)]
    assert matched, f"patch target {target} is not among the resources"
    body = yaml.safe_load(patch["patch"])
    if isinstance(body, dict):
        assert body.get("$patch") == "delete", "only `$patch: delete` strategic patches"
        return [obj for obj in objects if not hit(obj)]
    out = []
    for obj in objects:
        if hit(obj):
            obj = copy.deepcopy(obj)
            for op in body:
                _json_patch(obj, op)
        out.append(obj)
    return out


def _json_patch(obj: dict[str, Any], op: dict[str, Any]) -> None:
    assert op["op"] in ("replace", "add"), f"JSON patch op {op['op']} is not rendered"
    *parents, last = [part.replace("~1", "/").replace("~0", "~")
                      for part in op["path"].lstrip("/").split("/")]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op["op"] == "replace":
            assert index < len(node), f"{op['path']} is not in the object"
            node[index] = op["value"]
        else:
            node.insert(index, op["value"])
    else:
        assert op["op"] == "add" or last in node, f"{op['path']} is not in the object"
        node[last] = op["value"]


def _image_holders(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("image"), str):
            yield node
        for value in node.values():
            yield from _image_holders(value)
    elif isinstance(node, list):
        for value in node:
            yield from _image_holders(value)


# -- what the containers run ---------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One command a container runs: where it is written, and its argv."""

    where: str
    argv: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.where}:{' '.join(self.argv[:3])}"


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every pod an object makes: Deployments, CronJobs, KServe predictors."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    spec = obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield name, spec["template"]["spec"]
    elif kind == "CronJob":
        yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "InferenceService":
        yield name, spec["predictor"]


def container_argv(entrypoint: list[str], command: list[str] | None,
                   args: list[str] | None) -> list[str]:
    """What a container runs: command replaces the image's entrypoint, args follow it."""
    return [*(command if command is not None else entrypoint), *(args or [])]


_SHELL_OPERATORS = {";", "&&", "||", "|", "&", ";;", "(", ")"}


def modelyard_runs(where: str, argv: list[str]) -> list[Run]:
    """The modelyard (and mlflow) command lines in a container's argv, shell scripts included."""
    if not argv:
        return []
    if argv[0] in ("/bin/sh", "sh", "/bin/bash", "bash") and "-c" in argv:
        script = argv[argv.index("-c") + 1]
        lexer = shlex.shlex(script.replace("$$", "$"), posix=True, punctuation_chars=True)
        words = list(lexer)
        runs = []
        for i, word in enumerate(words):
            if word in ("modelyard", "mlflow"):
                tail = []
                for token in words[i + 1:]:
                    if token in _SHELL_OPERATORS:
                        break
                    tail.append(token)
                runs.append(Run(where, (word, *tail)))
        assert runs, f"{where}: a shell script that runs neither modelyard nor mlflow: {script}"
        return runs
    head = Path(argv[0]).name
    assert head in ("modelyard", "mlflow"), f"{where}: runs {argv[0]}, not modelyard"
    return [Run(where, ("modelyard" if head == "modelyard" else "mlflow", *argv[1:]))]
