"""The reboot semaphore: its key, its JSON (byte-compatible with CoreOS locksmith) and its rules.

Pure logic, no I/O: `LockStore` (lockstore.py) reads a value, applies one of these operations
and writes the result back with a compare-and-swap.

The invariant every value we accept or produce keeps:
    max >= 0, holders unique and non-empty strings, semaphore == max - len(holders).
The Go tool kept the same equation through every operation it had; only its `set-max` could push
`semaphore` below zero (max below the number of holders). We still *read* such a value — a fleet may
mix both tools — but never produce one: `set_max` refuses to go below the current holders.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote_plus

KEY_PREFIX = "coreos.com/updateengine/rebootlock"
DEFAULT_KEY = f"{KEY_PREFIX}/semaphore"

# A holder id is a machine id (32 hex characters) in practice; the Go tool takes any word an admin
# types. What we accept, wherever an id enters (the command line, the machine-id file, the stored
# JSON): 1 to HOLDER_MAX_LEN printable characters, no white space — so no id can carry a newline or
# an escape sequence into `status` output and forge a line there.
HOLDER_MAX_LEN = 256
# What str.isspace() calls white space (re's \s is the same set), found in C: every waiter decodes the
# semaphore at each change it watches, so a per-character Python loop here was a tenth of its CPU.
_WHITE_SPACE = re.compile(r"\s")
HOLDER_RULE = f"1 to {HOLDER_MAX_LEN} printable characters without spaces"
# A stored value this large is no semaphore (max holders * the longest id is far below it).
MAX_VALUE_BYTES = 1 << 20

# Go's json decodes into a 64-bit int; anything larger it rejects, so do we.
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


class SemaphoreError(Exception):
    """Base of the semaphore's errors; the message is one line meant for a person."""


class SemaphoreCorrupt(SemaphoreError):
    """The value under `key` is not a semaphore we can trust; it must be left untouched."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(
            f"the semaphore at {key!r} is not valid ({reason}); it was left unchanged — "
            f'repair it by hand, e.g. write {{"semaphore":1,"max":1,"holders":null}} after checking who holds it'
        )


class SemaphoreFull(SemaphoreError):
    """No free slot: every one of `max` slots is held by someone else."""

    def __init__(self, sem: Semaphore) -> None:
        self.semaphore = sem
        holders = ", ".join(sem.holders) or "nobody"
        super().__init__(f"semaphore is at {sem.semaphore} (max {sem.max}, held by {holders})")


class NotHeld(SemaphoreError):
    """An unlock for an id that does not hold the semaphore."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(f"{holder!r} does not hold the lock")


class SemaphoreContention(SemaphoreError):
    """Every attempt lost the compare-and-swap race; nothing was changed by us."""


class InvalidMax(SemaphoreError):
    """A `set_max` that would leave the semaphore inconsistent or unsafe."""


class InvalidHolder(SemaphoreError):
    """A holder id we refuse to store (see HOLDER_RULE); the message never repeats the id."""


def holder_problem(holder: object) -> str | None:
    """Why `holder` is not an id we accept (HOLDER_RULE), or None when it is one."""
    if not isinstance(holder, str):
        return "it is not a string"
    if not holder:
        return "it is empty"
    if len(holder) > HOLDER_MAX_LEN:
        return f"it is {len(holder)} characters long (at most {HOLDER_MAX_LEN})"
    if not holder.isprintable() or _WHITE_SPACE.search(holder):
        return "it contains white space or characters that are not printable"
    return None


@dataclass(frozen=True, slots=True)
class Semaphore:
    """One value of the semaphore. Construction checks the invariant and sorts the holders."""

    semaphore: int
    max: int
    holders: tuple[str, ...] = ()
    # Go's nil slice: a value no one has locked since it was created has `"holders":null`, one whose last
    # holder left has `"holders":[]` (Go's RemoveHolder leaves an empty slice). Kept for the bytes only.
    nil_holders: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        problem = _inconsistency(self.semaphore, self.max, self.holders)
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "holders", tuple(sorted(self.holders)))
        if self.holders:
            object.__setattr__(self, "nil_holders", False)

    @property
    def available(self) -> int:
        """Free slots; may be negative only for a value the Go tool's set-max left over-full."""
        return self.semaphore

    def holds(self, holder: str) -> bool:
        return holder in self.holders

    def lock(self, holder: str) -> Semaphore:
        """Take a slot for `holder`. Idempotent: a holder locking again gets the same value back."""
        _check_holder(holder)
        if holder in self.holders:
            return self
        if self.semaphore <= 0:
            raise SemaphoreFull(self)
        return Semaphore(self.semaphore - 1, self.max, (*self.holders, holder))

    def unlock(self, holder: str) -> Semaphore:
        """Give back `holder`'s slot; NotHeld if it holds none."""
        if holder not in self.holders:
            raise NotHeld(holder)
        return Semaphore(self.semaphore + 1, self.max, tuple(h for h in self.holders if h != holder), nil_holders=False)

    def set_max(self, new_max: int) -> Semaphore:
        """Change the number of slots, shifting `semaphore` by the same amount.

        Refuses a max below the current holders: that would make the value over-full (the Go tool
        allowed it, leaving `semaphore` negative). Setting max to the number of holders already stops
        every new lock, which is what an operator lowering the max wants.
        """
        if isinstance(new_max, bool) or not isinstance(new_max, int):
            raise InvalidMax(f"max must be an integer, got {new_max!r}")
        if new_max < 0:
            raise InvalidMax(f"max must be 0 or more, got {new_max}")
        if new_max > _INT64_MAX:
            raise InvalidMax(f"max {new_max} is too large")
        if new_max < len(self.holders):
            raise InvalidMax(
                f"max {new_max} is below the {len(self.holders)} current holder(s) ({', '.join(self.holders)}); "
                f"unlock some first, or set max to {len(self.holders)} to stop new locks"
            )
        return Semaphore(self.semaphore + (new_max - self.max), new_max, self.holders, self.nil_holders)


def semaphore_key(group: str | None = None) -> str:
    """The etcd key of the semaphore, exactly as CoreOS locksmith builds it (url.QueryEscape'd group)."""
    if not group:
        return DEFAULT_KEY
    escaped = quote_plus(group, safe="")
    # Go joins with path.Join, which would turn "." and ".." into other keys (".." is the default
    # semaphore!); refuse those rather than silently share a lock with another group.
    if escaped in (".", ".."):
        raise ValueError(f"lock group {group!r} is not allowed: choose a name other than '.' or '..'")
    return f"{KEY_PREFIX}/groups/{escaped}/semaphore"


def holders_key(key: str) -> str:
    """Sibling key recording when each holder took its slot (the Go tool never reads it)."""
    return f"{key}-holders"


def decode(raw: bytes, key: str) -> Semaphore:
    """Parse a stored value; anything we cannot trust raises SemaphoreCorrupt naming `key`."""
    if len(raw) > MAX_VALUE_BYTES:
        raise SemaphoreCorrupt(key, f"{len(raw)} bytes long, far more than a semaphore")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SemaphoreCorrupt(key, "not UTF-8 text") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise SemaphoreCorrupt(key, f"not JSON: {reason}") from None
    if not isinstance(data, dict):
        raise SemaphoreCorrupt(key, f"expected a JSON object, got {type(data).__name__}")
    missing = [f for f in ("semaphore", "max", "holders") if f not in data]
    if missing:
        raise SemaphoreCorrupt(key, f"missing field(s) {', '.join(missing)}")
    semaphore, max_, holders = data["semaphore"], data["max"], data["holders"]
    for name, value in (("semaphore", semaphore), ("max", max_)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SemaphoreCorrupt(key, f"{name} must be an integer, got {json.dumps(value)}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise SemaphoreCorrupt(key, f"{name} {value} is out of range")
    nil_holders = holders is None  # Go marshals a nil slice as null: the value it creates
    if nil_holders:
        holders = []
    if not isinstance(holders, list):
        raise SemaphoreCorrupt(key, f"holders must be a list or null, got {type(holders).__name__}")
    if not all(isinstance(h, str) for h in holders):
        raise SemaphoreCorrupt(key, "holders must all be strings")
    for index, holder in enumerate(holders):
        why = holder_problem(holder)
        if why and holder:  # an empty id keeps its own message below
            # The id itself is not repeated: it may be what would forge a line in the output.
            raise SemaphoreCorrupt(key, f"holder #{index + 1} is not a valid id ({why}; an id is {HOLDER_RULE})")
    problem = _inconsistency(semaphore, max_, tuple(holders))
    if problem:
        raise SemaphoreCorrupt(key, problem)
    return Semaphore(semaphore, max_, tuple(holders), nil_holders)


def encode(sem: Semaphore) -> bytes:
    """Serialise exactly as Go's json.Marshal of CoreOS's struct: field order, no spaces, sorted
    holders, Go's string escaping; no holders is `null` until someone has locked (the shape Go's Init
    writes) and `[]` once the last holder has left, as the Go tool writes it (Go reads both alike)."""
    if sem.nil_holders and not sem.holders:
        holders = "null"
    else:
        holders = "[" + ",".join(_go_string(h) for h in sem.holders) + "]"
    return f'{{"semaphore":{sem.semaphore},"max":{sem.max},"holders":{holders}}}'.encode()


def _inconsistency(semaphore: int, max_: int, holders: tuple[str, ...]) -> str | None:
    if max_ < 0:
        return f"max is negative ({max_})"
    for h in holders:
        if not isinstance(h, str) or not h:
            return "a holder id is empty"
    if len(set(holders)) != len(holders):
        dupes = sorted({h for h in holders if holders.count(h) > 1})
        return f"holder(s) listed twice: {', '.join(dupes)}"
    if semaphore != max_ - len(holders):
        return f"semaphore {semaphore} does not equal max {max_} minus {len(holders)} holder(s)"
    return None


def _check_holder(holder: str) -> None:
    why = holder_problem(holder)
    if why:
        raise InvalidHolder(f"the holder id is not valid: {why} (an id is {HOLDER_RULE})")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


# Go's encoding/json escapes these on top of what JSON requires, to keep output HTML-safe.
_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


# Printable ASCII that Go writes as it is: every holder id an agent writes (encoding 50 holders per
# write was a visible share of an agent's CPU under contention, character by character).
_GO_PLAIN = re.compile(r"[\x20\x21\x23-\x25\x27-\x3b\x3d\x3f-\x5b\x5d-\x7e]*")


def _go_string(s: str) -> str:
    if _GO_PLAIN.fullmatch(s):
        return f'"{s}"'
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\ufffd")  # Go replaces invalid UTF-8 (our lone surrogates) with U+FFFD
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# What the Go tool creates when the key is absent.
INITIAL = Semaphore(semaphore=1, max=1, holders=())
INITIAL_VALUE = encode(INITIAL)  # b'{"semaphore":1,"max":1,"holders":null}'

__all__ = [
    "DEFAULT_KEY",
    "HOLDER_MAX_LEN",
    "HOLDER_RULE",
    "INITIAL",
    "INITIAL_VALUE",
    "KEY_PREFIX",
    "InvalidHolder",
    "InvalidMax",
    "NotHeld",
    "Semaphore",
    "SemaphoreCorrupt",
    "SemaphoreError",
    "SemaphoreFull",
    "decode",
    "encode",
    "holder_problem",
    "holders_key",
    "semaphore_key",
]
