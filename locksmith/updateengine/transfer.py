"""The update engine's HTTP transfers: the Omaha exchange, the payload stream and its signature.

Each is bounded whole (locksmith.deadline), not only per read, and each reply body is size-capped, so a
hostile or broken server can neither stall the engine nor make it buffer without end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from locksmith.deadline import total_deadline
from locksmith.protocol import omaha
from locksmith.protocol.omaha import ErrorCode

MAX_SIGNATURE_BYTES = 64 * 1024
CHUNK_SIZE = 64 * 1024
# The slowest payload transfer we wait for (a 1 GiB payload: about 4.5 h); slower is a stalled server.
PAYLOAD_FLOOR_BYTES_PER_SECOND = 64 * 1024


class UpdateFailure(Exception):
    """Ends an attempt: reported to the server as an error event with `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class TransferFailed(Exception):
    """One download attempt failed; another attempt, or another codebase, may succeed."""


async def omaha_exchange(http: httpx.AsyncClient, server: str, body: bytes, within: float) -> bytes:
    """POST one Omaha request; the reply document (at most omaha.MAX_DOCUMENT_BYTES) within `within` s."""
    try:
        headers = {"Content-Type": "text/xml"}
        async with total_deadline(within), http.stream("POST", server, content=body, headers=headers) as reply:
            if reply.status_code != 200:
                raise UpdateFailure(
                    f"update server {server} answered HTTP {reply.status_code}; check SERVER",
                    ErrorCode.OMAHA_REQUEST_ERROR,
                )
            data = bytearray()
            async for chunk in reply.aiter_bytes():
                data += chunk
                if len(data) > omaha.MAX_DOCUMENT_BYTES:
                    raise UpdateFailure(
                        f"update server reply exceeds {omaha.MAX_DOCUMENT_BYTES} bytes; check SERVER",
                        ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR,
                    )
            return bytes(data)
    except httpx.HTTPError as exc:
        raise UpdateFailure(
            f"cannot reach update server {server}: {exc.__class__.__name__}: {exc}", ErrorCode.OMAHA_REQUEST_ERROR
        ) from None


async def stream_payload(
    http: httpx.AsyncClient, url: str, size: int, within: float, take: Callable[[bytes, int], Awaitable[None]]
) -> None:
    """GET the payload and hand each chunk to `take(chunk, bytes received so far)`; exactly `size` bytes,
    within `within` s plus the time the size takes at the floor rate."""
    received = 0
    # A trickling server must not hold the engine for ever; a slow but honest link still gets through.
    deadline = within + size / PAYLOAD_FLOOR_BYTES_PER_SECOND
    try:
        async with total_deadline(deadline), http.stream("GET", url) as reply:
            if reply.status_code != 200:
                raise TransferFailed(f"{url}: HTTP {reply.status_code}")
            async for chunk in reply.aiter_bytes(CHUNK_SIZE):
                received += len(chunk)
                if received > size:
                    raise UpdateFailure(
                        f"{url} is longer than the {size} bytes the server announced", ErrorCode.PAYLOAD_SIZE_MISMATCH
                    )
                await take(chunk, received)
    except httpx.HTTPError as exc:
        raise TransferFailed(f"{url}: {exc.__class__.__name__}: {exc}") from None
    if received < size:
        raise TransferFailed(f"{url}: connection ended after {received} of {size} bytes")


async def fetch_signature(http: httpx.AsyncClient, url: str, within: float) -> bytes:
    try:
        async with total_deadline(within), http.stream("GET", url) as reply:
            if reply.status_code != 200:
                raise TransferFailed(f"{url}: HTTP {reply.status_code}")
            data = bytearray()
            async for chunk in reply.aiter_bytes():
                data += chunk
                if len(data) > MAX_SIGNATURE_BYTES:
                    raise UpdateFailure(
                        f"{url} is over {MAX_SIGNATURE_BYTES} bytes; not a signature",
                        ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR,
                    )
            return bytes(data)
    except httpx.HTTPError as exc:
        raise TransferFailed(f"{url}: {exc.__class__.__name__}: {exc}") from None
