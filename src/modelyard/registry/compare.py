"""``compare``: versions side by side, and the keys whose values differ; a metrics plot.

>>> yard.compare("churn", ["v1.0.0", "production"]).differences
['metrics.accuracy', 'params.depth']
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from modelyard.core.entities import Comparison
from modelyard.core.lineage import Lineage
from modelyard.core.names import T_PARAMS, T_SCHEMA, check_name
from modelyard.core.records import VersionRecord
from modelyard.core.refs import VersionRef, is_visible, resolve
from modelyard.core.versioning import Fingerprint
from modelyard.errors import InvalidInput, MissingDependency, UserError
from modelyard.registry.loading import Loader


def compare(loader: Loader, name: str, refs: list[str] | None = None) -> Comparison:
    """Versions side by side: semver, stage, metrics, params, data hashes, input schema,
    bump and reason, and what training took (``training``); ``differences`` lists the keys
    whose values are not all the same (training figures aside).

        """
    visible = [v for v in loader.tracking.versions(check_name(name)) if is_visible(v)]
    if refs:
        parsed = [VersionRef.parse(ref) for ref in refs]  # all refs checked first
        records: list[VersionRecord] = []
        for ref in parsed:
            record = resolve(name, ref, visible)
            if all(r.version != record.version for r in records):
                records.append(record)
    else:
        records = list(visible)
    if not records:
        raise UserError(f"{name} has no versions to compare")
    rows = []
    for record in records:
        mv = loader.version(record, full=True)
        params = dict(mv.params)
        if not params and record.tags.get(T_PARAMS):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                params = {str(k): str(v)
                          for k, v in json.loads(record.tags[T_PARAMS]).items()}
        rows.append({
            "version": mv.version,
            "semver": mv.semver,
            "stage": mv.stage,
            "aliases": mv.aliases,
            "created_at": mv.created_at,
            "metrics": mv.metrics,
            "params": params,
            "data": mv.lineage.data_hashes(),
            "input_schema": _schema_columns(record),
            "bump": mv.bump,
            "bump_reason": mv.bump_reason,
            "training": training_figures(mv.lineage),
        })
    return Comparison(name=name, versions=rows, differences=_differences(rows))


def training_figures(lineage: Lineage) -> dict[str, float | None]:
    """What training took, as numbers (None where not recorded): wall and CPU seconds, peak
    resident MiB, the host's cores and MiB. Shown beside the versions, never counted among the
    ``differences``: two trainings never take the same time."""
    def number(text: str) -> float | None:
        try:
            return float(text) if text else None
        except ValueError:
            return None

    return {"duration_s": number(lineage.duration_s), "cpu_s": number(lineage.cpu_s),
            "peak_rss_mb": number(lineage.peak_rss_mb), "host_cpus": number(lineage.host_cpus),
            "host_memory_mb": number(lineage.host_memory_mb)}


def _schema_columns(record: VersionRecord) -> list[dict[str, Any]] | None:
    inputs, _ = Fingerprint.parse_schema(record.tags.get(T_SCHEMA))
    if inputs is None:
        return None
    return [{"name": n, "type": t, "required": r} for n, t, r in inputs]



def _differences(rows: list[dict[str, Any]]) -> list[str]:
    """Keys (``stage``, ``input_schema``, ``metrics.X``, ``params.X``, ``data.X``) whose
    values are not the same in every compared version."""
    if len(rows) < 2:
        return []
    keys: list[str] = ["stage", "input_schema"]
    for group in ("metrics", "params", "data"):
        names = sorted({k for row in rows for k in row[group]})
        keys.extend(f"{group}.{k}" for k in names)
    differ = []
    for key in keys:
        values = [json.dumps(_value_at(row, key), sort_keys=True, default=str) for row in rows]
        if len(set(values)) > 1:
            differ.append(key)
    return differ



def _value_at(row: dict[str, Any], key: str) -> Any:
    group, _, sub = key.partition(".")
    if not sub:
        return row.get(group)
    return row.get(group, {}).get(sub)



def plot_comparison(comparison: Comparison | dict[str, Any], path: Path) -> list[str]:
    """Draw each metric across the compared versions into a PNG; returns the metrics drawn.

    The metric names are also written into the PNG's metadata (``Description``).
    """
    rows = comparison["versions"]
    metrics = sorted({k for row in rows for k in row["metrics"]})
    if not metrics:
        raise UserError(f"{comparison['name']}: the compared versions have no metrics to plot")
    if path.suffix.lower() != ".png":
        raise InvalidInput(f"--plot writes a PNG file; give a name ending in .png, not {path}")
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency(feature="plotting", package="matplotlib",
                                install="modelyard[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"v{row['semver']}" if row["semver"] else f"#{row['version']}" for row in rows]
    figure, axes = plt.subplots(len(metrics), 1, figsize=(max(4.0, 1.2 * len(rows) + 2), 2.6 *
                                len(metrics)), squeeze=False)
    try:
        for axis, metric in zip(axes[:, 0], metrics, strict=True):
            values = [row["metrics"].get(metric, math.nan) for row in rows]
            axis.plot(range(len(rows)), values, marker="o")
            axis.set_xticks(range(len(rows)))
            axis.set_xticklabels(labels)
            axis.set_ylabel(metric)
            axis.grid(True, alpha=0.3)
        axes[0, 0].set_title(f"{comparison['name']}: metrics by version")
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", metadata={
            "Title": f"{comparison['name']} metrics",
            "Description": "metrics: " + ", ".join(metrics),
        })
    except OSError as exc:
        raise UserError(f"cannot write the plot to {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
    return metrics
