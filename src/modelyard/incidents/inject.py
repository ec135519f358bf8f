"""Breaking one thing on purpose, for a drill: data, model files, registry, storage,
promotion or a pipeline stage. ``Injector.inject`` returns what it did and, for an outage,
the call that ends it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import NotFound, UserError

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.incidents.ports import DrillRegistry, RegistryFactory
    from modelyard.incidents.sandbox import Sandbox


class Injector:
    """Breaks one thing on purpose. ``inject`` returns (what was done, an undo for outages)."""

    def __init__(self, yard: DrillRegistry, box: Sandbox | None, model: str,
                 factory: RegistryFactory) -> None:
        self.yard = yard
        self.box = box
        self.model = model
        self.factory = factory  # a registry on a stale config, for the bad promotion

    def inject(self, scenario: str, stage: str | None) -> tuple[str, Callable[[], None] | None]:
        method = getattr(self, "_" + scenario.replace("-", "_"))
        result: tuple[str, Callable[[], None] | None] = (
            method(stage) if scenario == "pipeline-failure" else method())
        return result

    # -- data -----------------------------------------------------------------------------
    def _training_csv(self) -> Path:
        if self.box is None:
            raise UserError("data drills run in the sandbox")
        mv = self.yard.get(self.model, "production", full=False)
        for ref in mv.lineage.data:
            if ref.path.endswith(".csv"):
                path = Path(ref.path)
                return path if path.is_absolute() else self.box.project / path
        raise NotFound(f"{mv.label} records no CSV training data")

    def _rewrite(self, change: Callable[[Any], Any]) -> Path:
        import pandas as pd

        path = self._training_csv()
        frame = pd.read_csv(path, dtype={"customer_id": str})
        change(frame).to_csv(path, index=False)
        return path

    def _numeric(self, frame: Any) -> list[str]:
        import pandas as pd

        return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
                and c != "churn" and frame[c].nunique() > 2]

    def _data_noise(self) -> tuple[str, None]:
        import numpy as np

        columns: list[str] = []

        def change(frame: Any) -> Any:
            rng = np.random.default_rng(7)
            columns.extend(self._numeric(frame))
            for column in columns:
                spread = float(frame[column].std() or 1.0)
                frame[column] = frame[column] + rng.normal(0, 3 * spread, len(frame))
            return frame

        path = self._rewrite(change)
        return f"noise (3 sd) added to {', '.join(columns)} in {path.name}", None

    def _data_missing(self) -> tuple[str, None]:
        import numpy as np

        columns: list[str] = []

        def change(frame: Any) -> Any:
            rng = np.random.default_rng(8)
            columns.extend(self._numeric(frame)[:3])
            for column in columns:
                frame.loc[rng.random(len(frame)) < 0.3, column] = np.nan
            return frame

        path = self._rewrite(change)
        return f"30% of {', '.join(columns)} removed in {path.name}", None

    def _data_duplicates(self) -> tuple[str, None]:
        import pandas as pd

        def change(frame: Any) -> Any:
            return pd.concat([frame, frame.sample(frac=0.5, random_state=9)], ignore_index=True)

        path = self._rewrite(change)
        return f"half of the rows of {path.name} duplicated", None

    # -- model files ----------------------------------------------------------------------
    def _production(self) -> Any:
        return self.yard.get(self.model, "production", full=True)

    def _model_corruption(self) -> tuple[str, None]:
        mv = self._production()
        with tempfile.TemporaryDirectory(prefix="modelyard-drill-") as tmp:
            local = self.yard.tracking.artifacts.download(mv.source, Path(tmp) / "files")
            victim = max((p for p in local.rglob("*") if p.is_file()),
                         key=lambda p: p.stat().st_size)
            data = bytearray(victim.read_bytes())
            middle = len(data) // 2
            for i in range(middle, min(middle + 64, len(data))):
                data[i] ^= 0xFF
            victim.write_bytes(bytes(data))
            self.yard.tracking.artifacts.put_artifacts(mv.artifact_location, local)
            rel = victim.relative_to(local).as_posix()
        return f"64 bytes of {rel} of {mv.label} flipped in the artifact store", None

    def _artifact_loss(self) -> tuple[str, None]:
        mv = self._production()
        self.yard.tracking.artifacts.delete_artifacts(mv.artifact_location)
        from modelyard.registry.loading import Loader

        shutil.rmtree(Loader(self.yard.ctx).cache_folder(mv), ignore_errors=True)
        return f"{mv.label}'s files deleted from the artifact store and the local cache", None

    def _storage_outage(self) -> tuple[str, Callable[[], None]]:
        if self.box is None:
            raise UserError("storage-outage runs in the sandbox")
        home = self.yard.settings.home_path
        stores = [home / "vault", home / "artifacts"]
        for store in stores:
            store.rename(store.with_name(store.name + ".outage"))
            store.write_text("outage")  # a file where the folder was: reads and writes fail

        def end() -> None:
            for store in stores:
                store.unlink()
                store.with_name(store.name + ".outage").rename(store)

        return ("the artifact store and the vault stopped answering while production was "
                "served", end)

    # -- registry -------------------------------------------------------------------------
    def _model_deletion(self) -> tuple[str, None]:
        mv = self._production()
        self.yard.tracking.delete_version(self.model, mv.version)
        return f"{mv.label} (MLflow #{mv.version}) deleted from the registry", None

    def _registry_loss(self) -> tuple[str, None]:
        tracking = self.yard.tracking
        count = 0
        for model in tracking.list_models():
            for record in tracking.versions(model.name):
                tracking.delete_version(model.name, record.version)
                count += 1
            tracking.delete_model_if_empty(model.name)
        return f"registry emptied ({count} versions deleted)", None

    # -- promotion ------------------------------------------------------------------------
    def _bad_promotion(self) -> tuple[str, None]:
        from sklearn.dummy import DummyClassifier

        mv = self._production()
        loaded = self.yard.load(self.model, "production")
        sample = self.box.sample(Path(loaded.path)) if self.box else None
        if sample is None:
            raise UserError(f"{mv.label} has no input example to build a worse model from")
        target = loaded.model.predict(sample)
        worse = DummyClassifier(strategy="most_frequent").fit(sample, target)
        metrics = {k: v * 0.5 for k, v in mv.metrics.items() if isinstance(v, (int, float))}
        bad = self.yard.register(worse, self.model, metrics=metrics, input_example=sample.head(5),
                                 description="drill: a clearly worse model",
                                 pip_requirements=["scikit-learn"])
        # Promoted from a machine whose stale config has no gates: the registry's own
        # policy never saw it.
        stale = self.yard.settings.model_copy(update={
            "gates": [], "required_tags": {}, "beat_production_metric": None})
        self.factory(stale).promote(self.model, bad.version, to="production", force=True,
                                       reason="drill: bad promotion (stale config, no gates)")
        return (f"{bad.label} (a constant predictor, metrics halved) promoted over {mv.label} "
                "by a config without gates", None)

    # -- pipeline -------------------------------------------------------------------------
    def _pipeline_failure(self, stage: str | None) -> tuple[str, None]:
        import yaml

        if self.box is None:
            raise UserError("pipeline-failure runs in the sandbox")
        stage = stage or "train"
        project = self.box.project
        spec = yaml.safe_load((project / "dvc.yaml").read_text())["stages"][stage]
        outs = [next(iter(o)) if isinstance(o, dict) else o
                for o in [*spec.get("outs", []), *spec.get("metrics", [])]]
        partial = outs[-1]
        script = project / "src" / f"{stage}.py"
        original = script.read_bytes()
        script.write_text(
            "import pathlib, sys\n"
            f"out = pathlib.Path({partial!r})\n"
            "out.parent.mkdir(parents=True, exist_ok=True)\n"
            "out.write_text('{\"partial\": ')  # the process dies midway through its output\n"
            "sys.exit(137)\n")
        try:
            subprocess.run([sys.executable, "-m", "dvc", "repro", "-f", "-s", stage],
                           cwd=project, capture_output=True, text=True, check=False,
                           env=self.box.env, timeout=600)
        finally:
            script.write_bytes(original)  # the fault was transient (an OOM kill, say)
        return f"stage {stage} killed midway (exit 137), {partial} left half-written", None
