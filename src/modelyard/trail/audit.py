"""The audit trail: append-only, hash-chained events in the vault.

::

    audit/NAME/0000000001.json    {seq, who, when, action, version, semver, from, to, reason,
    audit/NAME/0000000002.json     gates, detail, stages, prev_hash, hash}

Each event is created with the object store's atomic create-if-absent, so two writers can
never take the same sequence number: the loser re-reads the tail and retries. Each event
carries the SHA-256 of the previous one, so editing or removing an event breaks the chain.

The chain is also modelyard's compare-and-swap for stage moves: every event records
``stages`` (who holds ``staging`` and ``production`` after it), computed from the event
before it, so concurrent promotions are ordered by their sequence numbers.

Reading a trail back for the verbs (``history``, the newest event's stage holders), with the
verified copies kept on this machine, is ``history.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modelyard.core.names import T_AUDIT_HEAD
from modelyard.errors import AuditTampered, StorageError, YardError
from modelyard.store.storage import ObjectStore
from modelyard.store.vault import audit_head_key, audit_prefix, event_key

if TYPE_CHECKING:  # pragma: no cover
    from modelyard.context import Context

log = logging.getLogger("modelyard.audit")

__all__ = ["GENESIS", "AuditEvent", "AuditLog", "Auditor", "check_chain", "event_key",
           "parse_head"]

GENESIS = "0" * 64
_MAX_ATTEMPTS = 200
_SERIAL_READS = 4  # a trail this short is read one event after the other
_READERS = 8  # threads reading a longer trail (the S3 client pools 10+ connections)


@dataclass
class AuditEvent:
    """One immutable entry of a model's audit trail."""

    seq: int
    who: str
    when: str
    action: str
    name: str
    version: int | None = None
    semver: str | None = None
    from_: str | None = None
    to: str | None = None
    reason: str | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, int | None] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""
    # How ``who`` was established: "authenticated", "asserted" or "os-user" (absent on events
    # written before identities were recorded, so their hashes stay as they were).
    identity: str | None = None
    # HMAC-SHA256 of the canonical body under ``audit_key`` (absent without a key).
    sig: str | None = None

    def body(self) -> dict[str, Any]:
        """Every field but ``hash`` and ``sig``, with ``from`` spelled as stored."""
        data = asdict(self)
        data["from"] = data.pop("from_")
        data.pop("hash")
        data.pop("sig")
        if data.get("identity") is None:
            data.pop("identity")
        return data

    def canonical(self) -> bytes:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":"),
                          default=str).encode()

    def signature(self, key: bytes) -> str:
        return hmac.new(key, self.canonical(), hashlib.sha256).hexdigest()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = {**self.body(), "hash": self.hash}
        if self.sig is not None:
            data["sig"] = self.sig
        return data

    def __getitem__(self, key: str) -> Any:
        """Read access by the stored document's keys (``event["from"]``)."""
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEvent:
        known = {k: v for k, v in data.items() if k != "from"}
        known["from_"] = data.get("from")
        fields = set(cls.__dataclass_fields__)
        unknown = set(known) - fields
        if unknown:
            raise ValueError(f"unexpected field(s) {sorted(unknown)}")
        return cls(**known)


def _seq_of(key: str) -> int | None:
    stem = key.rsplit("/", 1)[-1].removesuffix(".json")
    return int(stem) if stem.isdigit() else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class AuditLog:
    """A model's audit trail in an object store."""

    def __init__(self, store: ObjectStore, name: str,
                 written: Callable[[AuditEvent], None] | None = None) -> None:
        self.store = store
        self.name = name
        self.prefix = audit_prefix(name)
        self.written = written  # told of every event this log appends

    # -- reading --------------------------------------------------------------------------
    def sequence_numbers(self) -> list[int]:
        seqs = [_seq_of(k) for k in self.store.list(self.prefix)]
        # Only direct children: another model's name can never contain '/'.
        return sorted(s for s in seqs if s is not None)

    def last_seq(self) -> int:
        seqs = self.sequence_numbers()
        return seqs[-1] if seqs else 0

    def read(self, seq: int) -> AuditEvent:
        raw = self.store.get_bytes(event_key(self.name, seq))
        try:
            return AuditEvent.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise AuditTampered(name=self.name, detail=f"event {seq} is unreadable ({exc})"
                                ) from exc

    def events(self, since: int = 1) -> list[AuditEvent]:
        """The events from ``since`` on, oldest first."""
        return self.read_many([s for s in self.sequence_numbers() if s >= since])

    def read_many(self, seqs: list[int]) -> list[AuditEvent]:
        """The events of these sequence numbers, in that order. More than a handful are read
        over a few connections at once (one object per event: hundreds of round trips
        otherwise)."""
        if len(seqs) <= _SERIAL_READS:
            return [self.read(s) for s in seqs]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            return list(pool.map(self.read, seqs))

    def last(self) -> AuditEvent | None:
        seq = self.last_seq()
        return self.read(seq) if seq else None

    # -- writing --------------------------------------------------------------------------
    def append(
        self,
        build: Callable[[AuditEvent | None], dict[str, Any]],
        *,
        who: str,
        identity: str | None = None,
        key: bytes | None = None,
    ) -> AuditEvent:
        """Append one event; ``build(previous_event)`` returns its fields.

        ``build`` is called again if another writer took the sequence number first, so the
        event it returns is always computed from the event it is chained to.
        """
        delay = 0.01
        for _ in range(_MAX_ATTEMPTS):
            prev = self.last()
            fields = build(prev)
            event = AuditEvent(
                seq=(prev.seq + 1) if prev else 1,
                who=who,
                when=now_iso(),
                name=self.name,
                prev_hash=prev.hash if prev else GENESIS,
                identity=identity,
                **fields,
            )
            event.hash = event.compute_hash()
            if key is not None:
                event.sig = event.signature(key)
            data = json.dumps(event.to_dict(), indent=1, sort_keys=True).encode()
            if self.store.put_if_absent(event_key(self.name, event.seq), data):
                self.write_head(event, key)
                if self.written is not None:
                    self.written(event)
                return event
            log.debug("audit seq %s of %s taken by another writer; retrying", event.seq,
                      self.name)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        raise StorageError(detail=f"could not append to the audit trail of {self.name!r} "
                           f"after {_MAX_ATTEMPTS} attempts")

    def write_head(self, event: AuditEvent, key: bytes | None = None) -> None:
        """The second anchor of the trail: the newest event's (seq, hash) in the vault, signed
        with the audit key when there is one. Concurrent writers may leave an older one;
        verification only needs it to name an event of the chain with that hash."""
        body: dict[str, Any] = {"seq": event.seq, "hash": event.hash, "when": event.when}
        if key is not None:
            body["sig"] = anchor_signature(key, self.name, event.seq, event.hash)
        try:
            self.store.put_bytes(audit_head_key(self.name), json.dumps(body).encode())
        except YardError as exc:
            log.warning("audit head of %s not recorded in the vault: %s", self.name,
                        exc.message)

    def vault_head(self) -> tuple[int, str] | None:
        signed = self.signed_vault_head()
        return None if signed is None else (signed[0], signed[1])

    def signed_vault_head(self) -> tuple[int, str, str | None] | None:
        """The vault's head anchor: (seq, hash, its signature or None)."""
        try:
            data = json.loads(self.store.get_bytes(audit_head_key(self.name)))
            sig = data.get("sig")
            return int(data["seq"]), str(data["hash"]), str(sig) if sig else None
        except StorageError as exc:
            if "not found" in exc.message:
                return None
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditTampered(name=self.name, detail="the vault's audit head is unreadable"
                                ) from exc

    # -- integrity ------------------------------------------------------------------------
    def verify(self, head: tuple[int, str] | None = None, *, key: bytes | None = None,
               vault_head: bool = True) -> int:
        """``verified_events``' number of events."""
        return len(self.verified_events(head, key=key, vault_head=vault_head))

    def verified_events(self, head: tuple[int, str] | None = None, *,
                        key: bytes | None = None, vault_head: bool = True,
                        head_sig: str | None = None) -> list[AuditEvent]:
        """Check the chain; return its events, oldest first. Raise AuditTampered at the first
        broken event. ``head`` is (seq, hash) of an event known from elsewhere (the
        registry), which catches removal of the newest events; the vault's own head object
        is checked the same way. With ``key`` every event's HMAC must match, which catches
        a consistent rewrite of the whole chain by someone without the key, and both anchors
        must carry the key's signature (``head_sig``: the registry's), so the newest events
        cannot be removed and the anchors rewritten to match."""
        events: list[AuditEvent] = []
        for expected, seq in enumerate(self.sequence_numbers(), start=1):
            if seq != expected:
                raise AuditTampered(
                    name=self.name, detail=f"event {expected} is missing (next found: {seq})"
                )
            event = self.read(seq)
            if event.seq != seq:
                raise AuditTampered(name=self.name,
                                    detail=f"event {seq} claims sequence number {event.seq}")
            events.append(event)
        check_chain(self.name, events, key=key)
        anchors: list[tuple[str, tuple[int, str, str | None] | None]] = [
            ("the registry's audit head", None if head is None else (*head, head_sig))]
        if vault_head:
            anchors.append(("the vault's audit head", self.signed_vault_head()))
        for where, anchor in anchors:
            if anchor is None:
                continue
            head_seq, head_hash, sig = anchor
            if key is not None and head_seq > _sealed_before(events):
                _check_anchor_signature(self.name, where, head_seq, head_hash, sig, key)
            if head_seq > len(events):
                raise AuditTampered(
                    name=self.name,
                    detail=f"event {len(events) + 1} is missing ({where} records event "
                    f"{head_seq} as written)",
                )
            if head_seq >= 1 and events[head_seq - 1].hash != head_hash:
                raise AuditTampered(
                    name=self.name,
                    detail=f"event {head_seq} does not match the hash {where} recorded",
                )
        return events


SEAL = "seal"  # the action of the event that brings an existing trail under the audit key


def _sealed_before(events: list[AuditEvent]) -> int:
    """The newest event a seal covers: events up to it may lack a signature (they were
    written before the key was set). A seal event is signed like any other and chains to
    the event before it, so its signature vouches for everything before it; it is only
    trusted once ``check_chain`` has checked its own signature (it runs first there)."""
    covered = 0
    for event in events:
        if event.action == SEAL and event.sig is not None:
            covered = max(covered, event.seq - 1)
    return covered


def check_chain(name: str, events: list[AuditEvent], *, key: bytes | None = None) -> None:
    """Raise AuditTampered at the first event of ``events`` (a whole trail, oldest first)
    that is out of sequence, modified or not chained to the one before; with ``key``, also
    at the first event whose HMAC does not match."""
    prev_hash = GENESIS
    sealed = _sealed_before(events) if key is not None else 0
    for expected, event in enumerate(events, start=1):
        if event.seq != expected:
            raise AuditTampered(name=name, detail=f"event {expected} is missing "
                                f"(next found: {event.seq})")
        if event.compute_hash() != event.hash:
            raise AuditTampered(name=name, detail=f"event {expected} was modified (hash mismatch)")
        if event.prev_hash != prev_hash:
            raise AuditTampered(name=name, detail=f"event {expected} is not chained to event "
                                f"{expected - 1} (prev_hash mismatch)")
        if key is not None and expected > sealed:
            if event.sig is None:
                raise AuditTampered(name=name, detail=f"event {expected} is not signed with "
                                    "the audit key (written before the key was set: seal the "
                                    f"trail with `modelyard history {name} --sign-existing`; "
                                    "or rewritten)")
            if not hmac.compare_digest(event.sig, event.signature(key)):
                raise AuditTampered(name=name, detail=f"event {expected} does not carry the "
                                    "audit key's signature (rewritten)")
        prev_hash = event.hash


def parse_head(value: str | None) -> tuple[int, str] | None:
    """``"12:ab34..."`` (the registered model's audit head tag, ``":sig"`` after it when the
    trail has an audit key) -> (12, "ab34...")."""
    parsed = parse_signed_head(value)
    return None if parsed is None else (parsed[0], parsed[1])


def parse_signed_head(value: str | None) -> tuple[int, str, str | None] | None:
    """``"12:ab34...[:sig]"`` -> (12, "ab34...", sig or None)."""
    if not value:
        return None
    seq, _, rest = value.partition(":")
    digest, _, sig = rest.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        return None
    return int(seq), digest, sig or None


def anchor_signature(key: bytes, name: str, seq: int, digest: str) -> str:
    """The HMAC a head anchor carries under the audit key: an anchor naming an event (the
    registry's tag, the vault's HEAD.json) cannot be written by someone without the key."""
    message = f"modelyard audit head\n{name}\n{seq}\n{digest}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_tag(name: str, event: AuditEvent, key: bytes | None) -> str:
    """The registry's audit head tag for ``event``: ``seq:hash``, signed with the key."""
    tag = f"{event.seq}:{event.hash}"
    return f"{tag}:{anchor_signature(key, name, event.seq, event.hash)}" if key else tag


def _check_anchor_signature(name: str, where: str, seq: int, digest: str, sig: str | None,
                            key: bytes) -> None:
    if sig is None:
        raise AuditTampered(name=name, detail=f"{where} is not signed with the audit key "
                            "(written without it, or rewritten)")
    if not hmac.compare_digest(sig, anchor_signature(key, name, seq, digest)):
        raise AuditTampered(name=name, detail=f"{where} does not carry the audit key's "
                            "signature (rewritten)")


class Auditor:
    """Appends events to a model's trail and keeps the registry's head tag current; reads
    trails back through ``history.History``."""

    def __init__(self, ctx: Context) -> None:
        # history.py builds on this module's chain: imported here, not at the top.
        from modelyard.trail.binding import Binding
        from modelyard.trail.history import History

        self.ctx = ctx
        self.tracking = ctx.tracking
        self.kept = History(self)
        self.binding = Binding(ctx)

    def log(self, name: str) -> AuditLog:
        """The model's trail; every event appended through it is remembered on this machine."""
        return AuditLog(self.ctx.vault.store, name,
                        written=lambda event: self.kept.remember(name, event))

    @property
    def key(self) -> bytes | None:
        """The HMAC key (``audit_key`` / ``MODELYARD_AUDIT_KEY``); never logged or shown."""
        secret = self.ctx.settings.audit_key
        return secret.get_secret_value().encode() if secret is not None else None

    def append(self, name: str, build: Callable[[AuditEvent | None], dict[str, Any]],
               *, registry_head: bool = True) -> AuditEvent:
        """Append an event; then (unless ``registry_head=False``: the caller sends
        ``write_registry_head`` itself, beside its other registry writes) record it as the
        registry's head."""
        trail = self.log(name)
        if not trail.last_seq():  # a first event: never into a vault the model is not from
            self.binding.check_model(name)
        identity = self.ctx.identity
        event = trail.append(build, who=identity.user, identity=identity.audit_mark,
                             key=self.key)
        if registry_head:
            self.write_registry_head(name, event)
        if event.seq == 1:
            self.binding.bind(name)
        return event

    def write_registry_head(self, name: str, event: AuditEvent) -> None:
        """The registry remembers the newest event too: removing events at the end of the
        trail is then detected as well. Concurrent writers may set the tag out of order, so
        each one re-reads the chain after writing and sets the tag again until it names the
        newest event: the last writer to check leaves it right. Never raises a YardError."""
        trail = self.log(name)
        try:
            head = event
            for _ in range(50):  # the lean REST writer on a server (no mlflow import)
                self.ctx.writes.set_model_tag(name, T_AUDIT_HEAD, head_tag(name, head, self.key))
                newest = trail.last_seq()  # a listing; the event is read only if newer
                if newest <= head.seq:
                    break
                head = trail.read(newest)
        except YardError as exc:
            log.warning("audit head of %s not recorded in the registry: %s", name, exc.message)

    def record(self, name: str, action: str, **fields: Any) -> AuditEvent:
        """Append an event that moves no stage (its ``stages`` copy the previous event's)."""

        def build(prev: AuditEvent | None) -> dict[str, Any]:
            return {"action": action, "stages": dict(prev.stages) if prev else {}, **fields}

        return self.append(name, build)

    def adopt_trail(self, name: str, events: list[AuditEvent]) -> int:
        """Write a verified trail from elsewhere (an export, a backup) verbatim into this
        model's trail when it has none yet; returns the number of events written (0 when the
        trail here already has events: it is kept, never mixed)."""
        check_chain(name, events)
        trail = self.log(name)
        if not events or trail.last_seq():
            return 0
        for event in events:
            data = json.dumps(event.to_dict(), indent=1, sort_keys=True).encode()
            if not trail.store.put_if_absent(event_key(name, event.seq), data):
                raise StorageError(detail=f"the audit trail of {name!r} was written by another "
                                   "writer while it was being restored")
        head = events[-1]
        try:
            self.tracking.set_model_tag(name, T_AUDIT_HEAD, head_tag(name, head, self.key))
        except YardError as exc:
            log.warning("audit head of %s not recorded in the registry: %s", name, exc.message)
        self.binding.bind(name)
        return len(events)

    # -- reading back (history.py) ---------------------------------------------------------
    def history(self, name: str, version: str | int | None = None, *,
                verify: bool = False) -> list[AuditEvent]:
        """``History.history``: the model's trail, oldest first (checked with ``verify``)."""
        return self.kept.history(name, version, verify=verify)

    def newest_stages(self, name: str, head: tuple[int, str] | None
                      ) -> dict[str, int | None] | None:
        """``History.newest_stages``: who the newest event says holds each stage."""
        return self.kept.newest_stages(name, head)
