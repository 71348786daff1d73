"""Expiring holders (opt-in, LOCKSMITHD_LOCK_TTL): the two keys a holder keeps beside the semaphore.

    <semaphore key>-leases/<id>   the declaration, kept for as long as `id` may hold: {"ttl_seconds": N}
    <semaphore key>-alive/<id>    the same bytes, written with a store TTL of N seconds (a v3 lease or a v2
                                  key TTL) and rewritten every N/3 s while the agent runs

A holder is *expired* when its declaration is there and its alive key is gone: its agent stopped renewing
(died for good, or was cut off longer than N). Only such a holder may be removed from the semaphore, and
only by a compare-and-swap at the revision it was judged at. A holder without a declaration — a Go host, or
one of ours with the TTL off — is never expired: nothing here changes what the Go tool sees, except that an
expired holder's id leaves the JSON exactly as an admin's `unlock` would remove it.

Order that keeps the judgement sound: a host writes its declaration and alive key *before* it adds itself to
the semaphore, and removes them only *after* it left it. A judge reads the semaphore first, then the keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from locksmith.protocol.bounded_json import json_object

MAX_LEASE_BYTES = 128
MIN_TTL_SECONDS = 2  # etcd's own floor for a lease (with its default election timing) is about that
MAX_TTL_SECONDS = 7 * 24 * 3600
# A judge looks again this often while a declared holder may expire: a quarter of its TTL, so a dead
# holder is found within 1.25 TTL (plus a round trip), bounded to stay cheap and responsive.
_RECHECK_FRACTION = 0.25
_RECHECK_MIN = 0.5
_RECHECK_MAX = 30.0
# Only ids that are safe as one key segment can have leases (machine ids are 32 hex digits).
KEY_SAFE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


def leases_prefix(semaphore_key: str) -> str:
    return f"{semaphore_key}-leases/"


def alive_prefix(semaphore_key: str) -> str:
    return f"{semaphore_key}-alive/"


def lease_key(semaphore_key: str, holder: str) -> str | None:
    """The declaration's key; None for an id that cannot have one (never expired)."""
    return f"{leases_prefix(semaphore_key)}{holder}" if KEY_SAFE_ID.fullmatch(holder) else None


def alive_key(semaphore_key: str, holder: str) -> str | None:
    return f"{alive_prefix(semaphore_key)}{holder}" if KEY_SAFE_ID.fullmatch(holder) else None


@dataclass(frozen=True, slots=True)
class Lease:
    ttl_seconds: int

    def encode(self) -> bytes:
        return json.dumps({"ttl_seconds": self.ttl_seconds}, separators=(",", ":")).encode()

    @property
    def recheck_seconds(self) -> float:
        return min(max(self.ttl_seconds * _RECHECK_FRACTION, _RECHECK_MIN), _RECHECK_MAX)

    @property
    def renew_seconds(self) -> float:
        """How often the holder rewrites its alive key: three chances before it lapses."""
        return self.ttl_seconds / 3


def check_ttl(seconds: float) -> int:
    """A configured TTL as the whole seconds both etcd APIs take; ValueError naming the bounds."""
    whole = int(-(-seconds // 1))  # round up: never shorter than asked
    if not MIN_TTL_SECONDS <= whole <= MAX_TTL_SECONDS:
        raise ValueError(f"must be between {MIN_TTL_SECONDS}s and {MAX_TTL_SECONDS // 3600}h (or 0 for off)")
    return whole


def decode(raw: bytes) -> Lease | None:
    """A stored declaration; None for anything we do not trust, which then counts as no declaration
    (the holder is never expired: when unsure, nobody loses a slot)."""
    data = json_object(raw, MAX_LEASE_BYTES)
    if isinstance(data, str):
        return None
    ttl = data.get("ttl_seconds")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
        return None
    return Lease(ttl)


@dataclass(frozen=True, slots=True)
class Judgement:
    """Which holders expired, when to look again for those that still may (None: no declared holder), and
    each declared holder's TTL (for display)."""

    expired: tuple[str, ...]
    recheck_seconds: float | None
    ttls: tuple[tuple[str, int], ...] = ()


def judge(holders: tuple[str, ...], declared: dict[str, bytes | None], alive: set[str]) -> Judgement:
    """Pure: `declared` maps each holder to its declaration's bytes (None: absent); `alive` holds the
    holders whose alive key is present."""
    expired: list[str] = []
    ttls: list[tuple[str, int]] = []
    recheck: float | None = None
    for holder in holders:
        raw = declared.get(holder)
        lease = decode(raw) if raw is not None else None
        if lease is None:
            continue
        ttls.append((holder, lease.ttl_seconds))
        if holder in alive:
            recheck = lease.recheck_seconds if recheck is None else min(recheck, lease.recheck_seconds)
        else:
            expired.append(holder)
    return Judgement(tuple(expired), recheck, tuple(ttls))
