"""Reading a VM's serial console from outside: boots, slots, versions, prompts, shutdowns, as text."""

from __future__ import annotations

from pathlib import Path

from harness.vmfleet.console import MAX_LINE, ConsoleWatch

GRUB = b"\x1b[0m\x1b[37m\x1b[40mlocksmith: booting USR-%s (priority 1, tries left 0)\r\n"
WELCOME = b"Welcome to \x1b[1mLocksmith OS %s (Debian GNU/Linux 12 (bookworm))\x1b[0m!\r\n"
SHUTDOWN = b"[\x1b[0;32m  OK  \x1b[0m] Stopped target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n"


def test_a_boot_its_version_and_the_login_prompt_without_a_newline(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    watch = ConsoleWatch(log)
    watch.poll(now=1.0)  # no file yet: nothing, no error
    assert watch.state == "firmware"
    log.write_bytes(GRUB % b"A" + b"[    0.000000] Linux version 6.1\r\n" + WELCOME % b"1.0.0")
    watch.poll(now=2.0)
    assert watch.state == "booting" and watch.current is not None and watch.current.version == "1.0.0"
    with log.open("ab") as f:
        f.write(b"\r\nDebian GNU/Linux 12 vm1 ttyS0\r\n\r\nvm1 login: ")
    watch.poll(now=3.0)
    assert watch.state == "up" and watch.current.up == 3.0 and watch.current.slot == "USR-A"


def test_a_reboot_into_the_other_slot_is_counted_once(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(GRUB % b"A" + WELCOME % b"1.0.0" + b"vm1 login: ")
    watch = ConsoleWatch(log)
    watch.poll(now=1.0)
    with log.open("ab") as f:
        f.write(SHUTDOWN)
        f.write(b"[   99.1] reboot: Restarting system\r\n")
    watch.poll(now=2.0)
    assert watch.state == "rebooting" and watch.current.shutdown == 2.0 and watch.current.reset == 2.0
    with log.open("ab") as f:
        f.write(GRUB % b"B" + WELCOME % b"2.0.0")
    watch.poll(now=3.0)
    assert watch.state == "booting" and watch.reboots == 1
    assert [(b.slot, b.version) for b in watch.boots] == [("USR-A", "1.0.0"), ("USR-B", "2.0.0")]


def test_a_line_split_between_reads_is_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    whole = GRUB % b"B"
    log.write_bytes(whole[:20])
    watch = ConsoleWatch(log)
    watch.poll(now=1.0)
    assert watch.boots == []
    with log.open("ab") as f:
        f.write(whole[20:])
    watch.poll(now=2.0)
    assert [b.slot for b in watch.boots] == ["USR-B"]


def test_what_the_guest_prints_cannot_grow_without_bound(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"x" * (MAX_LINE * 10))  # no newline, ever
    watch = ConsoleWatch(log)
    watch.poll()
    assert len(watch._partial) <= MAX_LINE
    log.write_bytes(b"y" * (MAX_LINE * 10) + b"\nlocksmith: booting USR-A\n")
    watch = ConsoleWatch(log)
    watch.poll()
    assert [b.slot for b in watch.boots] == ["USR-A"]  # a long line before it hides nothing
