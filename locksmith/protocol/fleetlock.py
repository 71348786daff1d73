"""The FleetLock wire format (Fedora CoreOS / Zincati's HTTP reboot lock), both ends of it.

    POST {base}/v1/pre-reboot    take a reboot slot for (id, group)
    POST {base}/v1/steady-state  give it back
    header `fleet-lock-protocol: true`, body {"client_params": {"id": ID, "group": GROUP}}

200 means done, and both calls are idempotent. Other replies are 4xx/5xx with {"kind": …, "value": …}.
Pure code, no I/O: the client (locksmith/fleetlock.py) and the dev server
(harness/devtools/fleetlock_server.py) both build and read messages here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

GROUP_PATTERN: Final = re.compile(r"^[a-zA-Z0-9.-]+$")
DEFAULT_GROUP: Final = "default"
HEADER_NAME: Final = "fleet-lock-protocol"
PROTOCOL_HEADER: Final = {HEADER_NAME: "true"}
PRE_REBOOT: Final = "/v1/pre-reboot"
STEADY_STATE: Final = "/v1/steady-state"

Operation = Literal["pre-reboot", "steady-state"]
PATHS: Final[dict[Operation, str]] = {"pre-reboot": PRE_REBOOT, "steady-state": STEADY_STATE}
# An error reply is {"kind": …, "value": …}: a few hundred bytes; anything far larger is not one.
MAX_ERROR_BODY_BYTES: Final = 64 * 1024
MAX_KIND_CHARS: Final = 64
MAX_VALUE_CHARS: Final = 300


class FleetLockFormatError(ValueError):
    """A request that is not FleetLock; str() is one line naming what is wrong, `kind` its error kind,
    `node_id` the id when the body named one (a bad group still says who asked)."""

    def __init__(self, kind: str, message: str, node_id: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.node_id = node_id


@dataclass(frozen=True, slots=True)
class ClientParams:
    """Who asks: the node's id (normally /etc/machine-id) and its group."""

    id: str
    group: str


def validate_group(group: str) -> str:
    """`group` if it is a valid FleetLock group name, else ValueError with one line."""
    if not GROUP_PATTERN.match(group):
        raise ValueError(f"FleetLock group {group!r} is invalid: use letters, digits, '.' and '-' only")
    return group


def operation_of(path: str) -> Operation | None:
    """The operation a request path names, None for any other path."""
    for operation, known in PATHS.items():
        if path == known:
            return operation
    return None


def request_body(params: ClientParams) -> dict[str, Any]:
    """The JSON body of either request."""
    return {"client_params": {"id": params.id, "group": params.group}}


def has_protocol_header(headers: dict[str, str]) -> bool:
    """True when `headers` (names lower-cased) carry `fleet-lock-protocol: true`."""
    return headers.get(HEADER_NAME, "").lower() == "true"


def parse_request_body(raw: bytes) -> ClientParams:
    """The client params of a request body; FleetLockFormatError (kind bad_request / bad_group) if it is
    not `{"client_params":{"id":..,"group":..}}` with a non-empty id and a valid group."""
    try:
        params = json.loads(raw)["client_params"]
        node_id, group = params["id"], params["group"]
    except (ValueError, KeyError, TypeError):
        raise FleetLockFormatError("bad_request", 'body must be {"client_params":{"id":..,"group":..}}') from None
    if not isinstance(node_id, str) or not node_id:
        raise FleetLockFormatError("bad_request", "client_params.id must be a non-empty string")
    if not isinstance(group, str) or not GROUP_PATTERN.match(group):
        raise FleetLockFormatError("bad_group", f"group {group!r} must match {GROUP_PATTERN.pattern}", node_id)
    return ClientParams(node_id, group)


def error_body(kind: str, value: str) -> dict[str, str]:
    """The JSON body of an error reply."""
    return {"kind": kind, "value": value}


def parse_error_body(raw: bytes) -> tuple[str, str] | None:
    """(kind, value) of an error reply, each folded onto one line and cut short; None if the body is not one.

    The body comes from the network: never trusted to be small, UTF-8, shallow or printable."""
    if len(raw) > MAX_ERROR_BODY_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("kind"), str) and isinstance(data.get("value"), str):
        return one_line(data["kind"])[:MAX_KIND_CHARS], one_line(data["value"])[:MAX_VALUE_CHARS]
    return None


def one_line(text: str) -> str:
    """White space (newlines too) folded to single spaces, anything else unprintable escaped."""
    folded = " ".join(text.split())
    return folded if folded.isprintable() else folded.encode("unicode_escape").decode("ascii")
