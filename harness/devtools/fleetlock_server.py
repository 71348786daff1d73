"""A small real FleetLock server on loopback, for tests and the demo.

Per-group semaphores with a slot limit (default 1, overridable per group), idempotent pre-reboot and
steady-state, every operation recorded. Runs a stdlib ThreadingHTTPServer in a daemon thread, so
both sync and asyncio tests can use it::

    with FleetLockServer(max_slots=1) as server:
        client = FleetLockClient(server.url, "node-a")
        ...
        assert server.holders("default") == ["node-a"]

    python -m harness.devtools.fleetlock_server --port 8080 --max 2   # prints its URL, serves until killed

Error replies follow the protocol: a 4xx/5xx status with {"kind": …, "value": …}. The wire format
itself (paths, header, bodies) is locksmith.protocol.fleetlock, shared with the client.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from locksmith.logging import configure_logging
from locksmith.protocol import fleetlock

_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class RecordedOperation:
    """One request the server handled: the action, the client params, and the HTTP status answered."""

    action: str
    node_id: str
    group: str
    status: int


class FleetLockServer:
    """FleetLock on `host` (loopback only) and `port` (0 = any free port)."""

    def __init__(
        self,
        max_slots: int = 1,
        group_slots: Mapping[str, int] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"FleetLockServer listens on loopback only, not {host}")
        self.max_slots = max_slots
        self.group_slots = dict(group_slots or {})
        self.operations: list[RecordedOperation] = []
        #: Set to (status, kind, value) to answer every request with that error (e.g. 503 for an outage).
        self.fail_with: tuple[int, str, str] | None = None
        self._holders: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def holders(self, group: str = "default") -> list[str]:
        with self._lock:
            return list(self._holders.get(group, []))

    def start(self) -> FleetLockServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fleetlock-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FleetLockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, dict[str, str]]:
        """Process one request; returns (status, JSON body). Thread-safe."""
        action = fleetlock.operation_of(path)
        if action is None:
            return 404, fleetlock.error_body("not_found", f"no such endpoint {path}")
        status, reply, node_id, group = self._decide(action, headers, raw)
        with self._lock:
            self.operations.append(RecordedOperation(action, node_id, group, status))
        return status, reply

    def _decide(
        self, action: fleetlock.Operation, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], str, str]:
        if self.fail_with is not None:
            status, kind, value = self.fail_with
            return status, fleetlock.error_body(kind, value), "", ""
        if not fleetlock.has_protocol_header(dict(headers)):
            value = f"header {fleetlock.HEADER_NAME}: true is required"
            return 400, fleetlock.error_body("missing_header", value), "", ""
        try:
            params = fleetlock.parse_request_body(raw)
        except fleetlock.FleetLockFormatError as exc:
            return 400, fleetlock.error_body(exc.kind, str(exc)), exc.node_id, ""
        node_id, group = params.id, params.group
        with self._lock:
            holders = self._holders.setdefault(group, [])
            if action == "steady-state":
                if node_id in holders:
                    holders.remove(node_id)
                return 200, {}, node_id, group
            limit = self.group_slots.get(group, self.max_slots)
            if node_id in holders:
                return 200, {}, node_id, group
            if len(holders) >= limit:
                value = f"all {limit} reboot slots of group {group} are taken (by {', '.join(holders)})"
                return 409, fleetlock.error_body("failed_lock", value), node_id, group
            holders.append(node_id)
            return 200, {}, node_id, group


def _handler_for(server: FleetLockServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self._reply(413, fleetlock.error_body("bad_request", "body too large"))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(*server.handle(self.path, headers, self.rfile.read(length)))

        def do_GET(self) -> None:
            self._reply(405, fleetlock.error_body("method_not_allowed", "FleetLock uses POST"))

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # operations are recorded; stderr stays quiet in tests

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetlock_server", description="A small FleetLock server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--max", type=int, default=1, help="reboot slots per group (default 1)")
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    try:
        server = FleetLockServer(max_slots=args.max, port=args.port).start()
    except OSError as exc:
        print(f"fleetlock_server: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(server.url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
