"""The VM timeline's rows are built from what was seen outside the VMs; here from a console log written by
the test and lock spans and update events as the observer records them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from harness.demo.tracks import HEALTHY_NEW, HEALTHY_OLD, LOCK, REBOOTING, TRIAL, UPDATING, WAITING
from harness.vmfleet.console import ConsoleWatch
from harness.vmfleet.observer import HostView, LockSpan
from harness.vmfleet.timeline import track

GRUB = b"locksmith: booting USR-%s (priority 1, tries left 0)\r\n"
WELCOME = b"Welcome to Locksmith OS %s (Debian GNU/Linux 12 (bookworm))!\r\n"
DOWN = b"[  OK  ] Stopped target multi-user.target - Multi-User System.\r\n"


class _Seen:
    """The two update-server readings the timeline asks for, at fixed times."""

    def __init__(self, download: float | None, installed: float | None) -> None:
        self._download, self._installed = download, installed

    def download_started(self, host: HostView) -> float | None:
        return self._download

    def installed(self, host: HostView) -> float | None:
        return self._installed


class _Machine:
    name = "vm1"
    host = ipaddress.ip_interface("10.0.0.2/24")


def _console(tmp_path: Path, steps: list[tuple[float, bytes]]) -> ConsoleWatch:
    log = tmp_path / "serial.log"
    watch = ConsoleWatch(log)
    for now, text in steps:
        with log.open("ab") as f:
            f.write(text)
        watch.poll(now=now)
    return watch


def _spans(host: HostView, seen: _Seen, now: float) -> list[tuple[str, float, float | None]]:
    t = track(seen, host, 0.0, "2.0.0", now)  # type: ignore[arg-type]
    return [(s.kind, s.start, s.end) for s in t.spans]


def test_a_host_waits_from_its_install_to_its_lock_and_is_on_trial_until_it_gives_it_back(tmp_path: Path) -> None:
    console = _console(
        tmp_path,
        [
            (1.0, GRUB % b"A" + WELCOME % b"1.0.0" + b"vm1 login: "),
            (50.0, DOWN),
            (60.0, GRUB % b"B" + WELCOME % b"2.0.0"),
            (70.0, b"vm1 login: "),
        ],
    )
    host = HostView(_Machine(), console, "m1", [LockSpan(40.0, 90.0)])  # type: ignore[arg-type]
    spans = _spans(host, _Seen(10.0, 30.0), now=100.0)
    assert (UPDATING, 10.0, 30.0) in spans
    assert (WAITING, 30.0, 40.0) in spans
    assert (TRIAL, 70.0, 90.0) in spans
    assert (HEALTHY_OLD, 1.0, 50.0) in spans and (HEALTHY_NEW, 70.0, 100.0) in spans
    assert (REBOOTING, 50.0, 70.0) in spans and (LOCK, 40.0, 90.0) in spans


def test_a_rollback_ends_the_trial_at_the_shutdown_and_a_host_never_locked_waits_on(tmp_path: Path) -> None:
    console = _console(
        tmp_path,
        [
            (1.0, GRUB % b"A" + WELCOME % b"1.0.0" + b"vm1 login: "),
            (50.0, DOWN),
            (60.0, GRUB % b"B" + WELCOME % b"2.0.0" + b"vm1 login: "),
            (80.0, DOWN),
            (90.0, GRUB % b"A" + WELCOME % b"1.0.0" + b"vm1 login: "),
        ],
    )
    held = HostView(_Machine(), console, "m1", [LockSpan(40.0)])  # type: ignore[arg-type]
    spans = _spans(held, _Seen(10.0, 30.0), now=120.0)
    assert (TRIAL, 60.0, 80.0) in spans and (LOCK, 40.0, 120.0) in spans
    (tmp_path / "other").mkdir()
    waiting = _console(tmp_path / "other", [(1.0, GRUB % b"A" + WELCOME % b"1.0.0" + b"vm2 login: ")])
    never = HostView(_Machine(), waiting, "m2", [])  # type: ignore[arg-type]
    assert [s for s in _spans(never, _Seen(10.0, 30.0), now=120.0) if s[0] == WAITING] == [(WAITING, 30.0, 120.0)]
