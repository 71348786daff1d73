"""The agent's section: every setting locksmithd reads beyond what all programs share, as one typed value.

`agent_settings(config)` builds it from the validated Config; tests build it directly. A field named
like a declared setting (`retry_interval` <- LOCKSMITHD_RETRY_INTERVAL) is taken from it by name, so a
new agent setting is its declaration in locksmith.settings.keys plus the field here. Every default is
the schema's, durations in float seconds (the unit the machine's timers use), so a test that leaves a
field out gets what a host without the variable gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from locksmith.agent.health import HealthGate
from locksmith.settings.config import Config
from locksmith.settings.schema import default_of, default_seconds
from locksmith.settings.values import MetricsAddress
from locksmith.settings.windows import WindowSchedule

_P = "LOCKSMITHD_"
_COORDINATOR_FILE: Path = default_of("locksmithd", _P + "COORDINATOR_FILE")


@dataclass(frozen=True)
class AgentSettings:
    # --- what the state machine reads
    #: Reboot windows (None: any time).
    window: WindowSchedule | None = None
    #: Warn logged-in users and wait `login_delay` seconds before rebooting (CoreOS: 5 min).
    login_check: bool = default_of("locksmithd", _P + "LOGIN_CHECK")
    login_delay: float = default_seconds("locksmithd", _P + "LOGIN_DELAY")
    pre_reboot_hook: str | Sequence[str] | None = None
    pre_reboot_timeout: float = default_seconds("locksmithd", _P + "HOOK_TIMEOUT")
    post_boot_hook: str | Sequence[str] | None = None
    post_boot_timeout: float = default_seconds("locksmithd", _P + "HOOK_TIMEOUT")
    health: HealthGate | None = None
    #: Started (systemctl start) once the gate passes after boot; the image's marks the USR slot successful.
    healthy_target: str | None = None
    #: Wait before a new attempt after a failed hook, a failed reboot call or a strategy error.
    retry_interval: float = default_seconds("locksmithd", _P + "RETRY_INTERVAL")
    #: Cap of the back-off while the strategy's service (KV store, FleetLock server) is unreachable.
    unavailable_backoff_max: float = default_seconds("locksmithd", _P + "UNAVAILABLE_BACKOFF_MAX")
    #: After the reboot was accepted, how long to wait to be stopped by the shutdown before
    #: concluding it is not happening, giving the lock back and trying again later.
    reboot_grace: float = default_seconds("locksmithd", _P + "REBOOT_GRACE")
    #: Re-read the wall clock at least this often while waiting on a window (clock jumps, suspend).
    clock_check: float = default_seconds("locksmithd", _P + "CLOCK_CHECK")
    # --- what the wiring around it reads
    #: Run this to reboot; None asks logind over D-Bus.
    reboot_command: tuple[str, ...] | None = None
    metrics: MetricsAddress | None = None
    coordinator_file: Path = _COORDINATOR_FILE
    #: Written before a rollback reboot (agent/rollback.py); in locksmithd.service's StateDirectory.
    rollback_file: Path = Path("/var/lib/locksmith/rolled-back.json")
    log_format: str = default_of("locksmithd", _P + "LOG_FORMAT")
    log_level: str = default_of("locksmithd", _P + "LOG_LEVEL")


# Built from several settings, not taken by name.
_COMPOSED = frozenset(
    {"window", "pre_reboot_hook", "pre_reboot_timeout", "post_boot_hook", "post_boot_timeout", "health"}
)


def _plain(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, timedelta) else value


def agent_settings(config: Config) -> AgentSettings:
    """The agent's section of a locksmithd Config."""
    if config.program != "locksmithd":
        raise ValueError(f"{config.program} has no agent section")
    values = config.values
    by_name = {
        f.name: _plain(values[key])
        for f in fields(AgentSettings)
        if f.name not in _COMPOSED and (key := _P + f.name.upper()) in values
    }
    health = HealthGate(
        command=values[_P + "HEALTH_COMMAND"],
        unit=values[_P + "HEALTH_UNIT"],
        url=values[_P + "HEALTH_URL"],
        interval=_plain(values[_P + "HEALTH_INTERVAL"]),
        timeout=_plain(values[_P + "HEALTH_TIMEOUT"]),
    )
    hook_timeout = _plain(values[_P + "HOOK_TIMEOUT"])
    return AgentSettings(
        window=config.windows,
        pre_reboot_hook=values[_P + "PRE_REBOOT_HOOK"],
        pre_reboot_timeout=hook_timeout,
        post_boot_hook=values[_P + "POST_BOOT_HOOK"],
        post_boot_timeout=hook_timeout,
        health=health if health.enabled else None,
        **by_name,
    )
