"""A test logind: a real D-Bus service owning org.freedesktop.login1 that records Reboot calls.

It implements just what locksmith calls: Manager.Reboot(b) — recorded in `calls` and, if asked,
appended to a JSON-lines file (for agents running in another process) — and
Manager.ListSessions() -> a(susso) from a configurable session list. Set `refuse_reboot` to make
Reboot fail with org.freedesktop.DBus.Error.AccessDenied, as logind does for an unprivileged caller.

    python -m harness.devtools.fake_logind --record /tmp/reboots.jsonl [--session alice:1000:pts/0]

prints `ready` on stdout once it owns the name, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import Message

from harness.devtools.fake_service import FakeService, serve_until_stopped
from locksmith.bus.logind import LOGIND_INTERFACE, LOGIND_NAME, LOGIND_PATH
from locksmith.bus.system import Method, MethodError


@dataclass(frozen=True, slots=True)
class RebootCall:
    """One recorded Reboot call: the `interactive` argument and the caller's unique bus name."""

    interactive: bool
    sender: str


@dataclass(frozen=True, slots=True)
class FakeSession:
    """A session as ListSessions reports it (tty is kept for tests; logind exposes it per session)."""

    session_id: str
    uid: int
    user: str
    seat: str = ""
    tty: str = ""

    @property
    def object_path(self) -> str:
        return f"{LOGIND_PATH}/session/_{self.session_id}"


class FakeLogind(FakeService):
    """Owns org.freedesktop.login1 on its own connection to the system bus (DBUS_SYSTEM_BUS_ADDRESS)."""

    name, path, interface = LOGIND_NAME, LOGIND_PATH, LOGIND_INTERFACE

    def __init__(
        self,
        *,
        record_file: Path | None = None,
        sessions: Sequence[FakeSession] = (),
        refuse_reboot: str | None = None,
    ) -> None:
        self.record_file = record_file
        self.sessions = list(sessions)
        self.refuse_reboot = refuse_reboot
        self.calls: list[RebootCall] = []
        self._rebooted = asyncio.Event()

    async def wait_for_reboot(self) -> RebootCall:
        """The first recorded Reboot call, waiting for it if needed."""
        await self._rebooted.wait()
        return self.calls[0]

    def methods(self) -> Mapping[str, Method]:
        return {"Reboot": self._reboot, "ListSessions": self._list_sessions}

    def _reboot(self, msg: Message) -> tuple[str, list[Any]]:
        if msg.signature != "b":
            raise MethodError("org.freedesktop.DBus.Error.InvalidArgs", "Reboot takes (b)")
        if self.refuse_reboot is not None:
            raise MethodError("org.freedesktop.DBus.Error.AccessDenied", self.refuse_reboot)
        call = RebootCall(interactive=bool(msg.body[0]), sender=msg.sender)
        self.calls.append(call)
        if self.record_file is not None:
            with self.record_file.open("a") as f:
                f.write(json.dumps({"interactive": call.interactive, "sender": call.sender}) + "\n")
        self._rebooted.set()
        return "", []

    def _list_sessions(self, _msg: Message) -> tuple[str, list[Any]]:
        return "a(susso)", [[[s.session_id, s.uid, s.user, s.seat, s.object_path] for s in self.sessions]]


def read_recorded_calls(record_file: Path) -> list[RebootCall]:
    """The calls a FakeLogind in another process appended to `record_file` (empty if none yet)."""
    if not record_file.exists():
        return []
    calls = []
    for line in record_file.read_text().splitlines():
        data = json.loads(line)
        calls.append(RebootCall(interactive=bool(data["interactive"]), sender=str(data["sender"])))
    return calls


def _parse_session(index: int, text: str) -> FakeSession:
    user, uid, tty = ([*text.split(":"), "", ""])[:3]
    return FakeSession(session_id=str(index + 1), uid=int(uid or 1000), user=user, tty=tty)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_logind", description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, help="append each Reboot call to this JSON-lines file")
    parser.add_argument("--session", action="append", default=[], help="USER:UID:TTY listed by ListSessions")
    parser.add_argument("--refuse", metavar="TEXT", help="refuse Reboot with AccessDenied and this text")
    args = parser.parse_args(argv)
    sessions = [_parse_session(i, s) for i, s in enumerate(args.session)]
    return serve_until_stopped(
        "fake_logind", FakeLogind(record_file=args.record, sessions=sessions, refuse_reboot=args.refuse)
    )


if __name__ == "__main__":
    sys.exit(main())
