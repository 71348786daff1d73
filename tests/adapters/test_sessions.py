"""Logged-in users (logind over a real bus, utmp fallback) and the wall-style broadcast on a real pty."""

from __future__ import annotations

import os
import select
import stat
import struct
from pathlib import Path

from dbus_fast.aio import MessageBus
from hypothesis import given
from hypothesis import strategies as st

from harness.devtools.fake_logind import FakeLogind, FakeSession
from locksmith.agent.sessions import Session, broadcast, list_sessions, parse_utmp, read_utmp

UTMP = struct.Struct("<hxxi32s4s32s256shhiii4i20x")
LOGIN_PROCESS, USER_PROCESS, DEAD_PROCESS = 6, 7, 8


def record(ut_type: int, user: str, line: str) -> bytes:
    return UTMP.pack(ut_type, 100, line.encode(), b"ts/0", user.encode(), b"host", 0, 0, 1, 1700000000, 0, 0, 0, 0, 0)


def write_utmp(path: Path, *records: bytes) -> Path:
    path.write_bytes(b"".join(records))
    return path


def test_utmp_record_size_matches_glibc() -> None:
    assert UTMP.size == 384


def test_parse_utmp_keeps_user_processes(tmp_path: Path) -> None:
    utmp = write_utmp(
        tmp_path / "utmp",
        record(USER_PROCESS, "alice", "pts/0"),
        record(LOGIN_PROCESS, "LOGIN", "tty1"),
        record(DEAD_PROCESS, "bob", "pts/1"),
        record(USER_PROCESS, "carol", "tty2"),
        b"\x07\x00truncated",
    )
    assert read_utmp(utmp) == [Session("alice", "pts/0", "utmp"), Session("carol", "tty2", "utmp")]
    assert read_utmp(tmp_path / "missing") == []


@given(st.binary(max_size=2000))
def test_parse_utmp_never_crashes(data: bytes) -> None:
    assert all(s.user for s in parse_utmp(data))


async def test_sessions_from_logind_when_it_answers(system_bus: MessageBus, tmp_path: Path) -> None:
    utmp = write_utmp(tmp_path / "utmp", record(USER_PROCESS, "from-utmp", "pts/9"))
    async with FakeLogind(sessions=[FakeSession("3", 1000, "alice"), FakeSession("5", 0, "root", seat="seat0")]):
        sessions = await list_sessions(system_bus, utmp_path=utmp)
    assert [(s.user, s.source) for s in sessions] == [("alice", "logind"), ("root", "logind")]


async def test_sessions_fall_back_to_utmp_without_logind(system_bus: MessageBus, tmp_path: Path) -> None:
    utmp = write_utmp(tmp_path / "utmp", record(USER_PROCESS, "alice", "pts/0"))
    assert await list_sessions(system_bus, utmp_path=utmp) == [Session("alice", "pts/0", "utmp")]
    assert await list_sessions(None, utmp_path=utmp) == [Session("alice", "pts/0", "utmp")]


def read_pty(master: int) -> bytes:
    data = b""
    while select.select([master], [], [], 5)[0]:
        chunk = os.read(master, 4096)
        data += chunk
        if b"reboot in 5 minutes" in data:
            break
    return data


async def test_broadcast_writes_to_user_terminals(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        line = os.ttyname(slave).removeprefix("/dev/")
        fake_dev = tmp_path / "dev"
        fake_dev.mkdir()
        (fake_dev / "notatty").write_text("")
        utmp = write_utmp(
            tmp_path / "utmp",
            record(USER_PROCESS, "alice", line),
            record(USER_PROCESS, "bob", "../etc/passwd"),
        )
        result = await broadcast("locksmithd: reboot in 5 minutes", wall=None, utmp_path=utmp)
        assert (result.method, result.terminals) == ("tty", 1)
        assert b"reboot in 5 minutes" in read_pty(master)
        # A utmp line naming a regular file is never written to.
        utmp_bad = write_utmp(tmp_path / "utmp2", record(USER_PROCESS, "eve", "notatty"))
        result = await broadcast("x", wall=None, utmp_path=utmp_bad, dev_dir=fake_dev)
        assert result.method == "none" and (fake_dev / "notatty").read_text() == ""
    finally:
        os.close(master)
        os.close(slave)


async def test_broadcast_prefers_wall_and_survives_its_failure(tmp_path: Path) -> None:
    received = tmp_path / "received"
    good = tmp_path / "good-wall"
    good.write_text(f"#!/bin/sh\ncat > {received}\n")
    bad = tmp_path / "bad-wall"
    bad.write_text("#!/bin/sh\necho 'wall: cannot get tty name' >&2\nexit 1\n")
    for script in (good, bad):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert (await broadcast("reboot soon", wall=str(good), utmp_path=tmp_path / "none")).method == "wall"
    assert received.read_text() == "reboot soon"
    # wall fails and nobody is in utmp: reported as not delivered, nothing raised.
    assert (await broadcast("reboot soon", wall=str(bad), utmp_path=tmp_path / "none")).method == "none"
    assert (await broadcast("reboot soon", wall="no-such-wall-command", utmp_path=tmp_path / "none")).method == "none"
