"""The waiting line beside the semaphore: who waits for a slot, in the order they came.

    <semaphore key>-line/<id>   one key per waiting host, written with a store TTL (a v3 lease) that its
                                agent renews while it waits; the value is the time it joined (for people)

The keys' create revisions are the order. A waiter tries the semaphore only when nobody created a key
before its own, and otherwise watches the key just ahead of it: a release wakes one waiter, not every
one, and the next in line is woken when the one ahead takes its slot (its key is deleted in the same
transaction) or gives up. A waiter that died leaves with its lease; before that, once it is first, the
next in line passes it when a slot stays free a few seconds (strategies/etcd_lock.py).

The line only orders our agents; it grants nothing. A slot is still taken by compare-and-swap on the
semaphore's Go-format JSON, so a Go host that never looks at the line competes as it always did, and
never more than `max` hold.
"""

from __future__ import annotations

from datetime import UTC, datetime

from locksmith.protocol.holder_lease import KEY_SAFE_ID

# Only what a waiter that died costs once it is first in line and the next one passes it (etcd_lock's
# grace), or what a crashed fleet leaves behind: a minute, renewed every 20 s, keeps renewals cheap.
LINE_TTL_SECONDS = 60


def line_prefix(semaphore_key: str) -> str:
    return f"{semaphore_key}-line/"


def line_key(semaphore_key: str, holder: str) -> str | None:
    """The waiter's key; None for an id that cannot be one key segment (it races as the Go tool does)."""
    return f"{line_prefix(semaphore_key)}{holder}" if KEY_SAFE_ID.fullmatch(holder) else None


def joined_value(now: datetime) -> bytes:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
