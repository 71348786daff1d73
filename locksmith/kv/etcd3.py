"""etcd v3 over its HTTP/JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`).

Keys and values travel base64-encoded; 64-bit numbers arrive as strings and zero-valued
fields are omitted, so every reply goes through the small parsers below, which turn anything
unexpected into KVProtocolError rather than a traceback. Entry.revision is the key's
`mod_revision`, so a CAS is a txn comparing MOD revision.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from locksmith.kv.base import (
    Change,
    Committed,
    Entry,
    Heads,
    InLine,
    KVAuthError,
    KVError,
    KVOptions,
    KVProtocolError,
    KVUnavailable,
    LineLook,
    Place,
)
from locksmith.kv.etcd3_wire import (
    TxnResult,
    _obj,
    ahead_of,
    b64,
    compares,
    entries_of,
    head_reads,
    key_reads,
    line_range,
    parse_error,
    parse_heads,
    parse_keepalive,
    parse_lease_grant,
    parse_range,
    parse_range_prefix,
    parse_txn,
    parse_watch_line,
    prefix_end,
    writes_of,
)
from locksmith.kv.http import TRANSPORT_ERRORS, EndpointUnhealthy, HTTPEndpoints, json_body
from locksmith.kv.watch import WATCH_IDLE_SECONDS, Reconnect, resync

API = "etcd v3"

# gRPC status codes as the gateway reports them in {"error", "code"}.
_UNAUTHENTICATED = 16
_PERMISSION_DENIED = 7
_UNAVAILABLE = 14
_DEADLINE_EXCEEDED = 4

_AUTH_MESSAGES = ("authentication failed", "user name is empty", "permission denied", "user name not found")
_TRANSIENT_MESSAGES = ("no leader", "leader changed", "request timed out", "too many requests", "not capable")


class InvalidToken(KVAuthError):
    """Our auth token expired or was revoked; authenticate again."""


def check_reply(response: httpx.Response, base: str, what: str, authenticated: bool) -> Any:
    """The JSON body of a good reply; otherwise the KVError (or EndpointUnhealthy) it means."""
    if response.status_code >= 500:
        try:
            body = response.json()
        except ValueError:
            raise EndpointUnhealthy(f"HTTP {response.status_code}") from None
    else:
        body = json_body(response, f"{API} {what} at {base}")
    error = parse_error(body)
    if error is None and response.status_code == 200:
        return body
    message, code = error or (f"HTTP {response.status_code}", 0)
    raise classify_error(message, code, response.status_code, base, what, authenticated)


def classify_error(message: str, code: int, status: int, base: str, what: str, authenticated: bool) -> Exception:
    lowered = message.lower()
    if "invalid auth token" in lowered or "auth token is expired" in lowered:
        return InvalidToken(f"{API} at {base}: {message}")
    if code in (_UNAUTHENTICATED, _PERMISSION_DENIED) or any(m in lowered for m in _AUTH_MESSAGES):
        fix = "check the etcd username, password and role" if authenticated else "set the etcd username and password"
        return KVAuthError(f"{API} at {base} refused {what}: {message}: {fix}")
    if code in (_UNAVAILABLE, _DEADLINE_EXCEEDED) or status >= 500 or any(m in lowered for m in _TRANSIENT_MESSAGES):
        return EndpointUnhealthy(message)
    if status == 404:
        return KVProtocolError(f"{API}: {base} has no {what} API (HTTP 404): is it etcd 3.4 or newer?")
    return KVError(f"{API} at {base} refused {what}: {message}")


# --- The store ---------------------------------------------------------------------------


class Etcd3Store:
    """KVStore over the etcd v3 HTTP/JSON gateway."""

    def __init__(self, options: KVOptions) -> None:
        self.options = options
        self._http = HTTPEndpoints(options, API)
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()

    # --- auth ---

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    async def _authenticate(self, stale: str | None = None) -> None:
        if not self.options.username:
            return
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return  # another task already did it
            body = {"name": self.options.username, "password": self.options.password or ""}
            self._token = await self._http.call("POST", "/v3/auth/authenticate", self._parse_auth, json=body)

    def _parse_auth(self, response: httpx.Response, base: str) -> str:
        try:
            body = check_reply(response, base, f"user {self.options.username!r}", authenticated=True)
        except KVError as exc:
            if "authentication is not enabled" in str(exc):
                return ""  # credentials were given but the cluster does not ask for them
            raise
        token = _obj(body, "authenticate reply").get("token")
        if not isinstance(token, str) or not token:
            raise KVProtocolError(f"{API} at {base}: the authenticate reply has no token")
        return token

    async def _post(self, path: str, what: str, body: dict[str, Any]) -> Any:
        if self._token is None:
            await self._authenticate()

        def parse(response: httpx.Response, base: str) -> Any:
            return check_reply(response, base, what, authenticated=bool(self.options.username))

        for attempt in range(2):
            token = self._token
            try:
                return await self._http.call("POST", path, parse, json=body, headers=self._headers)
            except InvalidToken:
                if attempt or not self.options.username:
                    raise
                await self._authenticate(stale=token)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- KVStore ---

    async def _range(self, key: str) -> tuple[Entry | None, int]:
        return parse_range(await self._post("/v3/kv/range", f"reading {key}", {"key": b64(key)}), key)

    async def get(self, key: str) -> Entry | None:
        return (await self._range(key))[0]

    async def list_prefix(self, prefix: str, limit: int) -> list[Entry]:
        request = {"key": b64(prefix), "range_end": b64(prefix_end(prefix.encode())), "limit": str(limit)}
        return parse_range_prefix(await self._post("/v3/kv/range", f"listing {prefix}", request), prefix)

    async def _txn(
        self,
        key: str,
        what: str,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> TxnResult:
        body = {"compare": compare, "success": success, **({"failure": failure} if failure else {})}
        return parse_txn(await self._post("/v3/kv/txn", f"{what} {key}", body))

    async def create(self, key: str, value: bytes) -> Entry | None:
        result = await self._txn(key, "creating", compares({key: 0}), writes_of({key: value}))
        return Entry(key, bytes(value), result.revision) if result.succeeded else None

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None:
        if revision <= 0:
            return None  # no stored key has this revision; a MOD==0 compare would match an absent key
        result = await self._txn(key, "updating", compares({key: revision}), writes_of({key: value}))
        return Entry(key, bytes(value), result.revision) if result.succeeded else None

    async def delete(self, key: str, revision: int | None = None) -> bool:
        if revision is not None and revision <= 0:
            return False
        compare = compares({key: revision}) if revision is not None else []
        result = await self._txn(key, "deleting", compare, writes_of({}, [key]))
        return result.succeeded and result.deleted > 0

    async def put_expiring(self, key: str, value: bytes, ttl_seconds: int, *, only_if_present: bool = False) -> bool:
        # A fresh lease per write: the key leaves its old lease (which then expires holding nothing), so a
        # renewal is one grant and one txn, and a lease never outlives what it was granted for.
        lease_id = await self._lease(key, ttl_seconds)
        compare = (
            [{"key": b64(key), "result": "GREATER", "target": "VERSION", "version": "0"}] if only_if_present else []
        )
        put = [{"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease_id)}}]
        result = await self._txn(key, "renewing" if only_if_present else "writing", compare, put)
        if not result.succeeded:
            with contextlib.suppress(KVError):
                await self._post("/v3/lease/revoke", f"revoking the unused lease for {key}", {"ID": str(lease_id)})
        return result.succeeded

    async def _lease(self, key: str, ttl_seconds: int) -> int:
        lease = await self._post("/v3/lease/grant", f"a {ttl_seconds} s lease for {key}", {"TTL": str(ttl_seconds)})
        return parse_lease_grant(lease)

    # --- Transactions ---

    async def read_together(self, keys: Sequence[str]) -> dict[str, Entry | None]:
        result = await self._txn(keys[0], "reading", [], key_reads(keys))
        return entries_of(keys, result.ranges)

    async def commit(
        self, expect: Mapping[str, int], put: Mapping[str, bytes], delete: Sequence[str] = ()
    ) -> Committed:
        first = next(iter(expect), next(iter(put), ""))
        result = await self._txn(first, "updating", compares(expect), writes_of(put, delete), key_reads(expect))
        if result.succeeded:
            return Committed(result.revision)
        return Committed(None, entries_of(list(expect), result.ranges))

    async def join_line(self, key: str, value: bytes, ttl_seconds: int, look: LineLook | None = None) -> InLine:
        lease_id = await self._lease(key, ttl_seconds)
        put = {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease_id)}}
        # Read in the same transaction, after the write: our key, the newest keys of the line (ours first,
        # unless it was there from before and newer keys came since), and the keys to read alongside.
        reads = key_reads([key])
        if look is not None:
            reads += [line_range(look.prefix, look.ahead + 1), *key_reads(look.read)]
        result = await self._txn(key, "queueing", [], [put, *reads])
        rows = result.ranges[0].rows if result.ranges else ()
        if not rows:
            raise KVProtocolError(f"{API}: {key} was not there right after writing it")
        place = None
        if look is not None and len(result.ranges) == 2 + len(look.read) and result.revision > 0:
            ahead = ahead_of(result.ranges[1], rows[0].created, look.ahead)
            if ahead is not None:
                place = Place(ahead, result.revision, entries_of(look.read, result.ranges[2:]))
        return InLine(rows[0].created, lease_id, rows[0].modified, place)

    async def stay_in_line(self, lease: int) -> bool:
        body = await self._post("/v3/lease/keepalive", "renewing a lease", {"ID": str(lease)})
        return parse_keepalive(body) > 0

    async def place_in_line(self, prefix: str, created: int, read: Sequence[str] = (), ahead: int = 1) -> Place:
        reads = [line_range(prefix, ahead, created_before=created), *key_reads(read)]
        result = await self._txn(prefix, "reading the line", [], reads)
        if not result.ranges or result.revision <= 0:
            raise KVProtocolError(f"{API} reply: reading the line {prefix} gave no answer")
        keys = tuple(row.key.decode("utf-8", errors="replace") for row in result.ranges[0].rows)
        return Place(keys, result.revision, entries_of(read, result.ranges[1:]))

    async def heads(self, counts: Mapping[str, int], read: Sequence[str] = ()) -> Heads:
        reads = head_reads(counts, read)
        result = await self._txn(next(iter(counts), ""), "reading the heads of", [], reads)
        return parse_heads(counts, read, result.ranges)

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
        otherwise = writes_of(otherwise_put) + head_reads(counts, read)
        result = await self._txn(
            next(iter(expect), ""), "updating", compares(expect), writes_of(put, delete), otherwise
        )
        if result.succeeded:
            return result.revision
        return parse_heads(counts, read, result.ranges)

    async def ping(self) -> None:
        await self._range("locksmith/ping")

    def follow(self, key: str) -> AsyncIterator[Change]:
        # A watch from a past revision waits for etcd's catch-up loop (every 100 ms); one from now is
        # served at once, and the read right after it is in place misses nothing.
        return self.watch(key, 0, from_now=True)

    async def watch(self, key: str, after_revision: int, *, from_now: bool = False) -> AsyncIterator[Change]:
        """Stream changes after `after_revision`; on compaction re-read the key, on a broken
        stream reconnect (any endpoint) from the last revision seen. Raises KVUnavailable
        when no endpoint could be reached for `retry_budget` seconds in a row. `from_now`: start
        where the store is when the watch is in place, with the key's state then as the first change."""
        last = after_revision
        reconnect = Reconnect(API, key, self.options.retry_budget)
        while True:
            compacted = False
            try:
                if self._token is None:
                    await self._authenticate()
                start = {} if from_now else {"start_revision": str(last + 1)}
                request = {"create_request": {"key": b64(key), **start}}
                base, response = await self._http.open_stream(
                    "POST", "/v3/watch", json=request, headers=self._headers(), read_timeout=WATCH_IDLE_SECONDS
                )
                try:
                    if response.status_code != 200:
                        await response.aread()
                        check_reply(response, base, f"watching {key}", bool(self.options.username))
                        raise EndpointUnhealthy(f"HTTP {response.status_code}")
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        msg = parse_watch_line(line)
                        if msg.error is not None:
                            raise classify_error(*msg.error, 200, base, f"watching {key}", bool(self.options.username))
                        reconnect.answered()
                        if from_now and msg.created:
                            from_now = False
                            entry, last = await self._range(key)
                            yield Change(key, None, 0) if entry is None else Change(key, entry.value, entry.revision)
                            continue
                        if msg.compact_revision:
                            compacted = True
                            break
                        if msg.canceled:
                            raise KVError(f"{API} at {base} cancelled the watch on {key}: {msg.cancel_reason}")
                        for ev in msg.events:
                            if ev.key == key.encode() and ev.revision > last:
                                last = ev.revision
                                yield Change(key, ev.value, ev.revision)
                finally:
                    await response.aclose()
            except InvalidToken:
                self._token = None
                continue
            except httpx.ReadTimeout:
                # Quiet for WATCH_IDLE_SECONDS: re-open from the last revision (nothing is lost). A member
                # that froze is found out here, within seconds, by the re-open's own deadline.
                continue
            except (KVUnavailable, EndpointUnhealthy, *TRANSPORT_ERRORS) as exc:
                self._http.raise_if_tls(exc, self._http.current)
                reconnect.unreachable(exc)
            if compacted:
                entry, revision = await self._range(key)
                missed, last = resync(key, entry, revision, last)
                if missed is not None:
                    yield missed
                continue
            # A stream that ended or broke: reconnect after a short jittered pause.
            await reconnect.pause()

    async def aclose(self) -> None:
        await self._http.aclose()
