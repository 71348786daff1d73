"""A loopback HTTP server that answers like a broken or foreign server: every backend call
must end in one KVProtocolError line, never a traceback or a write we did not mean."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from locksmith.kv import KVOptions, KVProtocolError, KVStore, open_store, parse_endpoints


class FakeServer:
    """Answers every request with the configured status, content type and body."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.content_type = "application/json"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(server.status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def open_fake(backend: str, fake: FakeServer) -> KVStore:
    prefix = "etcd2+" if backend == "etcd2" else ""
    return open_store(KVOptions(parse_endpoints([prefix + fake.url]), retry_budget=0.5))


HTML = b"<html><body>Welcome to nginx</body></html>"

V3_CASES = [
    (200, HTML),
    (200, b'{"kvs": "nope"}'),
    (200, b'{"kvs": [{"key": "%%%", "mod_revision": "3"}]}'),
    (200, b'{"kvs": [{"key": "aw==", "value": "dg==", "mod_revision": "three"}]}'),
    (200, b'{"kvs": [{"key": "aw==", "value": "dg==", "mod_revision": "0"}]}'),
    (200, b'{"succeeded": "yes", "header": {"revision": "5"}}'),
    (200, b'{"succeeded": true}'),
    (200, b"[1, 2, 3]"),
    (200, b'{"header": "x"}'),
    (404, b"404 page not found"),
    (400, b"\xff\xfe garbage"),
]

V2_CASES = [
    (200, HTML),
    (200, b"[]"),
    (200, b'{"node": {"value": 5, "modifiedIndex": 3}}'),
    (200, b'{"node": {"value": "v", "modifiedIndex": "3"}}'),
    (200, b'{"node": {"value": "v", "modifiedIndex": 0}}'),
    (200, b'{"node": {"key": "/k", "dir": true, "modifiedIndex": 3}}'),
    (201, b'{"action": "create"}'),
    (412, b'{"errorCode": "105"}'),
    (404, b"404 page not found"),
]


async def each_operation(store: KVStore) -> list[str]:
    """Run every operation; return the error lines (each must be a KVProtocolError)."""
    lines = []
    for call in (
        lambda: store.get("k"),
        lambda: store.create("k", b"v"),
        lambda: store.compare_and_swap("k", b"v", 3),
        lambda: store.delete("k", 3),
    ):
        try:
            await call()
        except KVProtocolError as exc:
            lines.append(str(exc))
        else:
            lines.append("")
    return lines


@pytest.mark.parametrize(("status", "body"), V3_CASES)
async def test_etcd3_garbage_is_a_protocol_error(fake: FakeServer, status: int, body: bytes) -> None:
    fake.status, fake.body = status, body
    store = open_fake("etcd3", fake)
    try:
        lines = await each_operation(store)
        relevant = [line for line in lines if line]
        assert relevant, f"no operation rejected {body!r}"
        assert all("\n" not in line for line in relevant)
        if b"succeeded" not in body:  # a txn-shaped reply may pass as an empty range reply
            assert lines[0], "get accepted garbage"
    finally:
        await store.aclose()


@pytest.mark.parametrize(("status", "body"), V2_CASES)
async def test_etcd2_garbage_is_a_protocol_error(fake: FakeServer, status: int, body: bytes) -> None:
    fake.status, fake.body = status, body
    store = open_fake("etcd2", fake)
    try:
        lines = await each_operation(store)
        # Every operation that could see this reply as its answer must reject it.
        relevant = [line for line in lines if line]
        assert relevant, f"no operation rejected {body!r}"
        assert all("\n" not in line for line in relevant)
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_html_page_is_named_as_not_etcd(fake: FakeServer, backend: str) -> None:
    fake.status, fake.body, fake.content_type = 200, HTML, "text/html"
    store = open_fake(backend, fake)
    try:
        for line in await each_operation(store):
            assert "etcd" in line and fake.url.removeprefix("http://") in line
    finally:
        fake.content_type = "application/json"
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_watch_on_garbage_is_a_protocol_error(fake: FakeServer, backend: str) -> None:
    fake.status, fake.body = 200, b'{"result": {"created": true}}\nnot json at all\n'
    if backend == "etcd2":
        fake.body = b'{"action": "set", "node": {"modifiedIndex": 9}}'
    store = open_fake(backend, fake)
    try:
        with pytest.raises(KVProtocolError):
            async with asyncio.timeout(15):
                async for _ in store.watch("k", 0):
                    pass
    finally:
        await store.aclose()
