"""Put a DVC stage's outputs back to what ``dvc.lock`` records, and never register.

``recover`` only repairs (docs/design.md, "Recovery layers"): a stage whose outputs differ
from ``dvc.lock`` gets exactly those outputs back, from the DVC cache (cached outputs) or from
the Git commit checked out (``cache: false`` outputs such as metrics and ``model.json`` are
committed beside ``dvc.lock``), each checked against the md5 ``dvc.lock`` records. Only a
stage that does not register a model may be re-run when an output cannot be put back, and
only that stage (``--single-item``): re-running a training stage would register a new version,
which is a release, not a repair.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from modelyard.core.reading import read_capped
from modelyard.errors import InvalidInput, UserError
from modelyard.project import git
from modelyard.project.dvc import dvc_cache_path, load_dvc_yaml, md5_file, run_dvc

# What a stage's command or its scripts say when the stage registers a model: modelyard's
# Yard.register / `modelyard register`, MLflow's register_model / registered_model_name.
_REGISTERS = re.compile(r"register|modelyard\s+(import|adopt|restore)")
_SCRIPT_BYTES = 4 * 1024 * 1024


def _stage(root: Path, document_name: str, stage: str) -> dict[str, Any]:
    document = load_dvc_yaml(root / document_name) if (root / document_name).is_file() else None
    stages = document.get("stages") if isinstance(document, dict) else None
    body = stages.get(stage) if isinstance(stages, dict) else None
    return body if isinstance(body, dict) else {}


def locked_outputs(root: Path, stage: str) -> list[tuple[str, str]]:
    """``(path, md5)`` of each file output ``dvc.lock`` records for ``stage``."""
    found = []
    for out in _stage(root, "dvc.lock", stage).get("outs") or []:
        if isinstance(out, dict) and out.get("md5") and not str(out["md5"]).endswith(".dir"):
            found.append((str(out.get("path", "")), str(out["md5"])))
    return found


def broken_outputs(root: Path, stage: str) -> list[tuple[str, str]]:
    """The stage's outputs that are missing or differ from ``dvc.lock``."""
    return [(rel, md5) for rel, md5 in locked_outputs(root, stage)
            if not (root / rel).is_file() or md5_file(root / rel) != md5]


def registers(root: Path, stage: str) -> bool:
    """Whether ``stage`` registers a model: its command, or a script it depends on, says so.
    In doubt (a script that cannot be read) it counts as registering: recover then leaves it."""
    body = _stage(root, "dvc.yaml", stage)
    texts = [str(body.get("cmd", ""))]
    for dep in body.get("deps") or []:
        path = root / str(dep)
        if path.is_file() and path.suffix in (".py", ".sh", ".r", ".R", ".ipynb"):
            try:
                texts.append(read_capped(path, _SCRIPT_BYTES, "a stage script").decode(
                    errors="replace"))
            except (InvalidInput, OSError):
                return True
    return any(_REGISTERS.search(text) for text in texts)


def _put(source: bytes | Path, target: Path, md5: str) -> bool:
    """Write ``source`` to ``target`` atomically when its md5 is the recorded one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.modelyard-recover")
    if isinstance(source, Path):
        shutil.copyfile(source, tmp)
    else:
        tmp.write_bytes(source)
    if md5_file(tmp) != md5:
        tmp.unlink()
        return False
    tmp.replace(target)
    return True


def put_back(root: Path, stage: str) -> tuple[list[str], list[str]]:
    """``(put back, left)``: each broken output of ``stage`` from the DVC cache or the commit
    checked out, when its bytes there are the ones ``dvc.lock`` records."""
    done, left = [], []
    for rel, md5 in broken_outputs(root, stage):
        cached = dvc_cache_path(root, md5)
        if cached is not None and cached.is_file() and _put(cached, root / rel, md5):
            done.append(rel)
            continue
        committed = git.file_bytes(root, "HEAD", rel)
        if committed is not None and _put(committed, root / rel, md5):
            done.append(rel)
            continue
        left.append(rel)
    return done, left


def repair_stage(root: Path, stage: str, env: dict[str, str]) -> str:
    """Put ``stage``'s outputs back; re-run it alone only when something is left and it does
    not register. Raises ``UserError`` naming what is left and what to run."""
    done, left = put_back(root, stage)
    if not left:
        return f"{', '.join(done) or 'nothing'} put back as dvc.lock records (nothing re-run)"
    if registers(root, stage):
        raise UserError(
            f"{', '.join(left)} of stage {stage} cannot be put back (not in the DVC cache or the "
            f"commit) and stage {stage} registers a model: recover does not re-run it; run "
            f"`dvc repro {stage}` yourself if a new version is what you want")
    run_dvc(["repro", "--single-item", stage], root, env)
    still = [rel for rel, _ in broken_outputs(root, stage)]
    if still:
        raise UserError(f"dvc repro {stage} ran but {', '.join(still)} still differ from "
                        "dvc.lock (the stage is not reproducible)")
    return f"dvc repro --single-item {stage} re-ran it ({', '.join(left)} rebuilt)"
