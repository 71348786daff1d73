"""Who is logged in, and a wall-style warning to them before a reboot.

Logged-in users: logind's Manager.ListSessions over D-Bus is the authority on a systemd host (it
also sees sessions that never wrote utmp); when logind is not on the bus (containers, minimal
hosts) we read utmp directly — the same records `who` prints, without depending on its output
format.

Broadcast: `wall` when installed (it knows every terminal and handles permissions), else we write
to each USER_PROCESS terminal listed in utmp ourselves. Nothing here ever raises: a failed warning
must not stop or delay a reboot beyond its timeout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import structlog
from dbus_fast.aio import MessageBus

from locksmith.bus.logind import list_session_rows
from locksmith.bus.system import CallError

DEFAULT_UTMP: Final = Path("/var/run/utmp")
USER_PROCESS: Final = 7
# glibc's struct utmp on Linux (x86_64 and aarch64 alike): 384 bytes, 32-bit ut_session and ut_tv.
_UTMP = struct.Struct("<hxxi32s4s32s256shhiii4i20x")
_log = structlog.get_logger("locksmith.agent.sessions")


@dataclass(frozen=True, slots=True)
class Session:
    """One login: the user name and, when known, the terminal line (e.g. "pts/0")."""

    user: str
    tty: str
    source: Literal["logind", "utmp"]


def parse_utmp(data: bytes) -> list[Session]:
    """USER_PROCESS records of a utmp file's bytes (a truncated last record is ignored)."""
    sessions = []
    for offset in range(0, len(data) - _UTMP.size + 1, _UTMP.size):
        fields = _UTMP.unpack_from(data, offset)
        ut_type, line, user = fields[0], fields[2], fields[4]
        if ut_type != USER_PROCESS:
            continue
        name = _cstr(user)
        if name:
            sessions.append(Session(user=name, tty=_cstr(line), source="utmp"))
    return sessions


def read_utmp(path: Path = DEFAULT_UTMP) -> list[Session]:
    """Logins recorded in utmp; [] if the file is missing or unreadable (logged)."""
    try:
        return parse_utmp(Path(path).read_bytes())
    except FileNotFoundError:
        return []
    except OSError as exc:
        _log.warning("utmp-unreadable", path=str(path), error=exc.strerror)
        return []


async def list_sessions(bus: MessageBus | None, *, utmp_path: Path = DEFAULT_UTMP) -> list[Session]:
    """Current logins: from logind when it answers on `bus`, else from utmp."""
    if bus is not None and bus.connected:
        try:
            rows = await list_session_rows(bus)
        except (CallError, ValueError) as exc:
            _log.info("logind-unavailable", error=str(exc), fallback="utmp")
        else:
            # The tty is not part of this call.
            return [Session(user=str(row[2]), tty="", source="logind") for row in rows if row[2]]
    return read_utmp(utmp_path)


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """How the warning went out: via `wall`, written to `terminals` ttys ourselves, or not at all."""

    method: Literal["wall", "tty", "none"]
    terminals: int = 0


async def broadcast(
    message: str,
    *,
    wall: str | None = "wall",
    utmp_path: Path = DEFAULT_UTMP,
    dev_dir: Path = Path("/dev"),
    limit_seconds: float = 10.0,
) -> BroadcastResult:
    """Warn every logged-in terminal, giving up after `limit_seconds` per method.

    `wall`: the command name or path to use; None writes to the utmp terminals directly."""
    wall_path = shutil.which(wall) if wall else None
    if wall_path is not None and await _run_wall(wall_path, message, limit_seconds):
        return BroadcastResult("wall")
    try:
        count = await asyncio.wait_for(asyncio.to_thread(_write_terminals, message, utmp_path, dev_dir), limit_seconds)
    except Exception as exc:  # never let the warning break the reboot
        _log.warning("broadcast-failed", error=f"{exc.__class__.__name__}: {exc}")
        return BroadcastResult("none")
    return BroadcastResult("tty", count) if count else BroadcastResult("none")


async def _run_wall(wall_path: str, message: str, limit_seconds: float) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            wall_path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        _log.warning("wall-failed", command=wall_path, error=exc.strerror, fallback="terminals")
        return False
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(message.encode()), limit_seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        _log.warning("wall-timed-out", command=wall_path, limit_seconds=limit_seconds, fallback="terminals")
        return False
    if proc.returncode != 0:
        _log.warning(
            "wall-failed", command=wall_path, status=proc.returncode, error=stderr.decode(errors="replace").strip()
        )
        return False
    return True


def _write_terminals(message: str, utmp_path: Path, dev_dir: Path) -> int:
    text = "\r\n".join(["", "Broadcast message from locksmithd:", "", *message.splitlines(), "", ""]).encode()
    written = 0
    for line in sorted({s.tty for s in read_utmp(utmp_path) if s.tty}):
        # utmp is written by many programs; never follow it outside /dev or into a non-terminal.
        if line.startswith("/") or ".." in line.split("/"):
            continue
        try:
            fd = os.open(dev_dir / line, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if stat.S_ISCHR(os.fstat(fd).st_mode) and os.isatty(fd):
                os.write(fd, text)
                written += 1
        except OSError as exc:
            _log.debug("tty-write-failed", tty=line, error=exc.strerror)
        finally:
            os.close(fd)
    return written


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
