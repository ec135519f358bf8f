"""``sign``: sign an existing version with ``signing_key``."""

from __future__ import annotations

import click

from modelyard.cli.shell import State, _console, _escape, _target, command_options, emit, main


@main.command("sign")
@click.argument("target")
@command_options
def sign_cmd(state: State, target: str) -> None:
    """Sign a version with signing_key (MODELYARD_SIGNING_KEY): an OpenSSF model-signing
    bundle over its manifest, kept in the vault; the key id becomes its modelyard.signer tag.
    Audited; MANAGE on a team stack.

    \b
    Examples:
      modelyard sign churn@v1.2.0
      MODELYARD_SIGNING_KEY=keys/release.pem modelyard sign churn@production
    """
    name, ref = _target(target)
    event = state.yard.governance.sign(name, ref or "latest")
    emit(state, event, lambda e: _console().print(
        f"signed {_escape(name)} v{e['semver']} (#{e['version']}) with key "
        f"{e['detail']['signer'][:16]}"))
