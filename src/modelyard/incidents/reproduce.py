"""``reproduce``: re-run a version's recorded commit, data and params, and compare.

The version's lineage names a git commit and its training data (DVC md5 or SHA-256). The
commit is checked out into a clean ``git worktree`` in a temporary folder (the user's checkout
is never touched), DVC shares the project's cache, data files git does not hold are copied in
from the checkout, and ``dvc repro -f`` runs the whole pipeline there. The pipeline's own
registration lands in a throwaway embedded registry (nothing is registered for real); its
newest version is then compared with the original: metrics within a tolerance, predictions on
the version's input example equal, training data equal to lineage. Every difference is named.

The result is kept in the vault (``reproduce/NAME/VERSION.json``) for ``details`` and
``health``.

>>> report = Reproducer(ctx, loader, root).run("churn", "v1.2.0")
>>> report.reproducible, report.differences
(False, ['data/prepared/train.csv: md5 3f2a... differs from lineage 9c1b...'])
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.context import Context
from modelyard.core.lineage import DataRef, Lineage
from modelyard.core.names import T_FLAVOR, T_REPRODUCED
from modelyard.errors import UserError, YardError
from modelyard.project.dvc import (
    PipelineFiles,
    clean_env,
    dvc_cache_path,
    md5_file,
    pipeline_files,
    run_dvc,
)
from modelyard.registry.loading import Loader
from modelyard.store.files import sha256_file
from modelyard.store.vault import reproduce_key

log = logging.getLogger("modelyard.reproduce")


@dataclass
class ReproduceReport:
    name: str
    version: int
    semver: str | None
    commit: str
    reproducible: bool
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    # What the lineage says makes a re-run unlike the training, named before any metric is
    # compared: a dirty tree, uncommitted parameters, DVC data that cannot be had.
    causes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = 1e-6
    seconds: float = 0.0
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_result(ctx: Context, name: str, version: int) -> dict[str, Any] | None:
    try:
        return dict(json.loads(ctx.vault.store.get_bytes(reproduce_key(name, version))))
    except (YardError, ValueError):
        return None


# A cache path DVC's config file holds unquoted, as `dvc cache dir --local` writes it.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./@:+-]+")


def _share_cache(project: Path, cache: Path) -> bool:
    """Point the checkout's DVC at ``cache`` (what ``dvc cache dir --local`` writes, without a
    DVC process: a second or two each). False when DVC itself must do it."""
    config = project / ".dvc" / "config.local"
    if not (project / ".dvc").is_dir() or config.exists() or not _PLAIN_PATH.fullmatch(
            str(cache)):
        return False
    config.write_text(f"[cache]\n    dir = {cache}\n")
    return True


def _dvc_tracks_outputs(tree: Path) -> bool:
    """Whether ``dvc checkout`` has anything to restore in the checked-out commit: outputs
    recorded in a dvc.lock or a ``.dvc`` file (without either it is a process that does
    nothing)."""
    return any(path.is_file() for pattern in ("dvc.lock", "*.dvc")
               for path in tree.rglob(pattern) if ".dvc" not in path.parent.parts)


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def likely_causes(lineage: Lineage, files: PipelineFiles, missing: list[DataRef],
                  inside: str = "") -> list[str]:
    """Why a re-run of ``lineage``'s commit may not give the version back, from what was
    recorded at training: files not committed (parameter files among them named apart, by the
    pipeline's ``params`` or a ``params.yaml`` name) and DVC data the checkout cannot have.
    ``inside`` is the DVC project's folder in the repository (dirty paths are the
    repository's, ``files`` the project's)."""
    causes: list[str] = []
    commit = lineage.git_commit[:12]
    prefix = f"{inside.strip('/')}/" if inside.strip("/.") else ""

    def is_params(path: str) -> bool:
        local = path[len(prefix):] if path.startswith(prefix) else None
        return path.rsplit("/", 1)[-1] == "params.yaml" or (
            local is not None and files.is_params(local))

    if lineage.git_dirty == "true":
        paths = lineage.dirty_paths
        params = [p for p in paths if is_params(p)]
        code = [p for p in paths if p not in params]
        if params:
            causes.append(f"uncommitted parameters: {', '.join(params)} differed from commit "
                          f"{commit} when the version was trained")
        if code or not paths:
            listed = f": {', '.join(code)} differed from commit {commit}" if code else ""
            causes.append(f"trained on a dirty tree{listed}, so the commit is not the code "
                          "that trained it")
    for ref in missing:
        causes.append(f"missing DVC data: {ref.path} (md5 {ref.hash[:12]}) is in neither the "
                      "checkout nor the DVC cache (`dvc pull` may fetch it)")
    return causes


class Reproducer:
    def __init__(self, ctx: Context, loader: Loader, root: Path) -> None:
        self.ctx = ctx
        self.loader = loader
        self.root = root

    def run(self, name: str, ref: str | int | None, *, tolerance: float = 1e-6
            ) -> ReproduceReport:
        from modelyard.project import git

        clock = time.perf_counter()
        mv = self.loader.get(name, ref, full=True)
        commit = mv.lineage.git_commit
        if not commit:
            raise UserError(f"{mv.label} records no git commit: nothing to re-run")
        top = git.toplevel(self.root)
        if top is None:
            raise UserError(f"{self.root} is not inside a git repository")
        sub = self.root.resolve().relative_to(top) if self.root.resolve() != top else Path()
        report = ReproduceReport(name=name, version=mv.version, semver=mv.semver,
                                 commit=commit, reproducible=False, tolerance=tolerance)
        tmp = Path(tempfile.mkdtemp(prefix="modelyard-reproduce-"))
        tree = tmp / "tree"
        try:
            done = subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree),
                                   commit], cwd=top, capture_output=True, text=True,
                                  check=False, timeout=300)
            if done.returncode != 0:
                raise UserError(f"cannot check out {commit[:12]}: "
                                f"{(done.stderr or done.stdout).strip()[:200]}")
            project = tree / sub
            if not (project / "dvc.yaml").is_file():
                raise UserError(f"{commit[:12]} has no dvc.yaml in {sub or '.'}: reproduce "
                                "re-runs the project's DVC pipeline")
            env = self._env(tmp / "home")
            self._prepare(project, tree, env, mv.lineage.data, report)
            report.causes = likely_causes(mv.lineage, pipeline_files(project),
                                          self._missing_data(project, mv.lineage.data),
                                          sub.as_posix())
            try:
                run_dvc(["repro", "-f", "-q"], project, env)
            except UserError as exc:
                # The causes above are the likelier story than DVC's last lines: keep both.
                report.differences.append(f"the pipeline failed: {exc.message}")
            else:
                self._data(project, mv.lineage.data, report)
                self._compare(name, mv, tmp / "home", project, report, tolerance)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=top,
                           capture_output=True, check=False, timeout=120)
            subprocess.run(["git", "worktree", "prune"], cwd=top, capture_output=True,
                           check=False, timeout=120)
            shutil.rmtree(tmp, ignore_errors=True)
        report.reproducible = not report.differences
        report.seconds = round(time.perf_counter() - clock, 3)
        report.at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with contextlib.suppress(YardError):
            self.ctx.vault.store.put_bytes(reproduce_key(name, mv.version),
                                           json.dumps(report.to_dict(), default=str).encode())
            # The tag tells `details` a result exists (no vault read for versions without).
            verdict = "reproduced" if report.reproducible else "differs"
            self.ctx.writes.set_version_tags(name, mv.version,
                                             {T_REPRODUCED: f"{report.at} {verdict}"})
        return report

    def _env(self, home: Path) -> dict[str, str]:
        """Stages register into a throwaway embedded home, whatever the project's config or
        the environment name: the real registry, vault, backup and webhooks are out of reach."""
        env = {k: v for k, v in clean_env().items()
               if not k.startswith(("MODELYARD_", "MLFLOW_"))}
        env.update(MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
                   MODELYARD_HOME=str(home), MODELYARD_VAULT=str(home / "vault"),
                   MODELYARD_BACKUP=str(home / "backup"),
                   MODELYARD_ARTIFACT_LOCATION=str(home / "artifacts"),
                   MODELYARD_WEBHOOKS="[]", MODELYARD_CACHE_DIR=str(self.ctx.cache_dir),
                   MODELYARD_USER="reproduce")
        home.mkdir(parents=True, exist_ok=True)
        return env

    def _prepare(self, project: Path, tree: Path, env: dict[str, str], data: list[Any],
                 report: ReproduceReport) -> None:
        """Share the project's DVC cache, check out what DVC holds, copy in the data files
        git does not hold."""
        source = self.root
        cache = source / ".dvc" / "cache"
        if cache.is_dir() and not _share_cache(project, cache):
            with contextlib.suppress(UserError):
                run_dvc(["cache", "dir", "--local", str(cache)], project, env)
        if _dvc_tracks_outputs(tree):
            with contextlib.suppress(UserError):
                run_dvc(["checkout", "-q"], project, env)
        for ref in data:
            rel = Path(ref.path)
            if rel.is_absolute():
                continue
            target, origin = project / rel, source / rel
            if not target.exists() and origin.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, target)
                report.notes.append(f"{ref.path} is not in git or DVC at {report.commit[:12]}:"
                                    " copied from the checkout")

    def _missing_data(self, project: Path, data: list[Any]) -> list[Any]:
        """The DVC-recorded training data the checkout cannot have: its bytes neither in the
        checkout (``dvc checkout`` puts what the commit records there) nor in the project's
        DVC cache (a pipeline output the re-run writes again is cached when it was written)."""
        missing = []
        for ref in data:
            if ref.source != "dvc" or ref.hash.endswith(".dir") or Path(ref.path).is_absolute():
                continue
            cached = dvc_cache_path(self.root, ref.hash)
            if cached is not None and cached.is_file():
                continue
            path = project / ref.path
            if path.is_file() and md5_file(path) == ref.hash:
                continue
            missing.append(ref)
        return missing

    def _data(self, project: Path, data: list[Any], report: ReproduceReport) -> None:
        for ref in data:
            path = Path(ref.path)
            path = path if path.is_absolute() else project / path
            if not path.is_file():
                actual = "missing"
            else:
                actual = md5_file(path) if ref.source == "dvc" else sha256_file(path)
            ok = actual == ref.hash
            report.data.append({"path": ref.path, "recorded": ref.hash, "actual": actual,
                                "ok": ok})
            if not ok:
                kind = "md5" if ref.source == "dvc" else "sha256"
                report.differences.append(
                    f"data {ref.path}: {kind} {actual[:12]} differs from lineage "
                    f"{ref.hash[:12]}" if actual != "missing" else f"data {ref.path} is missing")

    def _compare(self, name: str, mv: Any, home: Path, project: Path,
                 report: ReproduceReport, tolerance: float) -> None:
        from modelyard.context import build_context
        from modelyard.core.config import load_settings

        settings = load_settings({"home": str(home), "vault": str(home / "vault"),
                                  "cache_dir": str(self.ctx.cache_dir)},
                                 environ={}, cwd=home)
        other = build_context(settings)
        try:
            versions = other.tracking.versions(name)
        except YardError:
            versions = []
        if not versions:
            report.differences.append(f"the pipeline registered no version of {name}")
            return
        newest = max(versions, key=lambda v: v.version)
        again = Loader(other).version(newest, full=True)
        for key, recorded in sorted(mv.metrics.items()):
            value = again.metrics.get(key)
            ok = value is not None and _close(float(recorded), float(value), tolerance)
            report.metrics[key] = {"recorded": recorded, "reproduced": value, "ok": ok}
            if not ok:
                report.differences.append(f"metric {key}: {value} (recorded {recorded})")
        self._predictions(mv, Loader(other), again, report, tolerance)

    def _predictions(self, mv: Any, other: Loader, again: Any, report: ReproduceReport,
                     tolerance: float) -> None:
        import numpy as np
        import pandas as pd

        original = self.loader.load(mv.name, mv.version)
        example = Path(original.path) / "input_example.json"
        if not example.is_file():
            report.notes.append("the version has no input example: predictions not compared")
            return
        data = json.loads(example.read_text())
        data = data.get("dataframe_split", data) if isinstance(data, dict) else data
        if not (isinstance(data, dict) and "columns" in data):
            report.notes.append("the input example is not a table: predictions not compared")
            return
        sample = pd.DataFrame(data["data"], columns=data["columns"])
        path, _, _ = other.materialize(again, True)
        from modelyard.backend import mlmodel

        model = mlmodel.deserialize(path, again.tags.get(T_FLAVOR, ""))
        before = np.asarray(original.model.predict(sample))
        after = np.asarray(model.predict(sample))
        equal = bool(np.array_equal(before, after))
        close = equal
        if not equal and before.shape == after.shape and before.dtype.kind in "fiu":
            close = bool(np.allclose(before, after, rtol=tolerance, atol=tolerance))
        differing = int((before != after).sum()) if before.shape == after.shape else len(before)
        report.predictions = {"rows": len(sample), "equal": equal, "within_tolerance": close,
                              "differing": differing}
        if not close:
            report.differences.append(f"predictions: {differing} of {len(sample)} rows differ")
