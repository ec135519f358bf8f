"""Signed versions: who produced a version, proved before anything of it is deserialised.

A signature is an OpenSSF Model Signing bundle (the ``model-signing`` package: a Sigstore
bundle holding a DSSE envelope whose in-toto statement lists every file's SHA-256), made
with an elliptic-curve key offline. It covers exactly the files the version's manifest
covers, with the manifest's own digests: signing and verifying read no file again (the
manifest check already hashed each one once), and ``model_signing verify key`` accepts the
bundle against a folder holding the version's files.

It is a vault object keyed by the manifest hash (``vault.signature_key``), so it is backed up,
exported, imported and restored with the manifest. The version's ``modelyard.signer`` tag
names the key id (SHA-256 of the PEM public key, what the bundle's key hint holds): a
version tagged signed whose signature is gone is refused, not read as unsigned.

A signature is accepted when the key it names is in ``trusted_keys`` (or ``retired_keys``:
still trusted, reported as retired), it verifies under that key, and the files it lists are
the manifest's, path for path and digest for digest (a signature of another version is
refused). The private key is only ever read from its file; nothing here shows it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelyard.errors import IntegrityError, InvalidInput, StorageError
from modelyard.store.vault import Manifest, Vault, signature_key

SIGNED, UNSIGNED, BAD = "signed", "unsigned", "bad signature"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # a bundle lists one digest per file: far below this


@dataclass(frozen=True)
class SignatureState:
    """What a version's signature says: ``state`` is ``signed``, ``unsigned`` or ``bad
    signature``; ``signer`` the key id; ``retired`` when that key is a retired one."""

    state: str
    signer: str | None = None
    retired: bool = False
    detail: str = ""

    @property
    def trusted(self) -> bool:
        return self.state == SIGNED

    def describe(self) -> str:
        """One line for ``verify`` and ``details``."""
        if self.state == SIGNED:
            return f"signed by {short_id(self.signer)}" + (" (retired key)" if self.retired
                                                           else "")
        if self.state == BAD:
            return f"bad signature: {self.detail}"
        return "unsigned"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def short_id(key_id: str | None) -> str:
    return (key_id or "?")[:16]


def key_id_of(public_key: Any) -> str:
    """The key id model-signing writes into a bundle's key hint: SHA-256 of the PEM."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(encoding=serialization.Encoding.PEM,
                                  format=serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _read_key_file(path: str, what: str) -> bytes:
    file = Path(path)
    try:
        if file.stat().st_size > 1024 * 1024:
            raise InvalidInput(f"{what} {path} is not a PEM key (too large)")
        return file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


@functools.lru_cache(maxsize=64)
def _public_key(path: str, what: str, mtime_ns: int) -> tuple[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(_read_key_file(path, what))
    except ValueError:
        raise InvalidInput(f"{what} {path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(f"{what} {path} is not an elliptic-curve public key")
    return key_id_of(key), key


class Keyring:
    """The public keys of ``trusted_keys`` and ``retired_keys``, by key id."""

    def __init__(self, trusted: Iterable[str], retired: Iterable[str]) -> None:
        self.keys: dict[str, tuple[str, bool]] = {}  # key id -> (path, retired)
        for paths, what, retired_key in ((retired, "retired_keys:", True),
                                         (trusted, "trusted_keys:", False)):
            for path in paths:
                try:
                    mtime = Path(path).stat().st_mtime_ns
                except OSError:
                    mtime = 0
                key_id, _ = _public_key(path, what, mtime)
                self.keys[key_id] = (path, retired_key)  # trusted wins over retired

    def find(self, key_id: str) -> tuple[str, bool] | None:
        return self.keys.get(key_id)

    @property
    def retired_ids(self) -> set[str]:
        return {key_id for key_id, (_, retired) in self.keys.items() if retired}


def _require_model_signing() -> None:
    """One line, not a traceback, when the signing extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("model_signing") is None:
        raise InvalidInput("signed versions need model-signing: pip install "
                           "'modelyard[signing]'")


def _statement_manifest(name: str, manifest: Manifest) -> Any:
    """model-signing's manifest of the files ``manifest`` lists, with its digests."""
    # The digest type lives only in model-signing's private hashing module; the public API
    # builds it by hashing a folder, which would read every file a second time.
    from model_signing import manifest as ms_manifest
    from model_signing._hashing import hashing as ms_hashing

    items = [ms_manifest.FileManifestItem(path=PurePosixPath(rel),
                                          digest=ms_hashing.Digest("sha256", bytes.fromhex(oid)))
             for rel, (oid, _) in sorted(manifest.files.items())]
    # The serialization model-signing's own file hashing records ("files", SHA-256, no
    # links): its verifier re-hashes a folder the same way. The class is private to it; the
    # public hashing config can only produce it by reading every file again.
    serialization = ms_manifest._FileSerialization("sha256", allow_symlinks=False)
    return ms_manifest.Manifest(name, items, serialization)


def sign_manifest(private_key: str, name: str, manifest: Manifest) -> tuple[bytes, str]:
    """The bundle signing ``manifest`` with the EC private key in the PEM file
    ``private_key``, and the key id. The key's content never reaches a message."""
    # model-signing's key signer and payload are what its public ``signing.Config`` uses
    # after hashing the folder itself; called directly they sign the digests already taken.
    _require_model_signing()
    from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing

    _read_key_file(private_key, "signing_key")  # one line if the file is missing
    try:
        signer = sign_ec_key.Signer(Path(private_key))
    except (ValueError, TypeError):
        raise InvalidInput(f"signing_key {private_key} is not an unencrypted PEM "
                           "elliptic-curve private key (P-256, P-384 or P-521)") from None
    signature = signer.sign(signing.Payload(_statement_manifest(name, manifest)))
    if not isinstance(signature, sign_sigstore_pb.Signature):  # pragma: no cover
        raise TypeError("model-signing's key signer made another kind of signature")
    # What ``signature.write(path)`` writes, without a file in between.
    return signature.bundle.to_json().encode(), signer_of(private_key)


def signer_of(private_key: str) -> str:
    """The key id of the private key in the PEM file ``private_key``."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(_read_key_file(private_key, "signing_key"),
                                                 None)
    except (ValueError, TypeError):
        raise InvalidInput(f"signing_key {private_key} is not an unencrypted PEM private "
                           "key") from None
    return key_id_of(key.public_key())


def bundle_key_id(data: bytes) -> str | None:
    """The key id a bundle names (its key hint), without verifying anything."""
    try:
        body = json.loads(data)
        hint = body["verificationMaterial"]["publicKey"]["hint"]
    except (ValueError, KeyError, TypeError):
        return None
    return hint if isinstance(hint, str) and len(hint) == 64 else None


def _bundle(data: bytes) -> Any:
    """The bundle in ``data``, parsed as model-signing's ``Signature.read`` parses a file."""
    from sigstore_models.bundle import v1 as bundle_pb

    parsed = json.loads(data)
    material = parsed["verificationMaterial"]
    material.setdefault("tlogEntries", [])
    if "publicKey" in material:
        material["publicKey"].setdefault("hint", None)
        for key in ("rawBytes", "keyDetails"):
            material["publicKey"].pop(key, None)
    return bundle_pb.Bundle.from_dict(parsed)


def verify_bundle(data: bytes, manifest: Manifest, keyring: Keyring) -> SignatureState:
    """Check a bundle against the keyring and the manifest; never raises for a bad one."""
    key_id = bundle_key_id(data)
    if key_id is None:
        return SignatureState(BAD, detail="the signature is unreadable or names no key")
    found = keyring.find(key_id)
    if found is None:
        return SignatureState(BAD, key_id, detail=f"signed by {short_id(key_id)}, a key not in "
                              "trusted_keys")
    path, retired = found
    _require_model_signing()
    # The verifier over a payload of digests already checked against the vault has no public
    # entry point (``verifying.Config`` hashes a folder again): the private key verifier.
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    try:
        signature = sign_sigstore_pb.Signature(_bundle(data))
        signed = sign_ec_key.Verifier(Path(path)).verify(signature)
    except Exception:  # noqa: BLE001 - any failure of a foreign bundle is a bad one
        return SignatureState(BAD, key_id, retired, "the signature does not verify under "
                              f"key {short_id(key_id)}")
    listed = {d.identifier: (d.digest.algorithm, d.digest.digest_hex)
              for d in signed.resource_descriptors()}
    ours = {rel: ("sha256", oid) for rel, (oid, _) in manifest.files.items()}
    if listed != ours:
        differ = sorted(set(listed.items()) ^ set(ours.items()))
        return SignatureState(BAD, key_id, retired, "the signature covers other files than "
                              f"the manifest's (e.g. {differ[0][0]})")
    return SignatureState(SIGNED, key_id, retired)


class Signatures:
    """Signing versions and checking their signatures, in the vault ``vault``."""

    def __init__(self, vault: Vault, settings: Any) -> None:
        self.vault = vault
        self.settings = settings

    @functools.cached_property
    def keyring(self) -> Keyring:
        return Keyring(self.settings.trusted_keys, self.settings.retired_keys)

    @property
    def signing(self) -> bool:
        return bool(self.settings.signing_key)

    def sign(self, name: str, manifest: Manifest) -> str:
        """Sign ``manifest`` with ``signing_key`` and store the bundle; the key id."""
        data, key_id = sign_manifest(self.settings.signing_key, name, manifest)
        self.put(manifest.sha256, data)
        return key_id

    def make(self, name: str, manifest: Manifest) -> tuple[bytes, str] | None:
        """The bundle and key id for ``manifest`` with ``signing_key`` (None: no key)."""
        if not self.signing:
            return None
        return sign_manifest(self.settings.signing_key, name, manifest)

    def put(self, manifest_sha: str, data: bytes) -> None:
        self.vault.store.put_bytes(signature_key(manifest_sha), data)

    def bundle(self, manifest_sha: str) -> bytes | None:
        """The stored bundle of a manifest (None: there is none)."""
        try:
            return self.vault.store.get_bytes(signature_key(manifest_sha))
        except StorageError as exc:
            if "not found" in exc.message:
                return None
            raise

    def state(self, manifest: Manifest, tagged: str | None) -> SignatureState:
        """The signature state of a version whose manifest is ``manifest`` and whose
        ``modelyard.signer`` tag is ``tagged``. Untagged versions read the vault only when
        keys are configured (a signature shared with a signed twin still counts)."""
        if not tagged and not self.keyring.keys:
            return SignatureState(UNSIGNED)
        data = self.bundle(manifest.sha256)
        if data is None:
            if tagged:
                return SignatureState(BAD, tagged, detail=f"the signature by "
                                      f"{short_id(tagged)} is missing from the vault")
            return SignatureState(UNSIGNED)
        return verify_bundle(data, manifest, self.keyring)

    def state_of(self, name: str, version: int, manifest_sha: str | None, tagged: str | None,
                 semver: str) -> SignatureState:
        """``state`` of a version given by its tags (the vault's manifest is read and checked
        against ``manifest_sha``); a version with no manifest is unsigned."""
        if not manifest_sha:
            return SignatureState(BAD, tagged, detail="no manifest") if tagged else \
                SignatureState(UNSIGNED)
        if not tagged and not self.keyring.keys:
            return SignatureState(UNSIGNED)
        return self.state(self.vault.read_manifest(name, version, manifest_sha, semver), tagged)

    def carried(self, data: bytes | str | None, manifest: Manifest, tagged: str | None, *,
                name: str, semver: str) -> bytes | None:
        """A signature a version brings from elsewhere (an export, the backup store), checked
        before any of its files is fetched: the bundle to keep (None: unsigned), or
        ``IntegrityError`` when it is bad, or missing while the version is tagged signed."""
        if data is None:
            if tagged:
                raise IntegrityError(name=name, semver=semver, detail=f"the signature by "
                                     f"{short_id(tagged)} is missing")
            return None
        data = data.encode() if isinstance(data, str) else data
        state = verify_bundle(data, manifest, self.keyring)
        if state.state == BAD:
            raise IntegrityError(name=name, semver=semver, detail=state.detail)
        return data

    def check(self, manifest: Manifest, tagged: str | None, *, name: str, semver: str,
              stage: str | None = None) -> SignatureState:
        """``state``, refused like a tampered file when bad (``IntegrityError``), or when
        unsigned for a version holding a stage listed in ``require_signature``."""
        state = self.state(manifest, tagged)
        if state.state == BAD:
            raise IntegrityError(name=name, semver=semver, detail=state.detail)
        if state.state == UNSIGNED and stage and stage in self.settings.require_signature:
            raise IntegrityError(name=name, semver=semver, detail=f"it is unsigned, and "
                                 f"require_signature covers {stage}")
        return state
