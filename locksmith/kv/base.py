"""The small key-value protocol the semaphore runs on, and the errors every backend raises.

Three backends implement it (embedded SQLite, etcd v3, etcd v2). Revisions are the only
concurrency control: every write that must not lose a race is a compare-and-swap on the
revision read before it, so the semaphore logic above stays pure and backend-agnostic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's current value and the revision at which it was last modified."""

    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Change:
    """One observed change of a watched key. `value` is None when the key was deleted."""

    key: str
    value: bytes | None
    revision: int


class KVError(Exception):
    """Base of every error a KV backend raises; the message is one line meant for a person."""


class KVUnavailable(KVError):
    """No endpoint answered (after the bounded retries): the store cannot be reached now."""


class KVAuthError(KVError):
    """The store answered but refused our credentials or TLS identity."""


class KVProtocolError(KVError):
    """The store answered with something we cannot understand; nothing was changed by us."""


@runtime_checkable
class KVStore(Protocol):
    """What the semaphore needs from a store. All methods are coroutines except `watch`,
    which returns an async iterator.

    Contract (the conformance suite in tests/ checks every backend against it):
    - `get` returns None for an absent key.
    - `create` writes only if the key is absent; returns the new Entry, or None if it exists.
    - `compare_and_swap` writes only if the key's current revision equals `revision`;
      returns the new Entry, or None if the key changed or vanished meanwhile.
    - `delete` removes the key (only at `revision` when given); True if something was deleted.
    - `watch(key, after_revision)` yields a Change for modifications with a revision greater
      than `after_revision`, in revision order. Backends without history (SQLite, etcd v2
      beyond its event window) may coalesce several changes into the latest one, but never
      skip the latest state. The iterator runs until the consumer stops iterating; closing it
      (aclose / break) releases its resources.
    - `list_prefix(prefix, limit)` returns the entries whose keys start with `prefix`, in key order, at
      most `limit` of them (absent keys are not entries).
    - `ping` raises KVUnavailable / KVAuthError if the store cannot serve requests now.
    - Revisions grow monotonically per store; a fresh key's revision is > 0.
    """

    async def get(self, key: str) -> Entry | None: ...

    async def create(self, key: str, value: bytes) -> Entry | None: ...

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None: ...

    async def delete(self, key: str, revision: int | None = None) -> bool: ...

    def watch(self, key: str, after_revision: int) -> AsyncIterator[Change]: ...

    async def list_prefix(self, prefix: str, limit: int) -> list[Entry]: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ExpiringKeys(Protocol):
    """Keys the store deletes by itself (a v3 lease, a v2 key TTL): what expiring holders need. The etcd
    backends have it; the embedded store does not (one host has nobody to free a dead holder's slot)."""

    async def put_expiring(self, key: str, value: bytes, ttl_seconds: int, *, only_if_present: bool = False) -> bool:
        """Write `key` so that the store deletes it `ttl_seconds` after this write unless written again.
        With `only_if_present` (a renewal) nothing is written when the key is gone: False then."""
        ...


@dataclass(frozen=True, slots=True)
class Committed:
    """What `commit` did: `revision` is the store revision it wrote at when every expectation held;
    otherwise None, and `current` holds the expected keys as they are now (read in the same round trip,
    so a caller retrying a compare-and-swap needs no second read)."""

    revision: int | None
    current: Mapping[str, Entry | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a key stands in a line of keys ordered by creation, read at store revision `revision`:
    `ahead` holds the keys created before it, nearest first, as many as were asked for (fewer: that is
    everyone ahead); `entries`: the keys asked for alongside, read at the same revision."""

    ahead: tuple[str, ...]
    revision: int
    entries: Mapping[str, Entry | None] = field(default_factory=dict)

    @property
    def predecessor(self) -> str | None:
        """The key just ahead (None: this one is first)."""
        return self.ahead[0] if self.ahead else None


@dataclass(frozen=True, slots=True)
class Heads:
    """The first keys under each prefix asked for, oldest first by creation (each with its mod revision,
    value not read), and the keys asked for alongside, all read at one store revision."""

    first: Mapping[str, tuple[Entry, ...]]
    entries: Mapping[str, Entry | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LineLook:
    """What `join_line` reads as it writes: up to `ahead` keys before ours under `prefix`, and `read`."""

    prefix: str
    read: tuple[str, ...] = ()
    ahead: int = 1


@dataclass(frozen=True, slots=True)
class InLine:
    """A key in a line: its create revision (its place), the store lease that keeps it, and the revision
    that last wrote it (a write that acts on it compares this); `place`: where it stood as it was written,
    when the join was asked to look (None: look with `place_in_line`)."""

    created: int
    lease: int
    revision: int
    place: Place | None = None


class NoTransactions(KVError):
    """The store settled on an API without multi-key transactions (etcd v2): use the single-key path."""


@runtime_checkable
class Transactions(Protocol):
    """Multi-key atomic writes and creation-ordered keys (etcd v3 has both). What the reboot semaphore
    uses them for: its holder-ages record and a waiter leaving the line are written in the same
    transaction as the semaphore itself, and waiters queue in arrival order instead of racing."""

    async def read_together(self, keys: Sequence[str]) -> dict[str, Entry | None]:
        """The keys as they are at one store revision."""
        ...

    async def commit(
        self, expect: Mapping[str, int], put: Mapping[str, bytes], delete: Sequence[str] = ()
    ) -> Committed:
        """Write `put` and delete `delete` at once, only if every key of `expect` is at its revision
        (0: absent)."""
        ...

    async def join_line(self, key: str, value: bytes, ttl_seconds: int, look: LineLook | None = None) -> InLine:
        """Write `key` on a fresh lease of `ttl_seconds`; its create revision is kept from before when
        the key is already there, so a rejoin keeps its place. With `look`, the answer also says where the
        key stands, as `place_in_line` would right after — in the same round trip."""
        ...

    async def stay_in_line(self, lease: int) -> bool:
        """Renew the lease (no write, so nobody watching the key is woken); False once it expired."""
        ...

    def follow(self, key: str) -> AsyncIterator[Change]:
        """The key's state once the watch is in place (value None: absent), then every change after;
        each with the revision that wrote it (0 for a key absent when the watch began)."""
        ...

    async def place_in_line(self, prefix: str, created: int, read: Sequence[str] = (), ahead: int = 1) -> Place:
        """Where the key created at revision `created` stands among the keys under `prefix` (up to `ahead`
        of the keys before it), and the keys of `read` at the same revision."""
        ...

    async def heads(self, counts: Mapping[str, int], read: Sequence[str] = ()) -> Heads:
        """The first keys by creation under each prefix of `counts` (as many as it says), and the keys of
        `read`, at one revision."""
        ...

    async def commit_or_queue(
        self,
        expect: Mapping[str, int],
        put: Mapping[str, bytes],
        delete: Sequence[str],
        *,
        otherwise_put: Mapping[str, bytes],
        counts: Mapping[str, int],
        read: Sequence[str],
    ) -> int | Heads:
        """`commit`, in one round trip with its fallback: the revision it wrote at when every expectation
        held; otherwise write `otherwise_put` instead and answer `heads(counts, read)` as they are then."""
        ...


# --- Choosing a backend -------------------------------------------------------------------

BACKEND_ETCD3 = "etcd3"
BACKEND_ETCD2 = "etcd2"
BACKEND_EMBEDDED = "embedded"

_SCHEMES = {
    "http": (BACKEND_ETCD3, "http"),
    "https": (BACKEND_ETCD3, "https"),
    "etcd3+http": (BACKEND_ETCD3, "http"),
    "etcd3+https": (BACKEND_ETCD3, "https"),
    "etcd2+http": (BACKEND_ETCD2, "http"),
    "etcd2+https": (BACKEND_ETCD2, "https"),
    "file": (BACKEND_EMBEDDED, "file"),
}

ENDPOINT_HELP = (
    "use http(s)://HOST:PORT for etcd (v3, or v2 where a Go locksmith's semaphore is), etcd3+http(s):// or "
    "etcd2+http(s):// to force one API, or file:///PATH for the embedded store"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One parsed endpoint: which backend serves it and the address that backend uses
    (an http(s) base URL without the `etcdN+` prefix, or a filesystem path for `file:`)."""

    backend: str
    address: str
    original: str
    # False for a plain http(s):// etcd endpoint: the API is then the one that holds the fleet's semaphore
    # (kv/choose.py), since the Go tool read the same URL as the v2 API.
    api_named: bool = True


def parse_endpoint(url: str) -> Endpoint:
    """Parse one endpoint URL; raises ValueError with a one-line message naming the fix."""
    from urllib.parse import urlsplit

    text = url.strip()
    scheme, sep, _rest = text.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(f"endpoint {url!r} has no supported scheme: {ENDPOINT_HELP}")
    backend, transport = _SCHEMES[scheme.lower()]
    if backend == BACKEND_EMBEDDED:
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"endpoint {url!r}: the embedded store needs an absolute path, file:///PATH")
        return Endpoint(backend, parts.path, url)
    address = f"{transport}://{text.split('://', 1)[1]}".rstrip("/")
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {url!r} has a bad port: {exc}") from None
    if not parts.hostname or parts.path not in ("",) or parts.query or parts.fragment:
        raise ValueError(f"endpoint {url!r} must be scheme://HOST[:PORT] with no path: {ENDPOINT_HELP}")
    del port
    return Endpoint(backend, address, url, api_named="+" in scheme)


def parse_endpoints(urls: list[str] | tuple[str, ...]) -> tuple[Endpoint, ...]:
    """Parse an endpoint list; all must name the same backend, and a file: store stands alone."""
    if not urls:
        raise ValueError(f"no endpoint given: {ENDPOINT_HELP}")
    parsed = tuple(parse_endpoint(u) for u in urls)
    kinds = {e.backend for e in parsed}
    if len(kinds) > 1:
        raise ValueError(f"endpoints {', '.join(urls)} mix backends ({', '.join(sorted(kinds))}): use one kind")
    if parsed[0].backend == BACKEND_EMBEDDED and len(parsed) > 1:
        raise ValueError("the embedded store takes exactly one file:///PATH endpoint")
    return parsed


@dataclass(frozen=True, slots=True)
class KVOptions:
    """Everything needed to open a store: endpoints plus etcd TLS and auth. Validated by config."""

    endpoints: tuple[Endpoint, ...]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    request_timeout: float = 5.0
    # How long one operation may keep retrying unreachable endpoints before KVUnavailable.
    retry_budget: float = 10.0
    # Only reads will follow (locksmithctl status): the embedded store then opens its file with
    # SQLite's mode=ro and creates nothing. The etcd backends need no such mode.
    read_only: bool = False

    @property
    def backend(self) -> str:
        return self.endpoints[0].backend
