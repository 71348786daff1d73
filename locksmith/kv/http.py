"""What the two etcd HTTP backends share: TLS set-up, failover across endpoints, bounded retries.

Failover: every request starts at the endpoint that last answered and walks the list once
("a round"); any live member serves, since etcd forwards writes to its leader. A round in
which no endpoint answered is retried by tenacity with jittered exponential back-off until
`KVOptions.retry_budget` is spent, then KVUnavailable.

Writes are retried too: every write the backends send is guarded by a compare (revision,
or "absent" for create), so a write whose first attempt landed cannot land twice — the retry
reports a conflict and the caller re-reads, as it does on any conflict. A CAS conflict
itself is an answer, never retried here.

A TLS failure is not retried: it will not heal by itself, and the user needs the one line
that names the CA file.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_before_delay, wait_random_exponential

from locksmith.deadline import total_deadline
from locksmith.kv.base import KVAuthError, KVOptions, KVProtocolError, KVUnavailable

T = TypeVar("T")


# httpx wraps most network failures, but an SSL alert that arrives while reading a reply
# (TLS 1.3 reports a refused client certificate that way) can surface as a bare SSLError.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, ssl.SSLError)


class EndpointUnhealthy(Exception):
    """Raised by a reply parser: this member cannot serve now (no leader, 5xx); try another."""


class _RoundFailed(Exception):
    """No endpoint answered in one pass over the list."""

    def __init__(self, last: str) -> None:
        super().__init__(last)
        self.last = last


def build_ssl_context(options: KVOptions) -> ssl.SSLContext:
    """Verify the server with the given CA (or the system store); present a client
    certificate only when one is configured — CA-only is a supported set-up."""
    try:
        ctx = ssl.create_default_context(cafile=options.ca_file) if options.ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise KVAuthError(f"cannot load the etcd CA file {options.ca_file}: {_reason(exc)}") from None
    if options.key_file and not options.cert_file:
        raise KVAuthError(f"an etcd key file ({options.key_file}) needs a certificate file too: set the cert file")
    if options.cert_file:
        try:
            ctx.load_cert_chain(options.cert_file, options.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise KVAuthError(
                f"cannot load the etcd client certificate {options.cert_file}"
                f" / key {options.key_file or '(in the certificate file)'}: {_reason(exc)}"
            ) from None
    return ctx


class HTTPEndpoints:
    """An httpx client plus the endpoint list, with failover and bounded retries."""

    def __init__(self, options: KVOptions, api: str, auth: httpx.Auth | None = None) -> None:
        self.options = options
        self.api = api
        self.urls = [e.address for e in options.endpoints]
        self._preferred = 0
        # Plain http:// endpoints never speak TLS (redirects are not followed), and httpx would otherwise
        # load the system CA bundle for every client: milliseconds of CPU and a few MiB each.
        verify: ssl.SSLContext | bool = False
        if any(u.startswith("https://") for u in self.urls) or options.ca_file or options.cert_file:
            verify = build_ssl_context(options)
        self.client = httpx.AsyncClient(verify=verify, timeout=options.request_timeout, auth=auth)

    @property
    def current(self) -> str:
        return self.urls[self._preferred]

    def _order(self) -> list[int]:
        n = len(self.urls)
        return [(self._preferred + i) % n for i in range(n)]

    async def call(
        self,
        method: str,
        path: str,
        parse: Callable[[httpx.Response, str], T],
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Callable[[], Mapping[str, str]] | None = None,
    ) -> T:
        """Send one request to the first endpoint that answers; `parse(response, base_url)`
        turns the reply into a result, a KVError, or EndpointUnhealthy (try the next one)."""
        budget = self.options.retry_budget
        deadline = time.monotonic() + budget

        async def one_round() -> T:
            last = "no endpoint tried"
            for i in self._order():
                base = self.urls[i]
                remaining = deadline - time.monotonic()
                timeout = max(0.05, min(self.options.request_timeout, remaining))
                try:
                    async with total_deadline(timeout):
                        response = await self.client.request(
                            method,
                            base + path,
                            json=json,
                            params=params,
                            data=data,
                            headers=dict(headers()) if headers else None,
                            timeout=timeout,
                        )
                    result = parse(response, base)
                except TRANSPORT_ERRORS as exc:
                    self.raise_if_tls(exc, base)
                    last = f"{base}: {_describe(exc)}{self._tls_hint(exc, base)}"
                    continue
                except EndpointUnhealthy as exc:
                    last = f"{base}: {exc}"
                    continue
                self._preferred = i
                return result
            raise _RoundFailed(last)

        return await self.retrying(one_round)

    async def retrying(self, fn: Callable[[], Awaitable[T]]) -> T:
        budget = self.options.retry_budget
        try:
            async for attempt in AsyncRetrying(
                stop=stop_before_delay(budget),
                wait=wait_random_exponential(multiplier=0.05, max=1.0),
                retry=retry_if_exception_type(_RoundFailed),
                reraise=True,
            ):
                with attempt:
                    return await fn()
        except _RoundFailed as exc:
            raise KVUnavailable(
                f"no {self.api} endpoint answered within {budget:g}s ({', '.join(self.urls)}); last error: {exc.last}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - AsyncRetrying either returns or raises

    async def open_stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> tuple[str, httpx.Response]:
        """Open a long-lived response on the first endpoint that accepts it (one round, no
        back-off: the watch loop owns reconnecting). The caller must close the response."""
        last = "no endpoint tried"
        timeout = httpx.Timeout(self.options.request_timeout, read=read_timeout)
        for i in self._order():
            base = self.urls[i]
            request = self.client.build_request(
                method, base + path, json=json, params=params, headers=headers, timeout=timeout
            )
            try:
                # Only until the headers: the body is the stream, bounded by the caller's read timeout.
                async with total_deadline(self.options.request_timeout):
                    response = await self.client.send(request, stream=True)
            except TRANSPORT_ERRORS as exc:
                self.raise_if_tls(exc, base)
                last = f"{base}: {_describe(exc)}"
                continue
            self._preferred = i
            return base, response
        raise KVUnavailable(f"no {self.api} endpoint answered ({', '.join(self.urls)}); last error: {last}")

    def _tls_hint(self, exc: BaseException, base: str) -> str:
        # Under TLS 1.3 a server that wants a client certificate may just drop the connection
        # after the handshake, so the refusal is not always reported as a TLS alert.
        if base.startswith("https://") and not self.options.cert_file and not isinstance(exc, httpx.ConnectError):
            return " (if etcd requires client certificates, give a client certificate and key)"
        return ""

    def raise_if_tls(self, exc: BaseException, base: str) -> None:
        """KVAuthError when `exc` is a TLS failure: it will not heal by retrying."""
        problem = _tls_problem(exc)
        if problem is None:
            return
        if isinstance(problem, ssl.SSLCertVerificationError):
            ca = f"the CA file {self.options.ca_file}" if self.options.ca_file else "the system CA store"
            raise KVAuthError(
                f"TLS: the certificate of {self.api} at {base} does not verify with {ca}"
                f" ({problem.verify_message or _reason(problem)}): give the CA that signed the etcd server certificate"
            ) from None
        who = f"client certificate {self.options.cert_file}" if self.options.cert_file else "no client certificate"
        raise KVAuthError(
            f"TLS: {self.api} at {base} refused the connection ({_reason(problem)}) with {who}:"
            " check the client certificate and key (and that the server uses TLS)"
        ) from None

    async def aclose(self) -> None:
        await self.client.aclose()


def _tls_problem(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return cur
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, ssl.SSLError):
                return arg
        cur = cur.__cause__ or cur.__context__
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def json_body(response: httpx.Response, what: str) -> Any:
    """The reply's JSON, or KVProtocolError naming what we asked for."""
    try:
        return response.json()
    except ValueError:
        snippet = response.text[:80].replace("\n", " ")
        raise KVProtocolError(
            f"{what}: {response.url.host}:{response.url.port} answered HTTP {response.status_code}"
            f" with a body that is not JSON ({snippet!r}): is this endpoint an etcd server?"
        ) from None


__all__ = ["TRANSPORT_ERRORS", "EndpointUnhealthy", "HTTPEndpoints", "build_ssl_context", "json_body"]
