"""The waiting line beside the semaphore: who waits for a slot, in the order they came.

    <semaphore key>-line/<id>   one key per waiting host, written with a store TTL (a v3 lease) that its
                                agent renews while it waits; the value is the time it joined (for people)

The keys' create revisions are the order. Only the first `WINDOW + 1` waiters follow the semaphore; a
waiter further back watches the key `WINDOW` places ahead of it, so each waiter that leaves the line
wakes exactly one waiter behind it, and a release wakes only the few at the front. A waiter following
the semaphore knows who is ahead of it and tries once a slot is free and all of them have taken theirs
(`may_try`): one compare-and-swap at a time, each started by the change that ended the one before,
instead of a crowd whose conflicts cost every writer (releases included) a round trip and a back-off.
A waiter ahead that died leaves with its lease; before that, a slot it leaves free for a few seconds is
taken by those behind it, one grace period more per place beyond the free slots (`jump_after`).

Giving slots back is one write for many hosts. A host releasing tries one compare-and-swap that
takes its own id out of the holders and any id that asked to leave meanwhile, and hands every slot
then free to the first hosts in line, in order (`settle`), when the fleet is not paced. A host handed a
slot takes it by deleting its own line key while it is unchanged: no write on the semaphore, whose
chain of compare-and-swaps is what bounds a crowd. A handed slot left untaken for a grace period (its
host died or stalled while waiting) is taken back by the next host in line, in one write that frees
it and deletes that line key while it is still unchanged; the two deletes race on one key, so exactly
one of them wins. When the semaphore changed before a release, the same transaction instead writes
the host's key under `<semaphore key>-leaving/` (no lease: a host that dies after asking still
leaves), and whichever release writes next settles it too: while other hosts hold slots, the host
follows the semaphore a moment for that before it tries again. A host's own lock deletes its leaving key,
so a stale one never releases a later hold. Every key a write acts on is compared unchanged in it.

    <semaphore key>-leaving/<id>   a holder asking to give its slot back; the value is when it asked

The Go-format JSON stays the only authority: a Go host that never looks at these keys takes a slot
that is free and gives its own back as it always did, and never more than `max` hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from locksmith.protocol.holder_lease import KEY_SAFE_ID
from locksmith.protocol.semaphore import Semaphore

# Only what a waiter that died costs once it is first in line and the next one passes it (etcd_lock's
# grace), or what a crashed fleet leaves behind: a minute, renewed every 20 s, keeps renewals cheap.
LINE_TTL_SECONDS = 60
# A free slot that the waiters ahead leave untaken this long (no write at all meanwhile): one of them is
# stalled or gone. A live waiter takes a free slot within milliseconds.
LINE_JUMP_GRACE_SECONDS = 3.0
# With a waiting line the writers are the one waiter whose turn it is and hosts giving a slot back, not
# a crowd: a long back-off after a compare-and-swap conflict only idles the key (measured: an acquirer
# lost 2 s behind ten releasers each waiting up to 0.5 s), so the window stays a few milliseconds.
LINE_CONFLICT_JITTER = 0.001
LINE_CONFLICT_BACKOFF_MAX = 0.02
# How many places from the front a waiter starts following the semaphore: the next to try is then
# already watching when the one before it takes its slot, and the others stay quiet.
WINDOW = 2


def line_prefix(semaphore_key: str) -> str:
    return f"{semaphore_key}-line/"


def line_key(semaphore_key: str, holder: str) -> str | None:
    """The waiter's key; None for an id that cannot be one key segment (it races as the Go tool does)."""
    return f"{line_prefix(semaphore_key)}{holder}" if KEY_SAFE_ID.fullmatch(holder) else None


def holder_of(key: str) -> str:
    """The host id a line key stands for (its last segment)."""
    return key.rsplit("/", 1)[-1]


def joined_value(now: datetime) -> bytes:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


def still_waiting(ahead: Iterable[str], semaphore: Semaphore) -> frozenset[str]:
    """The hosts ahead of us (ids) that have not taken a slot yet."""
    return frozenset(ahead) - frozenset(semaphore.holders)


def leaving_prefix(semaphore_key: str) -> str:
    return f"{semaphore_key}-leaving/"


def leaving_key(semaphore_key: str, holder: str) -> str | None:
    """The holder's key asking to give its slot back; None for an id that cannot be one key segment."""
    return f"{leaving_prefix(semaphore_key)}{holder}" if KEY_SAFE_ID.fullmatch(holder) else None


def settle(
    semaphore: Semaphore, leaving: Iterable[str], first_in_line: Sequence[str]
) -> tuple[Semaphore, tuple[str, ...], tuple[str, ...]]:
    """The semaphore once the hosts of `leaving` that hold a slot gave it back and every slot then free
    went to the first hosts in line, in order; and who left, and who got a slot. A host in line that
    already holds one (or is leaving) gets no other."""
    after, left = semaphore, []
    for host in dict.fromkeys(leaving):
        if after.holds(host):
            after = after.unlock(host)
            left.append(host)
    granted: list[str] = []
    for host in first_in_line:
        if after.available <= 0:
            break
        if host not in left and not after.holds(host):
            after = after.lock(host)
            granted.append(host)
    return after, tuple(left), tuple(granted)


def may_try(me: str, waiting_ahead: int, semaphore: Semaphore) -> bool:
    """Our turn: a slot is free and nobody ahead of us still waits (or we already hold one)."""
    return semaphore.holds(me) or (waiting_ahead == 0 and semaphore.available > 0)


def jump_after(waiting_ahead: int, semaphore: Semaphore) -> float | None:
    """How long a free slot may stay untaken, with no write, before we try it anyway (None: no slot is
    free, so there is nothing to jump to). One grace period, and one more for each host still waiting
    ahead beyond the free slots: with one slot free a stalled waiter is passed by one host at a time;
    with k free, the k nearest behind it try together (the compare-and-swap keeps that safe)."""
    if semaphore.available <= 0:
        return None
    return LINE_JUMP_GRACE_SECONDS * (1 + max(0, waiting_ahead - semaphore.available))
