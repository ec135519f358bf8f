"""Targets for the processes tests start (``tests/support/processes.py``: forked from a server
that imported modelyard and MLflow once, run with the test's environment and folder).

This module imports only the standard library: a target imports what its work needs.
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


def register_until(name: str, model_dir: str, point: str, action: str, signal_name: str,
                   flag: str) -> None:
    """Test hook (a process of its own, started by tests/integration/test_debris.py): begin
    registering the saved folder ``model_dir`` as ``name`` and, at ``point``, write ``flag``
    and send this process ``signal_name`` (``SIGKILL``: it dies there, as under ``kill -9``;
    ``SIGSTOP``: it waits, alive, until the test continues or kills it).

    Points, each the moment before one step of the pipeline, so no timing is involved:
    ``uploaded`` (run, logged model, artifact files and vault objects exist; no version yet),
    ``manifest`` (the pending version and its manifest exist; not yet ready), ``ready`` (the
    version is ready; its audit event not yet written). ``action`` ``import`` imports the
    export document at ``model_dir`` instead (``ready``: before its import event)."""
    import os
    import signal

    from modelyard import Yard
    from modelyard.backend.tracking import Tracking
    from modelyard.core.names import STATUS_READY, T_STATUS
    from modelyard.trail.audit import Auditor

    def stop() -> None:
        Path(flag).write_text(str(os.getpid()))
        os.kill(os.getpid(), getattr(signal, signal_name))

    if point == "uploaded":
        create_version = Tracking.create_version

        def before_version(self: Tracking, *args: Any, **kwargs: Any) -> Any:
            stop()
            return create_version(self, *args, **kwargs)

        Tracking.create_version = before_version  # type: ignore[method-assign]
    elif point == "manifest":
        set_tags = Tracking.set_version_tags

        def before_ready(self: Tracking, n: str, v: int, tags: dict[str, str]) -> None:
            if tags.get(T_STATUS) == STATUS_READY:
                stop()
            set_tags(self, n, v, tags)

        Tracking.set_version_tags = before_ready  # type: ignore[method-assign, assignment]
    elif point == "ready":
        record = Auditor.record

        def before_event(self: Auditor, n: str, act: str, **fields: Any) -> Any:
            if act in ("register", "import"):
                stop()
            return record(self, n, act, **fields)

        Auditor.record = before_event  # type: ignore[method-assign, assignment]
    yard = Yard()
    if action == "import":
        yard.import_registry(Path(model_dir).read_bytes())
    else:
        yard.register_directory(Path(model_dir), name, params={"point": point})


def move_until(what: str, name: str, arg: str, point: str, nth: int, flag: str) -> None:
    """Test hook (a process of its own, started by tests/integration/test_interrupted.py):
    ``promote`` version ``arg`` of ``name`` to production (with --force), or ``snapshot``
    restore tag ``arg``, and die by SIGKILL at the ``nth`` stage move, at ``point``:
    ``event`` (its audit event is written, nothing of it applied to MLflow yet) or ``alias``
    (right after its stage alias was moved, the rest of its writes not yet sent), having
    written ``flag`` first. No timing is involved: the process dies at that step."""
    import os
    import signal

    from modelyard import Yard
    from modelyard.lifecycle import stages

    seen = [0]

    def die() -> None:
        Path(flag).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "event":
        settle = stages.Stages._settle

        def before_apply(self: Any, *args: Any, **kwargs: Any) -> Any:
            seen[0] += 1
            if seen[0] == nth:
                die()
            return settle(self, *args, **kwargs)

        stages.Stages._settle = before_apply  # type: ignore[method-assign]
    else:
        set_alias = stages._set_alias

        def after_alias(*args: Any) -> None:
            set_alias(*args)
            seen[0] += 1
            if seen[0] == nth:
                die()

        stages._set_alias = after_alias  # type: ignore[assignment]
    yard = Yard()
    if what == "promote":
        yard.promote(name, int(arg), to="production", force=True, reason="interrupted")
    else:
        yard.protection.snapshots.restore(arg)


def interleave(args: tuple[str, str, list[tuple[str, int]]]) -> list[tuple[str, str, int]]:
    """In a pool process: as user ``user``, run ``ops`` on model "m" of the embedded registry
    at ``home`` (promote to staging, request production, approve or reject the oldest open
    request, roll back production); ``(op, "ok" | "refused", event seq or 0)`` each."""
    home, user, ops = args
    from modelyard import Yard
    from modelyard.errors import UserError

    yard = Yard(home=home, user=user, production_approval_required=True)
    done: list[tuple[str, str, int]] = []
    for op, version in ops:
        try:
            if op == "staging":
                change = yard.promote("m", version, to="staging")
            elif op == "production":
                change = yard.promote("m", version, to="production")
            elif op in ("approve", "reject"):
                open_ = yard.requests("m")
                if not open_:
                    done.append((op, "refused", 0))
                    continue
                rid = str(open_[0]["id"])
                if op == "reject":
                    yard.reject(rid, reason="property test")
                    done.append((op, "ok", 0))
                    continue
                change = yard.approve(rid, reason="property test")
            else:
                change = yard.rollback("m", reason="property test")
        except UserError:
            done.append((op, "refused", 0))
            continue
        moved = change.status in ("promoted", "rolled back")
        done.append((op, "ok" if moved else change.status, int(change.event or 0)))
    return done
