"""The agent's section: what the state machine needs from the configuration, as one typed value.

`agent_settings(config)` builds it from the validated Config; tests build it directly. A field named
like a declared setting (`retry_interval` ← LOCKSMITHD_RETRY_INTERVAL) is taken from it by name, so a
new agent setting is its declaration in locksmith.settings.schema plus the field here. Every default is
the schema's, in float seconds, so a test that leaves a field out gets what a host without the variable
gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from locksmith.agent.health import HealthGate
from locksmith.settings.config import Config
from locksmith.settings.schema import default_of, default_seconds
from locksmith.settings.windows import WindowSchedule


@dataclass(frozen=True)
class AgentSettings:
    #: Reboot windows (None: any time).
    window: WindowSchedule | None = None
    #: Warn logged-in users and wait `login_delay` seconds before rebooting (CoreOS: 5 min).
    login_check: bool = default_of("locksmithd", "LOCKSMITHD_LOGIN_CHECK")
    login_delay: float = default_seconds("locksmithd", "LOCKSMITHD_LOGIN_DELAY")
    pre_reboot_hook: str | Sequence[str] | None = None
    pre_reboot_timeout: float = default_seconds("locksmithd", "LOCKSMITHD_HOOK_TIMEOUT")
    post_boot_hook: str | Sequence[str] | None = None
    post_boot_timeout: float = default_seconds("locksmithd", "LOCKSMITHD_HOOK_TIMEOUT")
    health: HealthGate | None = None
    #: Wait before a new attempt after a failed hook, a failed reboot call or a strategy error.
    retry_interval: float = default_seconds("locksmithd", "LOCKSMITHD_RETRY_INTERVAL")
    #: Cap of the back-off while the strategy's service (KV store, FleetLock server) is unreachable.
    unavailable_backoff_max: float = default_seconds("locksmithd", "LOCKSMITHD_UNAVAILABLE_BACKOFF_MAX")
    #: After the reboot was accepted, how long to wait to be stopped by the shutdown before
    #: concluding it is not happening, giving the lock back and trying again later.
    reboot_grace: float = default_seconds("locksmithd", "LOCKSMITHD_REBOOT_GRACE")
    #: Re-read the wall clock at least this often while waiting on a window (clock jumps, suspend).
    clock_check: float = default_seconds("locksmithd", "LOCKSMITHD_CLOCK_CHECK")


# Built from several settings, not taken by name.
_COMPOSED = frozenset(
    {"window", "pre_reboot_hook", "pre_reboot_timeout", "post_boot_hook", "post_boot_timeout", "health"}
)


def _plain(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, timedelta) else value


def agent_settings(config: Config) -> AgentSettings:
    """The agent's section of a locksmithd Config."""
    agent = config.agent
    assert agent is not None  # locksmithd's Config always has it
    by_name = {
        f.name: _plain(config.values[key])
        for f in fields(AgentSettings)
        if f.name not in _COMPOSED and (key := "LOCKSMITHD_" + f.name.upper()) in config.values
    }
    health = HealthGate(
        command=agent.health.command,
        unit=agent.health.unit,
        url=agent.health.url,
        interval=agent.health.interval.total_seconds(),
        timeout=agent.health.timeout.total_seconds(),
    )
    hook_timeout = agent.hooks.timeout.total_seconds()
    return AgentSettings(
        window=config.windows,
        pre_reboot_hook=agent.hooks.pre_reboot,
        pre_reboot_timeout=hook_timeout,
        post_boot_hook=agent.hooks.post_boot,
        post_boot_timeout=hook_timeout,
        health=health if health.enabled else None,
        **by_name,
    )
