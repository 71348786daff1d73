"""FleetLock client (the HTTP reboot-lock protocol of Fedora CoreOS / Zincati).

The wire format (paths, header, bodies, group names) is locksmith.protocol.fleetlock. 200 means done,
and both calls are idempotent, so retrying is always safe. Other replies carry {"kind": …, "value": …}
and become FleetLockError, one line. Only connection failures (the request never reached a server)
are retried here, with jittered exponential back-off and a bound; a busy lock is an answer, not a
failure, and the caller decides when to ask again.
"""

from __future__ import annotations

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from locksmith.deadline import total_deadline
from locksmith.protocol.fleetlock import (
    DEFAULT_GROUP,
    PATHS,
    PROTOCOL_HEADER,
    ClientParams,
    Operation,
    one_line,
    parse_error_body,
    request_body,
    validate_group,
)


class FleetLockError(Exception):
    """The server answered with an error. `kind`/`value` come from its JSON body; str() is one line."""

    def __init__(self, operation: Operation, status: int, kind: str, value: str) -> None:
        self.operation = operation
        self.status = status
        self.kind = kind
        self.value = value
        super().__init__(f"FleetLock {operation} refused (HTTP {status}, {kind}): {value}")


class FleetLockUnavailableError(Exception):
    """The server could not be reached (after retries) or broke off the exchange; str() is one line."""


class FleetLockClient:
    """Talks FleetLock to `base_url` for one node (`node_id`, usually /etc/machine-id) in one group."""

    def __init__(
        self,
        base_url: str,
        node_id: str,
        group: str = DEFAULT_GROUP,
        *,
        request_timeout: float = 30.0,
        attempts: int = 5,
        max_backoff: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"FleetLock URL {base_url!r} is invalid: use http(s)://host[:port][/path]")
        if not node_id or not node_id.strip():
            raise ValueError("FleetLock node id is empty: set it (normally /etc/machine-id)")
        if attempts < 1:
            raise ValueError(f"FleetLock attempts must be at least 1, got {attempts}")
        self.base_url = str(url).rstrip("/")
        self.node_id = node_id
        self.group = validate_group(group)
        self._attempts = attempts
        self._max_backoff = max_backoff
        self._request_timeout = request_timeout
        self._http = httpx.AsyncClient(timeout=request_timeout, transport=transport, headers=PROTOCOL_HEADER)

    async def pre_reboot(self) -> None:
        """Take a reboot slot (or confirm we hold one). Raises FleetLockError if refused (e.g. slots full)."""
        await self._post("pre-reboot")

    async def steady_state(self) -> None:
        """Release our slot (a no-op on the server if we hold none)."""
        await self._post("steady-state")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FleetLockClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _post(self, operation: Operation) -> None:
        url = self.base_url + PATHS[operation]
        body = request_body(ClientParams(self.node_id, self.group))
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_random_exponential(multiplier=0.2, max=self._max_backoff),
                # Connect errors only: the request never left, so retrying cannot double anything.
                retry=retry_if_exception_type((httpx.ConnectError, httpx.ConnectTimeout)),
                reraise=True,
            ):
                with attempt:
                    async with total_deadline(self._request_timeout):
                        response = await self._http.post(url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise FleetLockUnavailableError(
                f"cannot reach the FleetLock server at {url} after {self._attempts} attempts: {one_line(str(exc))}"
            ) from None
        except httpx.HTTPError as exc:
            raise FleetLockUnavailableError(
                f"FleetLock {operation} to {url} failed: {exc.__class__.__name__}: {one_line(str(exc))}"
            ) from None
        if response.status_code == 200:
            return
        raise _error_from(operation, response)


def _error_from(operation: Operation, response: httpx.Response) -> FleetLockError:
    parsed = parse_error_body(response.content)
    if parsed is not None:
        return FleetLockError(operation, response.status_code, *parsed)
    text = one_line(response.text)[:200] or "(empty body)"
    return FleetLockError(operation, response.status_code, "not_fleetlock", f"unexpected reply: {text}")
