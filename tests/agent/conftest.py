from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.harness import Harness
from harness.devtools.etcd import EtcdCluster
from strategies.etcd_lock import EtcdLockStrategy


@pytest.fixture
async def harness(etcd: EtcdCluster, tmp_path: Path) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        kwargs.setdefault("strategy", EtcdLockStrategy())
        h = Harness(tmp=tmp_path, endpoints=etcd.endpoints, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


@pytest.fixture
def unused_http_server() -> Any:
    """A tiny real HTTP server on 127.0.0.1 answering GET with a settable status code."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    code = {"value": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(code["value"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def set_code(value: int) -> None:
        code["value"] = value

    yield f"http://127.0.0.1:{server.server_address[1]}/healthz", set_code
    server.shutdown()
    server.server_close()
