"""Targets for the processes tests start with ``multiprocessing`` (spawn).

A spawned process imports the module that holds its target before it runs it: this one imports
only the standard library, so each process pays for what its work needs and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register_rounds(folder: str, model_dir: str, index: int, barrier: Any, results: Any,
                    rounds: int) -> None:
    """Wait for the other processes, then register a saved model folder ``rounds`` times into
    the embedded registry at ``folder``; report each version (or the error) on ``results``.

    The model is a folder saved once by the parent: the processes race on the registry (its
    first use, the semver each version gets), not on fitting or serialising a model.
    """
    try:
        from modelyard import Yard

        barrier.wait(timeout=300)
        for round_ in range(rounds):
            mv = Yard(home=folder).register_directory(
                Path(model_dir), "m", params={"worker": index, "round": round_})
            results.put((index, mv.version, str(mv.semver)))
        results.put((index, "done", ""))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((index, "error", f"{type(exc).__name__}: {exc}"))


def register_once(args: tuple[str, dict[str, str], str, str, int]) -> tuple[int, str]:
    """In a fresh process, with its own environment, folder and Yard: register the saved
    model folder ``model_dir`` as a version of ``name``; ``(version, semver)``."""
    import os

    name, env, cwd, model_dir, index = args
    os.environ.update(env)
    os.chdir(cwd)
    from modelyard import Yard

    mv = Yard().register_directory(Path(model_dir), name, params={"worker": index})
    return mv.version, str(mv.semver)


def rollback_once(args: tuple[str, dict[str, str], str, Any, int]) -> tuple[int, str, str]:
    """In a fresh process: wait for the others, then roll back ``name``'s production;
    ``(index, "ok", version)`` or ``(index, "refused", the one-line message)``."""
    import os

    name, env, cwd, barrier, index = args
    os.environ.update(env)
    os.chdir(cwd)
    import time

    from modelyard import Yard
    from modelyard.errors import UserError
    from modelyard.lifecycle.stages import Stages

    # A slow link between deciding the rollback and writing its audit event: every process
    # decides from the same state, so only the trail's ordering can keep them apart.
    move = Stages.move

    def slow_move(self: Stages, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return move(self, *args, **kwargs)

    Stages.move = slow_move  # type: ignore[method-assign]
    yard = Yard()
    yard.resolve(name, "production")  # the client is built before the race starts
    barrier.wait(timeout=300)
    try:
        change = yard.rollback(name, reason=f"worker {index}")
    except UserError as exc:
        return index, "refused", exc.message
    return index, "ok", str(change.version)
