"""When each holder took its slot: the side record `<semaphore key>-holders`, which the Go tool never reads.

An age is only worth showing if it is still true. The Go tool (or an admin with etcdctl) can unlock a
holder and let it lock again without touching this record, and the old time would then be shown for the
new hold. So the record also lists the semaphore writes our tools made, as (revision before, revision
after) pairs, and an age counts only when the semaphore's history from the write that added that holder to
the current revision is a chain of those writes: any write we did not make breaks the chain, and every
age from before it becomes "unknown". Unknown is honest; a wrong age is not.

    {"holders": {"<id>": {"since": "<RFC 3339 UTC>", "revision": <rev of the write that added it>}},
     "writes": [[<rev before>, <rev after>], …]}    (the last MAX_WRITES of our writes)

Where the store has transactions the record is written in the same one as the semaphore, and that write's
revision is not known until it is made: the record then says 0 (THIS_WRITE) for it — as `after` of its last
pair and as the revision of the holder it added — and a reader puts the record's own modification revision
in its place (`decode(raw, own_revision)`), which is that write's revision since both keys changed in it.

The record is outside data when read back (anyone with write access to the store): `decode` checks size,
encoding, nesting, ids, times and numbers, and anything else is AgesUnreadable. An older flat record
(`{"<id>": "<time>"}`, no revisions) decodes as empty: none of its ages can be checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from locksmith.protocol.semaphore import MAX_VALUE_BYTES, holder_problem

MAX_WRITES = 64
# "The revision this record was written at": never a real write's revision (a store's first is 1).
THIS_WRITE = 0
_MAX_REVISION = 2**63 - 1


class AgesUnreadable(ValueError):
    """The holder-ages record is not what we write; it is ignored (and left as it is)."""


@dataclass(frozen=True, slots=True)
class Age:
    since: datetime
    revision: int  # the semaphore revision of the write that added this holder


@dataclass(frozen=True, slots=True)
class AgesRecord:
    holders: dict[str, Age] = field(default_factory=dict)
    writes: tuple[tuple[int, int], ...] = ()

    def after_write(
        self, before: int, after: int, holders_now: frozenset[str], added: frozenset[str], now: datetime
    ) -> AgesRecord:
        """The record once our write (`before` → `after`, or THIS_WRITE when the record is written in
        it) is noted: ages only for ids holding now, and `added` (the holders our write added)
        held since `now` from revision `after`."""
        writes = {a: b for b, a in self.writes}  # by the revision each write made
        writes[after] = before
        kept = sorted(writes.items(), key=lambda pair: (pair[0] == THIS_WRITE, pair[0]))[-MAX_WRITES:]
        ages = {h: age for h, age in self.holders.items() if h in holders_now}
        since = now.astimezone(UTC).replace(microsecond=0)
        for holder in added:
            if holder in holders_now:
                ages[holder] = Age(since, after)
        return AgesRecord(ages, tuple((b, a) for a, b in kept))

    def true_ages(self, current_revision: int) -> dict[str, datetime]:
        """The ages still true at `current_revision` (see the module docstring); others are unknown."""
        previous = {after: before for before, after in self.writes}
        reached = {current_revision}
        revision = current_revision
        while revision in previous and len(reached) <= len(previous):
            revision = previous[revision]
            reached.add(revision)
        return {h: age.since for h, age in self.holders.items() if age.revision in reached}

    def written_at(self, own_revision: int) -> AgesRecord:
        """The record with THIS_WRITE replaced by the revision it was written at."""

        def real(revision: int) -> int:
            return own_revision if revision == THIS_WRITE else revision

        holders = {h: Age(age.since, real(age.revision)) for h, age in self.holders.items()}
        return AgesRecord(holders, tuple((before, real(after)) for before, after in self.writes))


def encode(record: AgesRecord) -> bytes:
    holders = {
        h: {"since": age.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "revision": age.revision}
        for h, age in sorted(record.holders.items())
    }
    return json.dumps({"holders": holders, "writes": [list(w) for w in record.writes]}, separators=(",", ":")).encode()


def decode(raw: bytes, own_revision: int | None = None) -> AgesRecord:
    """Parse the side record; every failure — size, encoding, nesting, an id, a time, a number — is
    AgesUnreadable (its message repeats nothing from the record). With `own_revision` (the record's
    modification revision), THIS_WRITE is resolved to it."""
    record = _decode(raw)
    return record if own_revision is None else record.written_at(own_revision)


def _decode(raw: bytes) -> AgesRecord:
    if len(raw) > MAX_VALUE_BYTES:
        raise AgesUnreadable(f"{len(raw)} bytes long, far more than a record of holder ages")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise AgesUnreadable(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise AgesUnreadable("expected a JSON object")
    if set(data) != {"holders", "writes"}:
        _check_legacy(data)
        return AgesRecord()
    holders, writes = data["holders"], data["writes"]
    if not isinstance(holders, dict) or not isinstance(writes, list) or len(writes) > MAX_WRITES:
        raise AgesUnreadable("holders must be an object and writes a short list")
    ages = {}
    for index, (holder, entry) in enumerate(holders.items()):
        if holder_problem(holder):
            raise AgesUnreadable(f"entry #{index + 1} is not keyed by a valid holder id")
        if not isinstance(entry, dict) or set(entry) != {"since", "revision"}:
            raise AgesUnreadable(f"entry #{index + 1} is not a since/revision pair")
        ages[holder] = Age(_time(entry["since"], index), _revision(entry["revision"]))
    pairs = []
    for pair in writes:
        if not isinstance(pair, list) or len(pair) != 2:
            raise AgesUnreadable("a write is not a [before, after] pair")
        pairs.append((_revision(pair[0]), _revision(pair[1])))
    return AgesRecord(ages, tuple(pairs))


def _check_legacy(data: dict[str, object]) -> None:
    """The flat record of earlier versions is valid but unverifiable; anything else is not ours."""
    for index, (holder, stamp) in enumerate(data.items()):
        if holder_problem(holder):
            raise AgesUnreadable(f"entry #{index + 1} is not keyed by a valid holder id")
        _time(stamp, index)


def _time(stamp: object, index: int) -> datetime:
    if not isinstance(stamp, str) or len(stamp) > 64:
        raise AgesUnreadable(f"the time of entry #{index + 1} is not a short string")
    try:
        when = datetime.fromisoformat(stamp)
        # Near datetime.min/max, converting to UTC overflows.
        utc = when.astimezone(UTC) if when.tzinfo is not None else None
    except (ValueError, OverflowError):
        raise AgesUnreadable(f"the time of entry #{index + 1} is not an RFC 3339 time in range") from None
    if utc is None:
        raise AgesUnreadable(f"the time of entry #{index + 1} has no time zone")
    return utc


def _revision(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_REVISION:
        raise AgesUnreadable("a revision is not a non-negative 64-bit integer")
    return value


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
