"""Which arm answers a request: weighted, sticky by a key, with an optional canary ramp.

A routing key (the ``X-Routing-Key`` header, or a named field of the request) is hashed to a
point in [0, 1); arms own consecutive slices of that interval in proportion to their weights,
so the same key always lands on the same arm while the weights stay put. A canary ramp moves
its arm's weight linearly from a start to an end percentage over a duration; its slice comes
first, so as it grows it only takes keys over, it never hands them back.

Replicas agree on both without talking to each other: the key's point is an unkeyed BLAKE2b
hash of its UTF-8 bytes (never Python's ``hash()``, which is salted per process), and a ramp's
start is one moment every replica reads from the same place (``--canary-start``, or the record
the first replica leaves in the vault: ``ramp_id`` names it), not each process's start.

>>> router = Router([Arm("production", 90), Arm("staging", 10)])
>>> router.pick("customer-42")
'production'
>>> CanaryRamp.parse("staging:5->50 over 10m").weight_at(300)
27.5
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelyard.errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CANARY = re.compile(
    r"^\s*(?P<ref>[^:=\s]+)\s*:\s*(?P<start>\d+(?:\.\d+)?)\s*->\s*(?P<end>\d+(?:\.\d+)?)"
    r"\s+over\s+(?P<duration>\S+)\s*$"
)


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``1h``, ``2d`` (a bare number is seconds)."""
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30s, 10m, 1h or 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_moment(text: str) -> float:
    """Epoch seconds from an ISO 8601 date-time (UTC unless it names its zone) or a number of
    epoch seconds. Not a duration ago: replicas started apart would read different moments."""
    value = str(text).strip()
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if not (math.isfinite(number) and 0 <= number < 253402300800):  # before year 10000
            raise InvalidInput(f"invalid moment {text!r:.60}: epoch seconds out of range")
        return number
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"invalid moment {text!r:.60}: use an ISO date-time, e.g. "
                           "2026-05-01T09:00:00Z, or epoch seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


MAX_WEIGHT = 1_000_000.0  # an arm's weight: any finite number from 0 to this; normalised


@dataclass(frozen=True)
class Arm:
    """A version reference with its share of traffic (0 to ``MAX_WEIGHT``; normalised)."""

    ref: str
    weight: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and 0 <= self.weight <= MAX_WEIGHT):
            raise InvalidInput(f"invalid weight {self.weight!r} for arm {self.ref!r}: use a "
                               f"number from 0 to {MAX_WEIGHT:g}")

    @classmethod
    def parse(cls, text: str) -> Arm:
        """``production=90`` -> Arm("production", 90.0)."""
        ref, sep, weight = str(text).partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not ref.strip() or value < 0:
            raise InvalidInput(f"invalid arm {text!r}: use REF=WEIGHT, e.g. staging=10")
        return cls(ref.strip(), value)


@dataclass(frozen=True)
class CanaryRamp:
    """A canary arm whose weight moves from ``start`` to ``end`` percent over ``duration``."""

    ref: str
    start: float
    end: float
    duration: float  # seconds

    @classmethod
    def parse(cls, text: str) -> CanaryRamp:
        """``staging:5->50 over 10m``."""
        match = _CANARY.match(str(text))
        if not match:
            raise InvalidInput(
                f"invalid canary {text!r}: use REF:START->END over DURATION, "
                "e.g. staging:5->50 over 10m"
            )
        start, end = float(match["start"]), float(match["end"])
        if not (0 <= start <= 100 and 0 <= end <= 100):
            raise InvalidInput(f"invalid canary {text!r}: percentages run from 0 to 100")
        return cls(match["ref"], start, end, parse_duration(match["duration"]))

    def weight_at(self, elapsed: float) -> float:
        """The canary's percentage ``elapsed`` seconds after the ramp began."""
        if self.duration <= 0 or elapsed >= self.duration:
            return self.end
        progress = max(0.0, elapsed) / self.duration
        return self.start + (self.end - self.start) * progress


def ramp_id(name: str, main: str, ramp: CanaryRamp, version: int) -> str:
    """The name of one ramp: the model, the main arm, the canary version and the ramp's shape.

    Replicas serving the same ramp of the same canary version compute the same id, so they
    read one recorded start; a new canary version (or a new shape) is a new ramp from its
    start percentage."""
    text = "\n".join([name, main, ramp.ref, str(int(version)), repr(float(ramp.start)),
                      repr(float(ramp.end)), repr(float(ramp.duration))])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def key_point(key: str) -> float:
    """A stable point in [0, 1) for a routing key (the same on every replica)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Router:
    """Picks an arm's reference for a request; sticky when the request carries a key."""

    def __init__(
        self,
        arms: Iterable[Arm],
        *,
        canary: CanaryRamp | None = None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._arms = list(arms)
        if not self._arms:
            raise InvalidInput("at least one arm is needed")
        refs = [a.ref for a in self._arms]
        if len(set(refs)) != len(refs):
            raise InvalidInput(f"an arm is named twice: {refs}")
        if canary is not None:
            if len(self._arms) != 1:
                raise InvalidInput("a canary ramps against one main arm; drop the other arms")
            if canary.ref == self._arms[0].ref:
                raise InvalidInput(f"the canary {canary.ref!r} is the main arm itself")
        if canary is None and sum(a.weight for a in self._arms) <= 0:
            raise InvalidInput("arm weights add up to zero")
        self.canary = canary
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at
        self._rng = rng or random.Random()
        self._fixed = self._cumulative([a.weight for a in self._arms]) if canary is None else None

    @property
    def refs(self) -> list[str]:
        """Arm references, canary first."""
        main = [a.ref for a in self._arms]
        return [self.canary.ref, *main] if self.canary else main

    def anchor(self, started_at: float) -> None:
        """Measure the canary ramp from ``started_at`` (epoch seconds) from now on."""
        self.started_at = float(started_at)

    def weights(self) -> dict[str, float]:
        """Current share of each arm, in percent."""
        if self.canary is not None:
            share = self.canary.weight_at(self._clock() - self.started_at)
            return {self.canary.ref: share, self._arms[0].ref: 100.0 - share}
        total = sum(a.weight for a in self._arms)
        return {a.ref: 100.0 * a.weight / total for a in self._arms}

    def pick(self, key: str | None = None) -> str:
        """The arm for a request: by the key's hash when given, at random otherwise."""
        point = key_point(key) if key is not None else self._rng.random()
        if self._fixed is not None:
            bounds = self._fixed
        else:
            bounds = self._cumulative(list(self.weights().values()))
        refs = self.refs
        for ref, bound in zip(refs, bounds, strict=True):
            if point < bound:
                return ref
        return refs[-1]

    @staticmethod
    def _cumulative(weights: list[float]) -> list[float]:
        total = sum(weights) or 1.0
        bounds, running = [], 0.0
        for weight in weights:
            running += weight / total
            bounds.append(running)
        return bounds
