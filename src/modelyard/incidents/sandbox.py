"""The drill sandbox: a throwaway embedded home with a generated DVC project.

A temporary embedded home (SQLite registry, artifact folder, vault, backup folder, DVC cache
and remote) holding ``modelyard init``'s pipeline at ``SANDBOX_ROWS`` rows and, when a drill
names a real model, a copy of that model's versions (export -> import). Data and pipeline
scenarios run on the generated project; model, registry, storage and promotion scenarios on
the imported copy when there is one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import UserError
from modelyard.incidents.recovery import Baseline
from modelyard.incidents.scenarios import SANDBOX_ROWS, SANDBOX_TREES, Scenario
from modelyard.project.dvc import run_dvc, set_param

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.incidents.ports import DrillRegistry, RegistryFactory


def _only(kept: dict[str, str], cache: Path) -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), kept.get("PATH", "")])
    return {**kept, "PATH": path, "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1",
            "MODELYARD_CACHE_DIR": str(cache), "MODELYARD_USER": "drill"}


class Sandbox:
    """A throwaway embedded home with a generated DVC project, built on first use."""

    def __init__(self, factory: RegistryFactory, cache: Path,
                 source: DrillRegistry | None = None, model: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modelyard-drill-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self.project = self.root / "project"
        self.factory = factory
        self.cache = cache
        self.env = _only({k: v for k, v in os.environ.items()
                          if not k.startswith(("MLFLOW_", "MODELYARD_", "AWS_"))}, cache)
        self.source = source
        self.real_model = model
        self.pipeline_model = "drill-churn"
        self._yard: DrillRegistry | None = None
        self._generated = False
        self._imported = False
        self.broken = False

    def close(self) -> None:
        self._finalizer()
        shutil.rmtree(self._pristine, ignore_errors=True)

    # -- one starting state for every drill of a run ----------------------------------------
    # ``drill run --all`` runs each scenario from the same state: the sandbox, once built, is
    # copied aside, and put back before each next scenario. It is put back in place, file by
    # file (same paths, same files rewritten), because MLflow keeps the SQLite database open
    # and its artifact locations are absolute paths.
    @property
    def _pristine(self) -> Path:
        return self.root.with_name(self.root.name + ".pristine")

    def freeze(self, models: list[str]) -> None:
        """Build what ``models``' scenarios need, then keep a copy of the whole sandbox."""
        for model in models:
            self.generated() if model == self.pipeline_model else self.imported()
        if self._pristine.exists():
            shutil.rmtree(self._pristine)
        shutil.copytree(self.root, self._pristine, symlinks=True)
        weakref.finalize(self, shutil.rmtree, str(self._pristine), True)

    def reset(self) -> None:
        """Put the sandbox back as ``freeze`` left it (whatever the last drill broke)."""
        if not self._pristine.is_dir():
            return
        for path in sorted(self.root.rglob("*"), reverse=True):  # what the drill added
            twin = self._pristine / path.relative_to(self.root)
            if path.is_symlink() or path.is_file():
                if not (twin.is_file() and not twin.is_symlink()):
                    path.unlink()
            elif path.is_dir() and not twin.is_dir():
                shutil.rmtree(path)
        for twin in sorted(self._pristine.rglob("*")):
            path = self.root / twin.relative_to(self._pristine)
            if twin.is_dir() and not twin.is_symlink():
                path.mkdir(parents=True, exist_ok=True)
            elif path.is_file() and not path.is_symlink() and path.stat().st_size == \
                    twin.stat().st_size and path.read_bytes() == twin.read_bytes():
                continue
            elif twin.is_symlink():
                path.symlink_to(os.readlink(twin))
            else:
                with twin.open("rb") as source, path.open("wb") as target:  # same file
                    shutil.copyfileobj(source, target)
        self.broken = False

    # -- building -------------------------------------------------------------------------
    @property
    def yard(self) -> DrillRegistry:
        if self._yard is None:
            self._init_project()
            from modelyard.core.config import load_settings

            # The real registry's trusted keys: a signed version it copies in still verifies.
            keys = ({"trusted_keys": self.source.settings.trusted_keys,
                     "retired_keys": self.source.settings.retired_keys}
                    if self.source is not None else {})
            settings = load_settings({"cache_dir": str(self.cache), **keys}, cwd=self.project,
                                     environ={k: v for k, v in self.env.items()
                                              if not k.startswith("MODELYARD_")})
            self._yard = self.factory(settings)
        return self._yard

    def _init_project(self) -> None:
        """The sandbox's home: an empty registry and the template's policy. The DVC project
        around it is made only when a drill needs the generated pipeline."""
        from modelyard.project.scaffold import template_root

        self.project.mkdir(parents=True)
        _empty_registry(self.cache, self.project / ".modelyard" / "mlflow.db")
        self._write_toml((template_root() / "modelyard.toml").read_text())

    def _write_toml(self, text: str) -> None:
        (self.project / "modelyard.toml").write_text(
            f'backup = "{self.root / "backup"}"\n' + text)

    def _init_pipeline(self) -> None:
        from modelyard.project import git
        from modelyard.project.scaffold import init_project

        toml = (self.project / "modelyard.toml").read_text()
        git.init_repository(self.project)
        init_project(self.project, name=self.pipeline_model, force=True)
        (self.project / "modelyard.toml").write_text(toml)
        params = self.project / "params.yaml"
        set_param(params, "prepare", "n_rows", str(SANDBOX_ROWS))
        set_param(params, "train", "n_estimators", str(SANDBOX_TREES))
        set_param(params, "train", "cv_folds", "2")
        run_dvc(["remote", "add", "-d", "sandbox", str(self.root / "dvc-remote")],
                self.project, self.env)
        self.commit("sandbox: scaffold")

    def commit(self, message: str) -> None:
        from modelyard.project import git

        subprocess.run(["git", "add", "-A"], cwd=self.project, capture_output=True,
                       check=False, env=self.env)
        subprocess.run(["git", *git.identity_options(self.project), "commit", "-q",
                        "--allow-empty", "-m", message], cwd=self.project,
                       capture_output=True, check=False, env=self.env)

    def generated(self) -> str:
        """The generated pipeline's model, trained, pushed and in production."""
        yard = self.yard
        if not self._generated:
            self._init_pipeline()
            run_dvc(["repro"], self.project, self.env)
            self.commit("sandbox: train v1")
            run_dvc(["push", "-q"], self.project, self.env)
            info = json.loads((self.project / "model.json").read_text())
            yard.promote(self.pipeline_model, info["version"], to="production", force=True,
                         reason="drill sandbox baseline")
            self._generated = True
        return self.pipeline_model

    def imported(self) -> str:
        """The real model's versions copied in (export -> import), or the generated one."""
        if self.source is None or self.real_model is None:
            return self.generated()
        if not self._imported:
            document = self.source.export([self.real_model])
            # The sandbox copies the real registry as it is: its stage holders are the ones to
            # break and recover, whatever the sandbox's own policy would let in.
            summary = self.yard.import_registry(
                document, source_tracking_uri=self.source.tracking.tracking_uri,
                keep_stages=True)
            if not summary.created:
                raise UserError(f"no version of {self.real_model} could be copied into the "
                                "drill sandbox")
            # The sandbox mirrors the backup store too: what was copied in is backed up, as
            # the real model's promoted versions are.
            self.yard.protection.backup([(self.real_model, None)])
            self._imported = True
        return self.real_model

    def model_for(self, scenario: Scenario) -> str:
        return self.generated() if scenario.kind in ("data", "pipeline") else self.imported()

    def baseline(self, model: str) -> Baseline | None:
        loaded = self.yard.load(model, "production")
        sample = self.sample(Path(loaded.path))
        return Baseline.of(loaded.model, sample) if sample is not None else None

    def sample(self, folder: Path, rows: int = 100) -> Any:
        import pandas as pd

        test = self.project / "data" / "prepared" / "test.csv"
        example = folder / "input_example.json"
        if example.is_file():
            data = json.loads(example.read_text())
            data = data.get("dataframe_split", data) if isinstance(data, dict) else data
            if isinstance(data, dict) and "columns" in data:
                columns = list(data["columns"])
                if test.is_file():
                    frame = pd.read_csv(test, dtype={"customer_id": str})
                    if set(columns) <= set(frame.columns):
                        out = frame[columns].head(rows)
                        for column in out.columns:
                            if not pd.api.types.is_numeric_dtype(out[column]):
                                out[column] = out[column].astype(object)
                        return out
                return pd.DataFrame(data["data"], columns=columns)
        return None


def _empty_registry(cache: Path, target: Path) -> None:
    """An embedded MLflow database with its schema in place, copied from one made once per
    MLflow version (creating the schema costs seconds every time otherwise)."""
    from importlib.metadata import version

    from modelyard.backend.tracking import Tracking
    from modelyard.core.config import load_settings

    template = cache / "drills" / f"empty-mlflow-{version('mlflow')}.db"
    if not template.is_file():
        with tempfile.TemporaryDirectory(prefix="modelyard-db-") as tmp:
            settings = load_settings({"home": tmp}, environ={}, cwd=Path(tmp))
            ok, detail = Tracking(settings).health()
            if not ok:
                raise UserError(f"cannot create the sandbox registry: {detail}")
            template.parent.mkdir(parents=True, exist_ok=True)
            partial = template.with_name(f".{template.name}.{uuid.uuid4().hex[:6]}")
            shutil.copyfile(Path(tmp) / "mlflow.db", partial)
            partial.replace(template)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


