"""FleetLock client (the HTTP reboot-lock protocol of Fedora CoreOS / Zincati).

    POST {base}/v1/pre-reboot    take a reboot slot for (id, group)
    POST {base}/v1/steady-state  give it back
    header `fleet-lock-protocol: true`, body {"client_params": {"id": ID, "group": GROUP}}

200 means done, and both calls are idempotent, so retrying is always safe. Other replies carry
{"kind": …, "value": …} and become FleetLockError, one line. Only connection failures (the request
never reached a server) are retried here, with jittered exponential back-off and a bound; a busy
lock is an answer, not a failure, and the caller decides when to ask again.
"""

from __future__ import annotations

import json
import re
from typing import Final, Literal

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

GROUP_PATTERN: Final = re.compile(r"^[a-zA-Z0-9.-]+$")
DEFAULT_GROUP: Final = "default"
PROTOCOL_HEADER: Final = {"fleet-lock-protocol": "true"}
PRE_REBOOT: Final = "/v1/pre-reboot"
STEADY_STATE: Final = "/v1/steady-state"

Operation = Literal["pre-reboot", "steady-state"]


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


def validate_group(group: str) -> str:
    """`group` if it is a valid FleetLock group name, else ValueError with one line."""
    if not GROUP_PATTERN.match(group):
        raise ValueError(f"FleetLock group {group!r} is invalid: use letters, digits, '.' and '-' only")
    return group


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
        self._http = httpx.AsyncClient(timeout=request_timeout, transport=transport, headers=PROTOCOL_HEADER)

    async def pre_reboot(self) -> None:
        """Take a reboot slot (or confirm we hold one). Raises FleetLockError if refused (e.g. slots full)."""
        await self._post("pre-reboot", PRE_REBOOT)

    async def steady_state(self) -> None:
        """Release our slot (a no-op on the server if we hold none)."""
        await self._post("steady-state", STEADY_STATE)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FleetLockClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _post(self, operation: Operation, path: str) -> None:
        url = self.base_url + path
        body = {"client_params": {"id": self.node_id, "group": self.group}}
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_random_exponential(multiplier=0.2, max=self._max_backoff),
                # Connect errors only: the request never left, so retrying cannot double anything.
                retry=retry_if_exception_type((httpx.ConnectError, httpx.ConnectTimeout)),
                reraise=True,
            ):
                with attempt:
                    response = await self._http.post(url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise FleetLockUnavailableError(
                f"cannot reach the FleetLock server at {url} after {self._attempts} attempts: {_one_line(str(exc))}"
            ) from None
        except httpx.HTTPError as exc:
            raise FleetLockUnavailableError(
                f"FleetLock {operation} to {url} failed: {exc.__class__.__name__}: {_one_line(str(exc))}"
            ) from None
        if response.status_code == 200:
            return
        raise _error_from(operation, response)


def _error_from(operation: Operation, response: httpx.Response) -> FleetLockError:
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("kind"), str) and isinstance(data.get("value"), str):
        return FleetLockError(operation, response.status_code, _one_line(data["kind"]), _one_line(data["value"]))
    text = _one_line(response.text)[:200] or "(empty body)"
    return FleetLockError(operation, response.status_code, "not_fleetlock", f"unexpected reply: {text}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
