"""What a VM's serial console shows, read from outside: each boot (the slot GRUB chose, the version
systemd welcomed), when the login prompt came up, when a shutdown began and when the machine reset.

The console is the guest's own output, so it is read as untrusted text: escape sequences are dropped,
lines are bounded, and only these few patterns are looked for.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")
GRUB_CHOICE = re.compile(r"locksmith: booting (USR-[AB])")
WELCOME = re.compile(r"Welcome to Locksmith OS ([A-Za-z0-9._+~-]{1,64}) ")
LOGIN = re.compile(r"^([A-Za-z0-9.-]{1,64}) login: ")
SHUTDOWN = re.compile(r"Stopped target .{0,40}[Mm]ulti-[Uu]ser")
RESET = re.compile(r"reboot: Restarting system")
MAX_LINE = 4096  # a console line longer than this is cut (a guest cannot grow our memory through it)


@dataclass
class Boot:
    slot: str
    started: float  # wall-clock seconds (time.time()) when GRUB's choice was read
    version: str | None = None
    up: float | None = None  # the login prompt
    shutdown: float | None = None  # services being stopped for a reboot
    reset: float | None = None  # the kernel's "Restarting system"

    @property
    def down(self) -> float | None:
        """When this boot started going down: its shutdown, or the reset when no shutdown was seen."""
        return self.shutdown or self.reset


@dataclass
class ConsoleWatch:
    """Follows one serial log file; `poll` reads what was added since the last call."""

    path: Path
    boots: list[Boot] = field(default_factory=list)
    _offset: int = 0
    _partial: str = ""

    @property
    def current(self) -> Boot | None:
        return self.boots[-1] if self.boots else None

    @property
    def reboots(self) -> int:
        """Reboots seen: boots after the first."""
        return max(0, len(self.boots) - 1)

    @property
    def state(self) -> str:
        boot = self.current
        if boot is None:
            return "firmware"
        if boot.down is not None:
            return "rebooting"
        return "up" if boot.up is not None else "booting"

    def poll(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read(1 << 20)
        except FileNotFoundError:
            return
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(_ESCAPES.sub("", line[:MAX_LINE]), now)
        self._partial = self._partial[-MAX_LINE:]
        # The login prompt waits for input without a newline.
        if LOGIN.match(_ESCAPES.sub("", self._partial)) and self.current and self.current.up is None:
            self.current.up = now

    def _line(self, line: str, now: float) -> None:
        if found := GRUB_CHOICE.search(line):
            self.boots.append(Boot(found.group(1), now))
            return
        boot = self.current
        if boot is None:
            return
        if boot.version is None and (found := WELCOME.search(line)):
            boot.version = found.group(1)
        elif boot.up is None and LOGIN.match(line):
            boot.up = now
        elif boot.up is not None and boot.shutdown is None and SHUTDOWN.search(line):
            boot.shutdown = now
        elif RESET.search(line):
            boot.reset = now
