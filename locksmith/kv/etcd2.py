"""etcd v2 keys API (`/v2/keys/...`): how CoreOS/Flatcar locksmiths talk to etcd, so this
project can join a fleet whose agents still use v2.

Entry.revision is the node's `modifiedIndex` (store-wide and monotonic). Create is
`PUT ?prevExist=false`, CAS is `PUT ?prevIndex=N`, delete is `DELETE ?prevIndex=N`, watch is
the `?wait=true&waitIndex=N` long poll. v2 stores text, so values must be UTF-8 (ours are JSON).

Keys are escaped per path segment exactly as Go's url.URL does for the Go tool's client
(`ep.Path = prefix + key` then `URL.String()`): a literal `%` in the key (the semaphore key of
group `prod/db` is `…/groups/prod%2Fdb/semaphore`) goes out as `%25`, so etcd stores the same
key the Go tool stores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from locksmith.kv.base import Change, Entry, KVAuthError, KVError, KVOptions, KVProtocolError, KVUnavailable
from locksmith.kv.http import TRANSPORT_ERRORS, EndpointUnhealthy, HTTPEndpoints
from locksmith.kv.watch import WATCH_IDLE_SECONDS, Reconnect, resync

API = "etcd v2"

# errorCode values of the v2 API.
KEY_NOT_FOUND = 100
COMPARE_FAILED = 101
NODE_EXISTS = 105
UNAUTHORIZED = 110
EVENT_INDEX_CLEARED = 401
_TRANSIENT_CODES = (300, 301, 302)  # raft internal error, during leader election, watcher cleared


# Go's url path escaping leaves these unescaped (besides letters, digits and -._~).
_GO_PATH_SAFE = "/$&+,:;=@"


def key_path(key: str) -> str:
    """The URL path of `key`, escaped the way the Go client escaped it."""
    return "/v2/keys/" + quote(key.lstrip("/"), safe=_GO_PATH_SAFE)


def encode_value(key: str, value: bytes) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise KVError(f"{API} stores text: the value for {key} is not UTF-8") from None


# --- Pure reply parsers (fuzzed by hypothesis) --------------------------------------------


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise KVProtocolError(f"{API} reply: {what} is {value!r}, not a positive integer")
    return value


def parse_node(body: Any, key: str) -> tuple[bytes | None, int]:
    """A keys reply → (value or None when the node has none, modifiedIndex)."""
    if not isinstance(body, dict) or not isinstance(body.get("node"), dict):
        raise KVProtocolError(f"{API} reply for {key}: no node object")
    node = body["node"]
    if node.get("dir") is True:
        raise KVProtocolError(f"{API}: {key} is a directory, not a key: remove it or use another group")
    value = node.get("value")
    if value is not None and not isinstance(value, str):
        raise KVProtocolError(f"{API} reply for {key}: value is {type(value).__name__}, not text")
    return (None if value is None else value.encode("utf-8")), _index(node.get("modifiedIndex"), "modifiedIndex")


def parse_dir(body: Any, prefix: str, limit: int) -> list[Entry]:
    """A recursive keys reply on a directory → the leaf entries under it whose keys start with `prefix`."""
    if not isinstance(body, dict) or not isinstance(body.get("node"), dict):
        raise KVProtocolError(f"{API} reply for {prefix}: no node object")
    entries: list[Entry] = []
    pending = [body["node"]]
    while pending and len(entries) < limit:
        node = pending.pop()
        if not isinstance(node, dict):
            raise KVProtocolError(f"{API} reply for {prefix}: a node is not an object")
        if node.get("dir") is True:
            children = node.get("nodes") or []
            if not isinstance(children, list):
                raise KVProtocolError(f"{API} reply for {prefix}: nodes is not a list")
            pending.extend(reversed(children))
            continue
        key, value = node.get("key"), node.get("value")
        if isinstance(key, str) and isinstance(value, str) and key.lstrip("/").startswith(prefix):
            entries.append(
                Entry(key.lstrip("/"), value.encode("utf-8"), _index(node.get("modifiedIndex"), "modifiedIndex"))
            )
    return sorted(entries, key=lambda e: e.key)


def parse_error(body: Any) -> tuple[int, str, int] | None:
    """A v2 error object → (errorCode, one-line message, index), else None."""
    if not isinstance(body, dict) or "errorCode" not in body:
        return None
    code = body.get("errorCode")
    if isinstance(code, bool) or not isinstance(code, int):
        raise KVProtocolError(f"{API} reply: errorCode is {code!r}, not an integer")
    message = str(body.get("message", "")).strip()
    cause = body.get("cause")
    if cause:
        message = f"{message} ({cause})"
    index = body.get("index", 0)
    return code, message, index if isinstance(index, int) and not isinstance(index, bool) else 0


def parse_event(body: Any, key: str) -> Change:
    """A watch reply → the Change it reports (deletions and expiries carry no value)."""
    if not isinstance(body, dict):
        raise KVProtocolError(f"{API} watch reply for {key} is not an object")
    action = body.get("action")
    if not isinstance(action, str):
        raise KVProtocolError(f"{API} watch reply for {key} has no action")
    value, index = parse_node(body, key)
    if action in ("delete", "compareAndDelete", "expire"):
        value = None
    elif value is None:
        raise KVProtocolError(f"{API} watch reply for {key}: a {action!r} event without a value")
    return Change(key, value, index)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def fail(response: httpx.Response, base: str, what: str, authenticated: bool) -> Exception:
    """The error a reply that is not one of the expected outcomes means."""
    body = _json(response)
    status = response.status_code
    error = parse_error(body)
    if status in (401, 403) or (error is not None and error[0] == UNAUTHORIZED):
        fix = "check the etcd username and password" if authenticated else "set the etcd username and password"
        detail = error[1] if error else f"HTTP {status}"
        return KVAuthError(f"{API} at {base} refused {what}: {detail}: {fix}")
    if status >= 500 or (error is not None and error[0] in _TRANSIENT_CODES):
        return EndpointUnhealthy(error[1] if error else f"HTTP {status}")
    if error is not None:
        return KVError(f"{API} at {base} refused {what}: {error[1]} (errorCode {error[0]})")
    if status == 404:
        return KVProtocolError(f"{API}: {base} has no v2 keys API (HTTP 404): start etcd with --enable-v2")
    snippet = response.text[:80].replace("\n", " ")
    return KVProtocolError(
        f"{API} at {base} answered {what} with HTTP {status} and {snippet!r}: is this endpoint an etcd server?"
    )


# --- The store ---------------------------------------------------------------------------


class Etcd2Store:
    """KVStore over the etcd v2 keys API."""

    def __init__(self, options: KVOptions) -> None:
        self.options = options
        auth = httpx.BasicAuth(options.username, options.password or "") if options.username else None
        self._http = HTTPEndpoints(options, API, auth=auth)
        self._authenticated = auth is not None

    def _outcome(
        self, response: httpx.Response, base: str, what: str, ok: tuple[int, ...], no: tuple[int, ...]
    ) -> tuple[bytes | None, int] | None:
        """(value, index) for a status in `ok`; None for a v2 errorCode in `no`; else raise."""
        if response.status_code in ok:
            body = _json(response)
            if body is None:
                raise fail(response, base, what, self._authenticated)
            return parse_node(body, what)
        error = parse_error(_json(response))
        if error is not None and error[0] in no:
            return None
        raise fail(response, base, what, self._authenticated)

    async def _get(self, key: str) -> tuple[Entry | None, int]:
        """The key's Entry (or None) and the store index the reply was served at."""

        def parse(response: httpx.Response, base: str) -> tuple[Entry | None, int]:
            header = response.headers.get("X-Etcd-Index", "")
            store_index = int(header) if header.isdigit() else 0
            found = self._outcome(response, base, f"reading {key}", (200,), (KEY_NOT_FOUND,))
            if found is None:
                return None, store_index
            value, index = found
            if value is None:
                raise KVProtocolError(f"{API}: {key} has no value")
            return Entry(key, value, index), max(store_index, index)

        return await self._http.call("GET", key_path(key), parse, params={"quorum": "true"})

    async def get(self, key: str) -> Entry | None:
        return (await self._get(key))[0]

    async def list_prefix(self, prefix: str, limit: int) -> list[Entry]:
        """v2 has directories, not prefixes: `prefix` must end with "/" (the directory's entries)."""
        if not prefix.endswith("/"):
            raise KVError(f"{API} lists directories only: {prefix!r} does not end with '/'")

        def parse(response: httpx.Response, base: str) -> list[Entry]:
            if response.status_code == 200:
                body = _json(response)
                if body is None:
                    raise fail(response, base, f"listing {prefix}", self._authenticated)
                return parse_dir(body, prefix, limit)
            error = parse_error(_json(response))
            if error is not None and error[0] == KEY_NOT_FOUND:
                return []
            raise fail(response, base, f"listing {prefix}", self._authenticated)

        params = {"recursive": "true", "sorted": "true", "quorum": "true"}
        return await self._http.call("GET", key_path(prefix.rstrip("/")), parse, params=params)

    async def _put(
        self, key: str, value: bytes, params: dict[str, str], what: str, no: tuple[int, ...]
    ) -> Entry | None:
        text = encode_value(key, value)

        def parse(response: httpx.Response, base: str) -> Entry | None:
            found = self._outcome(response, base, f"{what} {key}", (200, 201), no)
            return None if found is None else Entry(key, bytes(value), found[1])

        return await self._http.call("PUT", key_path(key), parse, params=params, data={"value": text})

    async def create(self, key: str, value: bytes) -> Entry | None:
        return await self._put(key, value, {"prevExist": "false"}, "creating", (NODE_EXISTS,))

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None:
        if revision <= 0:
            return None
        return await self._put(key, value, {"prevIndex": str(revision)}, "updating", (COMPARE_FAILED, KEY_NOT_FOUND))

    async def delete(self, key: str, revision: int | None = None) -> bool:
        if revision is not None and revision <= 0:
            return False
        params = {"prevIndex": str(revision)} if revision is not None else None

        def parse(response: httpx.Response, base: str) -> bool:
            found = self._outcome(response, base, f"deleting {key}", (200,), (COMPARE_FAILED, KEY_NOT_FOUND))
            return found is not None

        return await self._http.call("DELETE", key_path(key), parse, params=params)

    async def put_expiring(self, key: str, value: bytes, ttl_seconds: int, *, only_if_present: bool = False) -> bool:
        params = {"ttl": str(ttl_seconds)}
        if only_if_present:
            params["prevExist"] = "true"
        what = "renewing" if only_if_present else "writing"
        return await self._put(key, value, params, what, (KEY_NOT_FOUND,) if only_if_present else ()) is not None

    async def ping(self) -> None:
        await self._get("locksmith/ping")

    async def watch(self, key: str, after_revision: int) -> AsyncIterator[Change]:
        """Long-poll for changes after `after_revision`. When etcd has dropped that part of
        its event history (errorCode 401) the key's current state stands in for it. Raises
        KVUnavailable when no endpoint answered for `retry_budget` seconds in a row."""
        last = after_revision
        reconnect = Reconnect(API, key, self.options.retry_budget)
        while True:
            params = {"wait": "true", "waitIndex": str(last + 1)}
            try:
                base, response = await self._http.open_stream(
                    "GET", key_path(key), params=params, read_timeout=WATCH_IDLE_SECONDS
                )
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.ReadTimeout:
                continue  # an idle long poll: ask again
            except (KVUnavailable, *TRANSPORT_ERRORS) as exc:
                self._http.raise_if_tls(exc, self._http.current)
                reconnect.unreachable(exc)
                await reconnect.pause()
                continue
            body = _json(response)
            error = parse_error(body)
            if response.status_code == 200 and error is None and body is not None:
                reconnect.answered()
                change = parse_event(body, key)
                if change.revision > last:
                    last = change.revision
                    yield change
                continue
            if error is not None and error[0] == EVENT_INDEX_CLEARED:
                entry, index = await self._get(key)
                missed, last = resync(key, entry, index, last)
                if missed is not None:
                    yield missed
                continue
            problem = fail(response, base, f"watching {key}", self._authenticated)
            if not isinstance(problem, EndpointUnhealthy):
                raise problem
            await reconnect.pause()

    async def aclose(self) -> None:
        await self._http.aclose()
