"""locksmithctl's side of expiring holders (LOCKSMITHD_LOCK_TTL): what `status` says about leases, and the
judging every writing command does first, as any live agent would.

The admin's own locks never expire: `lock ID` withdraws any lease ID declared before it takes the slot, and
`unlock ID` withdraws it after (a holder that left has nothing to keep alive).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TextIO

from locksmith.kv import KVError
from locksmith.leases import HolderLeases
from locksmith.lockstore import LockStore
from locksmith.protocol.semaphore import SemaphoreError
from locksmith.safe_text import outside_text
from locksmith.settings.duration import format_duration


@dataclass(frozen=True, slots=True)
class LeaseView:
    """Each holder's declared TTL, and which of them lapsed (both empty when no holder declared one)."""

    ttls: dict[str, int] = field(default_factory=dict)
    expired: frozenset[str] = frozenset()

    def as_json(self, holder: str) -> dict[str, object]:
        return {"lease_ttl_seconds": self.ttls.get(holder), "lease_expired": holder in self.expired}


async def view(store: LockStore) -> tuple[LeaseView, str | None]:
    """Read only. A store that cannot say leaves the view empty and returns why (status still prints)."""
    try:
        _snapshot, judgement = await HolderLeases(store).judge()
    except (KVError, SemaphoreError) as exc:
        return LeaseView(), f"holder leases unknown: {outside_text(str(exc))}"
    return LeaseView(dict(judgement.ttls), frozenset(judgement.expired)), None


def expired_warnings(leases: LeaseView) -> list[str]:
    return [
        f"holder {holder} has an expired lease (TTL {_ttl(leases.ttls.get(holder))}): its agent stopped renewing; "
        "a waiting agent or the next 'locksmithctl lock', 'unlock' or 'set-max' removes it"
        for holder in sorted(leases.expired)
    ]


async def free_expired(store: LockStore, err: TextIO) -> tuple[str, ...]:
    """Before a write: remove holders whose lease lapsed, saying so on `err`. Judging is not the command:
    when the store cannot be judged, the command itself meets the same store and reports it."""
    try:
        freed = await HolderLeases(store).free_expired()
    except (KVError, SemaphoreError):
        return ()
    for holder in freed.holders:
        print(f"Removed expired holder {holder}: its lease lapsed (its agent stopped renewing)", file=err)
    return freed.holders


async def forget(store: LockStore, holder: str) -> None:
    """End any lease `holder` declared; a leftover declaration is harmless, so a failure here is not fatal."""
    with contextlib.suppress(KVError):
        await HolderLeases(store).withdraw(holder)


def _ttl(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    return format_duration(timedelta(seconds=seconds))
