"""What the state machine needs from the configuration, as one typed value.

main.py builds it from the validated Config (`settings_from`); tests build it directly. Every default
here is the schema's (locksmith.settings.schema), in float seconds, so a test that leaves a field out
gets what a host without that variable gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from locksmith.agent.health import HealthGate
from locksmith.settings.schema import default_of
from locksmith.settings.windows import WindowSchedule


def _seconds(name: str) -> float:
    value = default_of("locksmithd", "LOCKSMITHD_" + name)
    return value if isinstance(value, float) else value.total_seconds()


_LOGIN_CHECK: bool = default_of("locksmithd", "LOCKSMITHD_LOGIN_CHECK")
_LOGIN_DELAY = _seconds("LOGIN_DELAY")
_HOOK_TIMEOUT = _seconds("HOOK_TIMEOUT")
_RETRY_INTERVAL = _seconds("RETRY_INTERVAL")
_UNAVAILABLE_BACKOFF_MAX = _seconds("UNAVAILABLE_BACKOFF_MAX")
_REBOOT_GRACE = _seconds("REBOOT_GRACE")
_CLOCK_CHECK = _seconds("CLOCK_CHECK")


@dataclass(frozen=True)
class AgentSettings:
    #: Reboot windows (None: any time).
    window: WindowSchedule | None = None
    #: Warn logged-in users and wait `login_delay` seconds before rebooting (CoreOS: 5 min).
    login_check: bool = _LOGIN_CHECK
    login_delay: float = _LOGIN_DELAY
    pre_reboot_hook: str | Sequence[str] | None = None
    pre_reboot_timeout: float = _HOOK_TIMEOUT
    post_boot_hook: str | Sequence[str] | None = None
    post_boot_timeout: float = _HOOK_TIMEOUT
    health: HealthGate | None = None
    #: Wait before a new attempt after a failed hook, a failed reboot call or a strategy error.
    retry_interval: float = _RETRY_INTERVAL
    #: Cap of the back-off while the strategy's service (KV store, FleetLock server) is unreachable.
    unavailable_backoff_max: float = _UNAVAILABLE_BACKOFF_MAX
    #: After the reboot was accepted, how long to wait to be stopped by the shutdown before
    #: concluding it is not happening, giving the lock back and trying again later.
    reboot_grace: float = _REBOOT_GRACE
    #: Re-read the wall clock at least this often while waiting on a window (clock jumps, suspend).
    clock_check: float = _CLOCK_CHECK
