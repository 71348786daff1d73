"""What the state machine needs from the configuration, as one typed value.

main.py builds it from locksmith.settings.config's Config; tests build it directly. Keeping the machine on
its own small settings type means it reads top to bottom without config plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from locksmith.agent.health import HealthGate
from locksmith.settings.windows import WindowSchedule


@dataclass(frozen=True)
class AgentSettings:
    #: Reboot windows (None: any time).
    window: WindowSchedule | None = None
    #: Warn logged-in users and wait `login_delay` seconds before rebooting (CoreOS: 5 min).
    login_check: bool = True
    login_delay: float = 300.0
    pre_reboot_hook: str | Sequence[str] | None = None
    pre_reboot_timeout: float = 600.0
    post_boot_hook: str | Sequence[str] | None = None
    post_boot_timeout: float = 600.0
    health: HealthGate | None = None
    #: Wait before a new attempt after a failed hook, a failed reboot call or a strategy error.
    retry_interval: float = 60.0
    #: Cap of the back-off while the strategy's service (KV store, FleetLock server) is unreachable.
    unavailable_backoff_max: float = 60.0
    #: After the reboot was accepted, how long to wait to be stopped by the shutdown before
    #: concluding it is not happening, giving the lock back and trying again later.
    reboot_grace: float = 900.0
    #: Re-read the wall clock at least this often while waiting on a window (clock jumps, suspend).
    clock_check: float = 30.0
