"""What bench/footprint.py serves to the agents it measures: the sd_notify socket (stamping READY=1 and
STATUS= lines), a FIFO the reboot command writes to, and the fake logind stamping each Reboot call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from bench._common import now_ns


class NotifySocket:
    """The sd_notify datagram socket; stamps READY=1 and every STATUS= line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[int, str]] = []
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        stamp = now_ns()
        with contextlib.suppress(BlockingIOError):
            while True:
                data = self.sock.recv(4096)
                for line in data.decode(errors="replace").splitlines():
                    self.messages.append((stamp, line))
        self._changed.set()

    async def wait_for(self, predicate: Any, since: int, within: float = 60.0) -> int:
        """The stamp of the first message after `since` matching `predicate`."""
        async with asyncio.timeout(within):
            while True:
                for stamp, line in self.messages:
                    if stamp >= since and predicate(line):
                        return stamp
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


class Fifo:
    """A FIFO the reboot command writes a line to. Opened read-write so it never reports a hang-up."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.stamps: list[int] = []
        self._arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        stamp = now_ns()
        with contextlib.suppress(BlockingIOError):
            if os.read(self.fd, 4096):
                self.stamps.append(stamp)
                self._arrived.set()

    async def next(self, within: float = 30.0) -> int:
        async with asyncio.timeout(within):
            await self._arrived.wait()
        self._arrived.clear()
        return self.stamps[-1]

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


def stamping_logind() -> Any:
    from harness.devtools.fake_logind import FakeLogind

    class StampingLogind(FakeLogind):
        """The fake logind, stamping each Reboot call as it arrives."""

        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[int] = []
            self.arrived = asyncio.Event()

        def _reboot(self, msg: Any) -> Any:
            stamp = now_ns()
            reply = super()._reboot(msg)
            if len(self.calls) > len(self.stamps):
                self.stamps.append(stamp)
                self.arrived.set()
            return reply

    return StampingLogind()
