"""The live view: one line per host and a progress bar. On a terminal it redraws in place with plain
ANSI (cursor up, clear to end); otherwise (CI, a pipe) it appends a line for every change, so a log
reads as a story instead of a wall of repeated frames."""

from __future__ import annotations

import sys
from typing import TextIO

from harness.demo.hoststate import HostState

BAR_WIDTH = 30


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = 0 if total == 0 else round(width * done / total)
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


class LiveView:
    def __init__(self, out: TextIO | None = None, tty: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self._drawn = 0  # lines of the last frame, to move back over on a terminal
        self._last: dict[str, tuple[str, ...]] = {}
        self._last_progress: tuple[int, int] | None = None

    def message(self, text: str, elapsed: float | None = None) -> None:
        """A one-off line (setup steps, publishing): above the frame on a terminal."""
        stamp = "" if elapsed is None else f"[{elapsed:6.1f}s] "
        self._erase()
        self.out.write(f"{stamp}{text}\n")
        self.out.flush()

    def frame(self, hosts: list[HostState], new_version: str, elapsed: float, holders: int, slots: int) -> None:
        total = 3 * len(hosts)
        done = sum(h.steps(new_version) for h in hosts)
        updated = sum(1 for h in hosts if h.steps(new_version) == 3)
        footer = (
            f"{progress_bar(done, total)} steps  {updated}/{len(hosts)} hosts on v{new_version}  "
            f"lock {holders}/{slots}  {elapsed:5.1f}s"
        )
        if self.tty:
            self._erase()
            lines = [h.line(new_version) for h in hosts] + [footer]
            self.out.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        else:
            self._append(hosts, new_version, elapsed, (done, total), footer)
        self.out.flush()

    def _append(
        self, hosts: list[HostState], new_version: str, elapsed: float, progress: tuple[int, int], footer: str
    ) -> None:
        for h in hosts:
            key = (h.state, h.engine, h.version, h.slot, str(h.committed), str(h.lock))
            if self._last.get(h.name) != key:
                self._last[h.name] = key
                self.out.write(f"[{elapsed:6.1f}s] {h.line(new_version)}\n")
        if progress != self._last_progress:
            self._last_progress = progress
            self.out.write(f"[{elapsed:6.1f}s] {footer}\n")

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def close(self) -> None:
        """Leave the last frame on screen; later output goes below it."""
        self._drawn = 0
