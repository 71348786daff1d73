"""The reboot-strategy plugin interface and its loader.

A strategy answers one question for the agent: *may this host reboot now?* (`acquire`), and gives
the permission back once the host is up again (`release`). It knows nothing of D-Bus, windows or
hooks — the agent (locksmith/agent/machine.py) does all of that around it.

Strategies are found through the entry-point group `locksmith.strategies`, the same door a third
party uses from its own package:

    [project.entry-points."locksmith.strategies"]
    my-strategy = "my_package.module:MyStrategy"

The class is instantiated with no arguments; everything it needs arrives in the StrategyContext.
A strategy that needs settings of its own declares them in `settings` (the same `Setting` type as every
other setting, read as `LOCKSMITHD_<name>`); the loader validates them with the rest of the
configuration and hands them over in `ctx.options`, by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import structlog

from locksmith.kv.base import KVOptions
from locksmith.settings.schema import Setting

ENTRY_POINT_GROUP = "locksmith.strategies"


class StrategyError(Exception):
    """The strategy cannot give permission, and retrying soon will not help by itself (e.g. a
    semaphore we cannot parse). The agent does not reboot, logs the message and retries later."""


class StrategyUnavailable(StrategyError):
    """The service behind the strategy cannot be reached now; the agent retries with a back-off."""


class UnknownStrategy(StrategyError):
    """No strategy is registered under the configured name."""


@dataclass
class StrategyContext:
    """What a strategy gets from the agent.

    `group` is the lock group (LOCKSMITHD_GROUP), None for the global semaphore. `kv` is the validated
    KV store configuration, None where no store is configured (tests of store-less strategies).
    `options` holds the strategy's own declared settings by name (`FLEETLOCK_URL`), already parsed.
    `on_wake` is called by strategies that wait for another holder, with how they were woken ("watch"
    for a KV watch event, "retry" for a timed retry) — the agent logs it and counts it in the metrics.
    """

    machine_id: str
    group: str | None = None
    kv: KVOptions | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    log: Any = field(default_factory=lambda: structlog.get_logger("locksmith.strategy"))
    on_wake: Callable[[str], None] | None = None
    #: Called with (holder, ttl seconds) for each holder this host removed because its lease lapsed.
    on_expired_holder: Callable[[str, int], None] | None = None

    def woke(self, how: str, **details: Any) -> None:
        self.log.info("lock.wait.woken", via=how, **details)
        if self.on_wake is not None:
            self.on_wake(how)


class Strategy(abc.ABC):
    """Permission to reboot. Implementations must make every method safe to cancel: the agent
    cancels `acquire` when the reboot window closes or on SIGTERM, then asks `holds` and calls
    `release` if the permission was taken after all."""

    #: The name it is registered under (used in logs, the coordinator file and metrics).
    name: ClassVar[str] = ""
    #: Whether the agent waits for the configured reboot window before calling `acquire`.
    needs_window: ClassVar[bool] = True
    #: False for a strategy that never reboots (`off`): the agent then only reports status.
    reboots: ClassVar[bool] = True
    #: Whether it coordinates through the KV store (ctx.kv): the agent then also publishes its record in
    #: the fleet view beside the semaphore (`locksmithctl status --hosts`).
    uses_kv_store: ClassVar[bool] = False
    #: Settings of its own (`LOCKSMITHD_` + name), declared like every other setting.
    settings: ClassVar[tuple[Setting, ...]] = ()

    @classmethod
    def check_options(cls, options: Mapping[str, Any], kv: KVOptions) -> str | None:
        """A problem across its settings and the KV store's (one line naming the fix), found at start."""
        return None

    async def started(self, ctx: StrategyContext) -> None:  # noqa: B027 - optional hook
        """Called once when the agent starts, before the after-boot release: a strategy keeping something
        alive for a permission held across the reboot (a lease) resumes it here."""

    def permission_lapsed(self) -> str | None:
        """Why a permission taken earlier may be gone by now (a lease that could not be renewed), else None.
        Asked right before rebooting: the agent then gives it back instead of rebooting without a slot."""
        return None

    @abc.abstractmethod
    async def acquire(self, ctx: StrategyContext) -> None:
        """Return once this host may reboot; may wait as long as it must. Raises
        StrategyUnavailable (retry later) or StrategyError (do not reboot; say why)."""

    @abc.abstractmethod
    async def release(self, ctx: StrategyContext) -> None:
        """Give the permission back (after boot, or when a reboot is abandoned). Idempotent."""

    @abc.abstractmethod
    async def holds(self, ctx: StrategyContext) -> bool:
        """True if this host holds — or, for protocols that cannot be asked, may hold — a
        permission that `release` would give back. Raises StrategyUnavailable if it cannot tell."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Free connections; called once when the agent stops."""


@cache
def _registered() -> tuple[EntryPoint, ...]:
    """The group's entry points, looked up once per process: each lookup reads the metadata of every
    installed distribution, and a start asks for each strategy's settings (~30 ms here, seconds on a
    slow guest)."""
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def available_strategies() -> list[str]:
    return sorted({ep.name for ep in _registered()})


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as `name`; UnknownStrategy/StrategyError with a one-line message."""
    matches = [ep for ep in _registered() if ep.name == name]
    if not matches:
        choices = ", ".join(available_strategies()) or "none installed"
        raise UnknownStrategy(f"unknown reboot strategy {name!r}: set REBOOT_STRATEGY to one of {choices}")
    entry = matches[0]
    try:
        cls = entry.load()
    except Exception as exc:  # a broken third-party plugin must not crash the agent with a traceback
        raise StrategyError(f"reboot strategy {name!r} ({entry.value}) failed to load: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError(f"reboot strategy {name!r} ({entry.value}) is not a locksmith.strategy.Strategy subclass")
    return cls


def load_strategy(name: str) -> Strategy:
    """Instantiate the strategy registered as `name`."""
    strategy = strategy_class(name)()
    if not strategy.name:
        strategy.name = name  # type: ignore[misc]
    return strategy


def declared_settings(name: str) -> tuple[Setting, ...]:
    """The settings the strategy `name` declares; () when it is unknown or broken (loading it reports that)."""
    try:
        return strategy_class(name).settings
    except StrategyError:
        return ()


@cache
def installed_settings() -> tuple[Setting, ...]:
    """Every installed strategy's settings, so that a key of a strategy not in use is known, not a typo."""
    found: dict[str, Setting] = {}
    for name in available_strategies():
        for setting in declared_settings(name):
            found.setdefault(setting.name, setting)
    return tuple(found.values())


__all__ = [
    "ENTRY_POINT_GROUP",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "StrategyUnavailable",
    "UnknownStrategy",
    "available_strategies",
    "declared_settings",
    "installed_settings",
    "load_strategy",
    "strategy_class",
]
