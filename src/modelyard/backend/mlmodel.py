"""MLflow's model format: saving a model object fast, reading an MLmodel file, loading.

With ``connection.py``, ``tracking.py``, ``artifacts.py`` and ``tracking_transport.py``, the only
code that imports mlflow. Nothing here talks to a server.

MLflow infers pip requirements on every ``log_model`` by loading the model in a subprocess
(seconds). modelyard infers them once per environment and flavor, caches the answer, and passes
it explicitly. scikit-learn trees need their skops types trusted; modelyard trusts exactly the
types of the object it serialises itself (its integrity check guards the file afterwards).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import site
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelyard.errors import InvalidInput, YardError
from modelyard.store.files import read_capped

log = logging.getLogger(__name__)


@dataclass
class Flavor:
    name: str
    module: ModuleType

    def save(self, model: Any, path: Path, mlflow_model: Any, **kwargs: Any) -> None:
        if self.name == "python_function":
            self.module.save_model(path=str(path), python_model=model,
                                   mlflow_model=mlflow_model, **kwargs)
        else:
            self.module.save_model(model, path=str(path), mlflow_model=mlflow_model, **kwargs)


def detect(model: Any, flavor: str | ModuleType | None) -> Flavor:
    """Pick the MLflow flavor for a model object (scikit-learn and pyfunc detected)."""
    import importlib

    if isinstance(flavor, ModuleType):
        return Flavor(flavor.__name__.rsplit(".", 1)[-1], flavor)
    if isinstance(flavor, str):
        short = flavor.removeprefix("mlflow.")
        if short in ("pyfunc", "python_function"):
            import mlflow.pyfunc

            return Flavor("python_function", mlflow.pyfunc)
        try:
            return Flavor(short, importlib.import_module(f"mlflow.{short}"))
        except ImportError as exc:
            raise InvalidInput(f"unknown MLflow flavor '{flavor}'") from exc
    import mlflow.pyfunc

    if isinstance(model, mlflow.pyfunc.PythonModel):
        return Flavor("python_function", mlflow.pyfunc)
    module = type(model).__module__.split(".")[0]
    # Before the scikit-learn check: XGBoost's and LightGBM's estimators subclass
    # BaseEstimator, and their own flavors keep their native formats.
    if module in ("xgboost", "lightgbm", "catboost", "statsmodels", "torch", "keras"):
        name = "pytorch" if module == "torch" else module
        return Flavor(name, importlib.import_module(f"mlflow.{name}"))
    if module == "sklearn" or _is_sklearn(model):
        import mlflow.sklearn

        return Flavor("sklearn", mlflow.sklearn)
    raise InvalidInput(
        f"cannot tell the MLflow flavor of a {type(model).__name__}; pass flavor='mlflow.<name>'"
    )


def _is_sklearn(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(model, BaseEstimator)


_TRUSTED_BY_CLASS: dict[str, list[str]] = {}


def save_kwargs(flavor: Flavor, model: Any, *, refresh: bool = False) -> dict[str, Any]:
    """Flavor-specific arguments that avoid MLflow's slow or failing defaults.

    Working out the skops types to trust means serialising the model once more, so the answer
    is kept per model class; ``refresh`` recomputes it when a new object needs more types.
    """
    if flavor.name != "sklearn":
        return {}
    import mlflow.sklearn

    try:
        import skops.io
    except ImportError:
        return {"serialization_format": mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE}
    key = f"{type(model).__module__}.{type(model).__qualname__}"
    if refresh or key not in _TRUSTED_BY_CLASS:
        _TRUSTED_BY_CLASS[key] = list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    trusted = _TRUSTED_BY_CLASS[key]
    return {"serialization_format": mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            "skops_trusted_types": trusted or None}


def is_untrusted_types_error(exc: BaseException) -> bool:
    return "untrusted types" in str(exc).lower()


def _environment_key(flavor: str) -> str:
    """Changes whenever packages are installed or removed in this environment."""
    parts = [sys.prefix, sys.version, flavor]
    for folder in site.getsitepackages():
        try:
            parts.append(f"{folder}:{Path(folder).stat().st_mtime_ns}")
        except OSError:
            continue
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


# What a scikit-learn model saved by MLflow needs to load and predict: known without asking
# MLflow to infer it (which loads the model in a subprocess, seconds on every call).
_KNOWN_REQUIREMENTS = {
    "sklearn": ("mlflow", "scikit-learn", "skops", "cloudpickle", "numpy", "scipy", "pandas"),
    # xgboost-cpu installs the module xgboost; whichever distribution is present is pinned
    "xgboost": ("mlflow", "xgboost", "xgboost-cpu", "scikit-learn", "numpy", "scipy",
                "pandas"),
    "lightgbm": ("mlflow", "lightgbm", "scikit-learn", "numpy", "scipy", "pandas"),
}


@functools.cache
def _pinned(packages: tuple[str, ...]) -> tuple[str, ...]:
    from importlib import metadata

    pins: list[str] = []
    for package in packages:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return tuple(pins)


def pip_requirements(flavor: Flavor, saved_dir: Path | None, cache_dir: Path) -> list[str] | None:
    """Requirements for this environment and flavor: known ones pinned to what is installed,
    else those MLflow inferred once and cached; None if not known yet."""
    if flavor.name in _KNOWN_REQUIREMENTS:
        return list(_pinned(_KNOWN_REQUIREMENTS[flavor.name]))
    cached = cache_dir / "requirements" / f"{_environment_key(flavor.name)}.json"
    if cached.is_file():
        try:
            value = json.loads(cached.read_text())
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    if saved_dir is None:
        return None
    requirements = saved_dir / "requirements.txt"
    if not requirements.is_file():
        return None
    lines = [
        line.strip()
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(lines))
    tmp.replace(cached)
    log.info("cached inferred pip requirements for %s: %s", flavor.name, lines)
    return lines


# -- saving ---------------------------------------------------------------------------------
def save(
    flavor: Flavor,
    model: Any,
    local: Path,
    *,
    run_id: str,
    model_id: str,
    artifact_location: str,
    input_example: Any,
    signature: Any,
    requirements: list[str] | None,
    cache_dir: Path,
) -> None:
    """Save ``model`` with its flavor into ``local`` (a folder that must not exist yet)."""
    import shutil

    from mlflow.models import Model

    kwargs = save_kwargs(flavor, model)
    requirements = requirements or pip_requirements(flavor, None, cache_dir)
    mlflow_model = Model(artifact_path=artifact_location, model_uuid=model_id, run_id=run_id,
                         model_id=model_id)

    def attempt(options: dict[str, Any]) -> None:
        shutil.rmtree(local, ignore_errors=True)
        flavor.save(model, local, mlflow_model, input_example=input_example,
                    signature=signature, pip_requirements=requirements, **options)

    try:
        try:
            attempt(kwargs)
        except Exception as exc:
            if not is_untrusted_types_error(exc):
                raise
            # This object holds types its class's earlier objects did not: work them out.
            attempt(save_kwargs(flavor, model, refresh=True))
    except YardError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"the model could not be saved by MLflow: {first}") from exc
    if requirements is None:
        # First registration in this environment: MLflow inferred them; keep the answer.
        pip_requirements(flavor, local, cache_dir)


# -- reading an MLmodel file ------------------------------------------------------------------
MAX_MLMODEL_BYTES = 16 * 1024 * 1024
"""An MLmodel file is YAML of a few kilobytes (a wide signature: a few megabytes)."""


@dataclass
class MLmodelInfo:
    """What registration needs from a saved model's MLmodel file."""

    flavor: str  # the first flavor that is not python_function, else python_function
    inputs: Any  # MLflow Schema or None
    outputs: Any


def read_mlmodel(folder: Path) -> MLmodelInfo:
    """Read ``folder/MLmodel``; InvalidInput when it is missing or not readable."""
    path = folder / "MLmodel"
    if not path.is_file():
        raise InvalidInput(f"{folder} is not a saved MLflow model (no MLmodel file in it)")
    from mlflow.models import Model

    # Read within a limit here (Model.load reads whatever it is given): a user's folder.
    raw = read_capped(path, MAX_MLMODEL_BYTES, "an MLmodel file")
    try:
        import yaml

        mlmodel = Model.from_dict(yaml.safe_load(raw))
    except Exception as exc:  # noqa: BLE001 - a user's (or another tool's) malformed file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"{path} is not readable: {first[:200]}") from None
    flavor = next((f for f in mlmodel.flavors if f != "python_function"), "python_function")
    sig = mlmodel.signature
    return MLmodelInfo(flavor, sig.inputs if sig else None, sig.outputs if sig else None)


# -- loading --------------------------------------------------------------------------------
def deserialize(path: Path, flavor: str) -> Any:
    """Load a verified model folder with its own flavor (pyfunc when there is none)."""
    import contextlib
    import importlib

    if flavor and flavor != "python_function":
        with contextlib.suppress(ImportError):
            module = importlib.import_module(f"mlflow.{flavor}")
            return module.load_model(str(path))
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(path))


# -- the user's own run ---------------------------------------------------------------------
def active_run() -> tuple[str, str] | None:
    """(run id, tracking URI) of the caller's active ``mlflow.start_run()``, if any.

    Only read: modelyard never starts, ends or re-points MLflow's fluent run.
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    return run.info.run_id, mlflow.get_tracking_uri()
