"""`locksmith-update-server`: an Omaha server for development, tests and the demo, on loopback only.

Releases live in `<root>/<channel>/<version>/`, written by `locksmith-pack-release` in the format of
locksmith.protocol.release: `release.json`, the payload and its detached signature.
A request's `track` picks the channel; the newest version there is offered unless the client has it.
Events the clients report are kept in memory (GET /events) and appended to `--events-file` as JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from locksmith.cli import fail
from locksmith.logging import configure_logging
from locksmith.protocol import omaha
from locksmith.protocol import release as release_format
from locksmith.safe_text import scrub

PROG = "locksmith-update-server"
UPDATE_PATH = "/v1/update/"
MAX_REQUEST_BYTES = omaha.MAX_DOCUMENT_BYTES


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Dotted versions compare numerically part by part (1068.10.0 > 1068.9.0); text parts after numbers."""
    parts = re.split(r"[.\-+_]", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


@dataclass(frozen=True)
class Published:
    """A release as the server offers it: where it lives, and its release.json."""

    channel: str
    directory: Path
    release: release_format.Release

    @property
    def version(self) -> str:
        return self.release.version


def _load_release(directory: Path, channel: str) -> Published | None:
    try:
        meta = release_format.parse_release((directory / release_format.RELEASE_FILE).read_text())
    except (OSError, release_format.ReleaseFormatError) as exc:
        print(scrub(f"{PROG}: skipping {directory}: bad {release_format.RELEASE_FILE} ({exc})"), file=sys.stderr)
        return None
    if not (directory / meta.name).is_file():
        print(scrub(f"{PROG}: skipping {directory}: payload {meta.name} missing"), file=sys.stderr)
        return None
    return Published(channel, directory, meta)


def newest_release(root: Path, channel: str) -> Published | None:
    channel_dir = root / channel
    if not re.fullmatch(r"[A-Za-z0-9._-]+", channel) or channel.startswith(".") or not channel_dir.is_dir():
        return None
    releases = [r for d in channel_dir.iterdir() if d.is_dir() and (r := _load_release(d, channel)) is not None]
    return max(releases, key=lambda r: version_key(r.version), default=None)


def in_private_network_namespace() -> bool:
    """Whether this process runs in a named network namespace (`ip netns add`, as the VM fleet's): there
    an address that is not loopback is still private, unreachable from the machine's own network."""
    try:
        own = os.stat("/proc/self/ns/net")
        named = [os.stat(path) for path in Path("/run/netns").iterdir()]
    except OSError:
        return False  # cannot tell: assume the machine's own network
    return any((n.st_dev, n.st_ino) == (own.st_dev, own.st_ino) for n in named)


class DevServer:
    """The server in a background thread. Test hooks: `truncate_downloads` cuts the next N payload
    downloads in half; `reply_override` replaces every Omaha reply with the given bytes."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        events_file: Path | None = None,
        log: TextIO | None = None,
        public_url: str | None = None,
    ) -> None:
        """`log` receives the request log and events (default: stderr at the time of writing).

        `public_url`: the address clients reach this server at, when that is not where it listens (a VM
        behind qemu's guestfwd, a host inside a network namespace); payload URLs are built from it."""
        if not ipaddress.ip_address(host).is_loopback and not in_private_network_namespace():
            raise ValueError(
                f"--host {host} is not a loopback address; this server is for development only"
                " (other addresses only inside a private network namespace: ip netns exec)"
            )
        self.root = Path(root)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.events_file = events_file
        self.log = log
        self.events: list[dict[str, Any]] = []
        self.downloads: list[dict[str, Any]] = []  # payload fetches: client address, file, time
        self.requests = 0
        self.truncate_downloads = 0
        self.reply_override: bytes | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        """The loopback port it listens on (what a qemu guestfwd or a namespace forward points at)."""
        return int(self._httpd.server_address[1])

    @property
    def update_url(self) -> str:
        return self.base_url + UPDATE_PATH

    def start(self) -> DevServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="devserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record_event(self, request: omaha.ParsedRequest, event: omaha.Event) -> None:
        entry = {
            "machineid": request.machineid,
            "track": request.track,
            "version": request.version,
            "eventtype": event.type,
            "eventresult": event.result,
            "errorcode": event.errorcode,
            "previousversion": event.previousversion,
            "time": round(time.time(), 3),  # when it arrived (the VM demo's timeline)
        }
        with self._lock:
            self.events.append(entry)
            if self.events_file:
                with self.events_file.open("a") as f:
                    f.write(json.dumps(entry) + "\n")
        self.write_log(f"event {json.dumps(entry)}")

    def write_log(self, line: str) -> None:
        out = self.log or sys.stderr
        out.write(scrub(f"{PROG}: {line}\n"))
        out.flush()

    def answer(self, body: bytes) -> bytes:
        request = omaha.parse_request(body)
        with self._lock:
            self.requests += 1
        for event in request.events:
            self.record_event(request, event)
        if self.reply_override is not None:
            return self.reply_override
        if not request.updatecheck:
            return omaha.build_response(request.appid, None)
        release = newest_release(self.root, request.track)
        if release is None or version_key(release.version) <= version_key(request.version):
            return omaha.build_response(request.appid, omaha.NoUpdate())
        offer = omaha.UpdateOffer(
            version=release.version,
            codebases=(f"{self.base_url}/{release.channel}/{release.version}/",),
            package_name=release.release.name,
            size=release.release.size,
            sha256_b64=release.release.sha256,
        )
        return omaha.build_response(request.appid, offer)

    def take_truncation(self) -> bool:
        with self._lock:
            if self.truncate_downloads > 0:
                self.truncate_downloads -= 1
                return True
            return False


def _handler_for(server: DevServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            server.write_log(f"{self.address_string()} {format % args}")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up first (a deadline of its own): nothing to answer, not a server fault.
                server.write_log(f"{self.address_string()} left before the {code} reply")

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_REQUEST_BYTES:
                self._send(400, b"bad Content-Length\n", "text/plain")
                return
            body = self.rfile.read(length)
            if self.path.split("?")[0] != UPDATE_PATH:
                self._send(404, b"POST Omaha requests to /v1/update/\n", "text/plain")
                return
            try:
                reply = server.answer(body)
            except omaha.OmahaError as exc:
                self._send(400, f"{exc}\n".encode(), "text/plain")
                return
            self._send(200, reply, "text/xml; charset=utf-8")

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/events":
                with server._lock:
                    body = json.dumps(server.events).encode()
                self._send(200, body, "application/json")
                return
            parts = [p for p in path.split("/") if p]
            if len(parts) != 3 or any(p.startswith(".") for p in parts):
                self._send(404, b"not found\n", "text/plain")
                return
            file = server.root.joinpath(*parts)
            if not file.is_file():
                self._send(404, b"not found\n", "text/plain")
                return
            is_payload = release_format.is_payload_file(parts[2])
            if is_payload:
                with server._lock:
                    server.downloads.append({"client": self.client_address[0], "file": path, "time": time.time()})
            if not (is_payload and server.take_truncation()):
                self._send_file(file)
                return
            # Promise the whole file, send half, hang up: what a dying mirror does.
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)

        def _send_file(self, file: Path) -> None:
            """Streamed: a payload is hundreds of MiB, and a fleet fetches it at once."""
            try:
                with file.open("rb") as f:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
                    self.end_headers()
                    shutil.copyfileobj(f, self.wfile, 1 << 20)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away mid-download

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="directory of <channel>/<version>/ releases")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument("--events-file", type=Path, help="append the events clients report here, one JSON per line")
    args = p.parse_args(argv)
    configure_logging(level="warning")
    if not args.root.is_dir():
        return fail(PROG, f"--root {args.root} is not a directory; pack a release first", 1)
    try:
        server = DevServer(args.root, args.host, args.port, args.events_file)
    except ValueError as exc:
        return fail(PROG, str(exc), 1)
    except OSError as exc:
        return fail(PROG, f"cannot listen on {args.host}:{args.port}: {exc.strerror}", 1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(server.update_url, flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
