"""Reports that settle: the agent's state, as systemd (STATUS=) and the coordinator file show it, is
written once a burst of state changes has settled rather than at every change.

Why: with strategy `reboot` the agent passes need-reboot, acquiring, pre-reboot and rebooting within
about a millisecond. Writing each of them (a file replaced, fsynced on disk, and a datagram to
systemd) put more than half a millisecond in front of the reboot call, for states nobody could have
read. So the first change of a burst starts a short timer; when it fires, the newest state is written,
once. Outside a running event loop (tools, tests) each change is written at once; `write_now` writes
straight away (STOPPING) and `flush` writes whatever is pending (the agent's last words at exit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

#: Far longer than a burst (the reboot strategy's is ~1 ms), far shorter than anyone reading the file notices.
SETTLE_SECONDS: Final = 0.02


class Settling:
    """Calls `write` SETTLE_SECONDS after the first of a burst of `changed()` calls; `write` reads the
    newest state itself, so a burst costs one write and never shows an older state after a newer one."""

    def __init__(self, write: Callable[[], None], delay: float = SETTLE_SECONDS) -> None:
        self._write = write
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self._timer is not None

    def changed(self) -> None:
        if self._timer is not None:
            return  # the write already planned will show this change too
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write()
            return
        self._timer = loop.call_later(self._delay, self.flush)

    def flush(self) -> None:
        """Write now if a write is pending."""
        if self._timer is not None:
            self.write_now()

    def write_now(self) -> None:
        """Write at once (the newest state), instead of any write still planned."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._write()

    async def flush_at_exit(self) -> None:
        """A background job: does nothing until cancelled, then writes what is still pending, so the
        report left behind at exit is the agent's last state."""
        try:
            await asyncio.Event().wait()
        finally:
            self.flush()
