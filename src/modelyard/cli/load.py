"""``load`` (a version's verified files into a folder) and ``verify`` (one version against its
manifest, or with ``--all`` every version in every layer)."""

from __future__ import annotations

from pathlib import Path

import click

from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _target,
    command_options,
    emit,
    main,
)


@main.command("load")
@click.argument("target")
@click.option("--to", "dest", required=True, type=click.Path(path_type=Path),
              help="Folder to write the verified files to: new, empty, or one an earlier "
              "load wrote (anything else is refused, never deleted).")
@click.option("--no-verify", is_flag=True, help="Skip the manifest check (not recommended).")
@command_options
def load_cmd(state: State, target: str, dest: Path, no_verify: bool) -> None:
    """Download a version's files, checked against its manifest, into a folder.

    \b
    Examples:
      modelyard load churn@production --to ./serving/model
    """
    name, ref = _target(target, "production")
    mv, path = state.yard.download(name, ref, dest, verify=not no_verify)
    emit(state, {"name": mv.name, "version": mv.version, "semver": mv.semver, "path": str(path),
                 "verified": not no_verify},
         lambda _: _console().print(f"{mv.label} -> {path} (verified: {not no_verify})"))


@main.command("verify")
@click.argument("target", required=False)
@click.option("--all", "every", is_flag=True,
              help="Every version (of TARGET's model, if given) in every layer: artifact "
              "store, vault, backup store; and what processes that died left behind.")
@command_options
def verify_cmd(state: State, target: str | None, every: bool) -> None:
    """Check stored files against their manifests (exit code 5 if anything is wrong).

    \b
    Examples:
      modelyard verify churn@production
      modelyard verify --all
      modelyard verify --all churn --json
    """
    from modelyard.cli.render import INTEGRITY_EXIT, progress_bar, render_integrity

    if every:
        name = _target(target)[0] if target else None
        with progress_bar(state, "verifying") as progress:
            report = state.yard.protection.verify_all(name, progress=progress)
        emit(state, report, lambda r: render_integrity(state, r))
        if not report.ok:
            raise SystemExit(INTEGRITY_EXIT)
        return
    if not target:
        raise YardError_("give NAME@REF to verify, or --all")
    name, ref = _target(target)
    result = state.yard.verify(name, ref)
    emit(state, result, lambda r: _console().print(
        f"[green]ok[/green] {r['name']} v{r['semver']}: {r['files']} files, {r['bytes']} bytes "
        f"match the manifest; {_signed(r['signature'], r['signer'])}"))


def _signed(state: str, signer: str | None) -> str:
    return f"signed by {signer[:16]}" if state == "signed" and signer else "unsigned"
