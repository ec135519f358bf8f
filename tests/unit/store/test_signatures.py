"""Signatures over manifests (store/signatures.py): what verifies, what is refused, and that
model-signing's own verifier accepts what modelyard signs."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import IntegrityError, InvalidInput
from modelyard.store import signatures
from modelyard.store.signatures import Keyring, sign_manifest, verify_bundle
from modelyard.store.storage import LocalStore
from modelyard.store.vault import Manifest, Vault


def make_key(folder: Path, stem: str) -> tuple[str, str]:
    """An EC P-256 key pair as PEM files: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{stem}.pem", folder / f"{stem}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    folder = tmp_path_factory.mktemp("keys")
    return {stem: make_key(folder, stem) for stem in ("alice", "mallory", "old")}


def _model(root: Path, content: bytes = b"weights") -> Manifest:
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "sub" / "model.bin").write_bytes(content)
    return Manifest.of_directory(root)


def test_a_signature_verifies_only_under_a_trusted_key_and_for_its_own_files(
        keys: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    manifest = _model(tmp_path / "m")
    data, key_id = sign_manifest(keys["alice"][0], "churn", manifest)
    assert keys["alice"][0].encode() not in data and b"PRIVATE" not in data
    trusted = Keyring([keys["alice"][1]], [keys["old"][1]])
    state = verify_bundle(data, manifest, trusted)
    assert (state.state, state.signer, state.retired) == ("signed", key_id, False)
    # A retired key still verifies, and says so.
    assert verify_bundle(data, manifest, Keyring([], [keys["alice"][1]])).retired
    # A key nobody trusts, a signature of other files, a damaged bundle: refused.
    foreign, _ = sign_manifest(keys["mallory"][0], "churn", manifest)
    assert "not in trusted_keys" in verify_bundle(foreign, manifest, trusted).detail
    other = _model(tmp_path / "other", b"other weights")
    assert "covers other files" in verify_bundle(data, other, trusted).detail
    import base64
    import json

    body = json.loads(data)
    envelope = body["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64  # an edited file list
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged = json.dumps(body).encode()
    assert "does not verify" in verify_bundle(forged, manifest, trusted).detail
    assert verify_bundle(b"{}", manifest, trusted).state == "bad signature"


def test_model_signings_own_verifier_accepts_the_folder(
        keys: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    import model_signing

    manifest = _model(tmp_path / "m")
    data, _ = sign_manifest(keys["alice"][0], "churn", manifest)
    (tmp_path / "model.sig").write_bytes(data)
    model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=keys["alice"][1]).verify(tmp_path / "m", tmp_path / "model.sig")


def test_the_vault_keeps_a_signature_by_manifest_hash_and_a_missing_one_is_bad(
        keys: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    from modelyard.core.settings import Settings

    manifest = _model(tmp_path / "m")
    settings = Settings(signing_key=keys["alice"][0], trusted_keys=[keys["alice"][1]],
                        require_signature=["production"])
    signed = signatures.Signatures(Vault(LocalStore(tmp_path / "vault")), settings)
    assert signed.state(manifest, None).state == "unsigned"
    with pytest.raises(IntegrityError, match="unsigned, and require_signature"):
        signed.check(manifest, None, name="churn", semver="1.0.0", stage="production")
    key_id = signed.sign("churn", manifest)
    assert signed.check(manifest, key_id, name="churn", semver="1.0.0",
                        stage="production").signer == key_id
    signed.vault.store.delete(f"signatures/{manifest.sha256}.json")
    with pytest.raises(IntegrityError, match="missing from the vault"):
        signed.check(manifest, key_id, name="churn", semver="1.0.0")


def test_a_key_file_that_is_not_a_key_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(InvalidInput, match="is not an unencrypted PEM"):
        sign_manifest(str(tmp_path / "junk.pem"), "churn", Manifest({}))
    with pytest.raises(InvalidInput, match="cannot be read"):
        Keyring([str(tmp_path / "absent.pub")], [])
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        Keyring([str(tmp_path / "junk.pem")], [])
