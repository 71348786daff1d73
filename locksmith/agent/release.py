"""Giving the reboot permission back: after boot (post-boot hook, then the health gate) and
whenever a reboot is abandoned. While the strategy's service is unreachable it keeps trying in the
background, so a lock is never left held with nobody going to reboot.

The machine (machine.py) decides *when*; this module only knows *how*.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal

from locksmith.agent.hooks import run_command, run_hook
from locksmith.agent.ports import (
    Clock,
    Event,
    HealthCheck,
    HealthGateStarted,
    LockHeldAfterBoot,
    LockKept,
    LockReleased,
)
from locksmith.agent.rollback import RollbackRecord
from locksmith.agent.settings import AgentSettings
from locksmith.strategy import Strategy, StrategyContext, StrategyError, StrategyUnavailable

AfterBoot = Literal["done", "roll-back"]


class Releaser:
    def __init__(
        self,
        settings: AgentSettings,
        strategy: Strategy,
        ctx: StrategyContext,
        *,
        health: HealthCheck | None,
        clock: Clock,
        emit: Callable[[Event], None],
        log: Any,
        update_pending: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.strategy = strategy
        self.ctx = ctx
        self.health = health
        self.clock = clock
        self.emit = emit
        self.log = log
        self.update_pending = update_pending
        self._deferred: asyncio.Task[None] | None = None
        self._gate_passed: bool | None = None  # this boot's health verdict, once known
        self.rollback = RollbackRecord(settings.rollback_file)
        self._target_started = False

    async def after_boot(self) -> AfterBoot:
        """RELEASING_AFTER_BOOT: give back a lock held from before this boot, unless the post-boot
        hook or the health gate fails (then it is kept on purpose, and the log says so). "roll-back":
        this boot under the lock failed its gate on an A/B host; the machine reboots into the old slot."""
        hook_ok = await self.post_boot_hook()
        if self.settings.healthy_target and hook_ok:
            # Whether this boot is good does not depend on the lock (a host of strategy reboot, or one whose
            # store is down, still marks its new slot): the gate runs once, here, and the release reuses it.
            if await self._healthy():
                await self._start_healthy_target()
            else:
                self.log.error("after-boot.unhealthy", detail="the booted slot is not marked good; a reboot rolls back")
        try:
            held = await self.strategy.holds(self.ctx)
        except StrategyUnavailable as exc:
            self.log.warning("after-boot.deferred", reason=str(exc), detail="will release once reachable")
            self._deferred = asyncio.create_task(self._release_when_reachable(gate=True, hook_ok=hook_ok))
            return "done"
        except StrategyError as exc:
            self.log.error("after-boot.unknown", reason=str(exc), detail="left untouched; not releasing")
            return "done"
        if not held:
            if self.rollback.clear():
                self.log.info("rollback.acknowledged", detail="the lock was given back since our rollback; going on")
            self.log.info("after-boot.not-held")
            return "done"
        self.emit(LockHeldAfterBoot())
        if self._kept_after_boot(hook_ok):
            return "done"
        if self.settings.healthy_target and not await self._healthy():
            # An A/B host: its new slot is on trial, never marked good, so one more boot goes back to the old.
            reason = f"the health gate did not pass within {self.health.timeout if self.health else 0:g}s"
            self.rollback.write(reason)
            self._keep("health-gate", reason, detail="rebooting into the previous OS and keeping the lock")
            return "roll-back"
        await self._gate_and_release()
        return "done"

    def _kept_after_boot(self, hook_ok: bool) -> bool:
        """A lock held after boot is kept, before any gate, on the rollback's boot (however healthy it is)
        and after a failed post-boot hook: True if it was kept (and the log says why). Both after-boot
        paths ask, at boot and once a store that was down answers."""
        rolled_back = self.rollback.read()
        if rolled_back is not None:
            self._keep(
                "rolled-back",
                f"this host went back to its previous OS at {rolled_back.at}: {rolled_back.reason}",
                detail="no other host reboots until this one is fixed; then run "
                f"`locksmithctl unlock {self.ctx.machine_id}`",
            )
            return True
        if not hook_ok:
            self._keep("post-boot-hook", "the post-boot hook failed; release it by hand")
            return True
        return False

    async def post_boot_hook(self) -> bool:
        # Runs on every start, not only after our reboots: it must be idempotent (e.g. uncordon),
        # which also makes it undo a pre-reboot hook whose reboot a crash interrupted.
        if not self.settings.post_boot_hook:
            return True
        result = await run_hook("post-boot", self.settings.post_boot_hook, self.settings.post_boot_timeout)
        level = self.log.info if result.ok else self.log.error
        level("hook.post-boot", ok=result.ok, result=result.detail, output=result.output.strip()[-500:] or None)
        return result.ok

    async def give_back(self, reason: str, background: bool = True) -> None:
        """Release the permission if we hold it; if the service is unreachable, keep trying in
        the background (unless `background` is False: stopping, the next start releases it)."""
        try:
            if await self.strategy.holds(self.ctx):
                await self.strategy.release(self.ctx)
                self.emit(LockReleased(reason))
        except StrategyError as exc:
            self.log.warning("release.deferred", reason=reason, error=str(exc))
            if background:
                self.cancel_deferred()
                self._deferred = asyncio.create_task(self._release_when_reachable(gate=False))

    def cancel_deferred(self) -> None:
        # A deferred release must not run after we take the lock again for a new reboot: the
        # idempotent lock would hand us our old slot, and the release would then drop it.
        if self._deferred is not None and not self._deferred.done():
            self.log.info("release.deferred-cancelled", detail="taking the lock again for a new reboot")
            self._deferred.cancel()
        self._deferred = None

    async def aclose(self) -> None:
        if self._deferred is not None and not self._deferred.done():
            self._deferred.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._deferred

    async def _healthy(self) -> bool:
        """The health gate's verdict for this boot (run at most once)."""
        if self._gate_passed is None:
            if self.health is None:
                self._gate_passed = True
            else:
                self.emit(HealthGateStarted(self.health.timeout))
                self._gate_passed = await self.health.wait_healthy(self.log)
        return self._gate_passed

    async def _start_healthy_target(self) -> bool:
        """Tell the system this boot is good (the image's target marks the booted slot successful)."""
        target = self.settings.healthy_target
        if not target or self._target_started:
            return True
        result = await run_command(["systemctl", "start", target], self.settings.post_boot_timeout)
        self._target_started = result.ok
        if result.ok:
            self.log.info("after-boot.healthy", unit=target)
        else:
            output = result.output.strip()[-500:] or None
            self.log.error("after-boot.healthy-failed", unit=target, result=result.detail, output=output)
        return result.ok

    async def _gate_and_release(self) -> None:
        if not await self._healthy():
            self._keep(
                "health-gate",
                f"the health gate did not pass within {self.health.timeout if self.health else 0:g}s",
                detail="no other host reboots until this one is fixed; then run "
                f"`locksmithctl unlock {self.ctx.machine_id}` or restart locksmithd",
            )
            return
        if not await self._start_healthy_target():
            self._keep(
                "health-gate",
                f"{self.settings.healthy_target} did not start, so this boot is not marked good",
                detail=f"see `systemctl status {self.settings.healthy_target}`; then run "
                f"`locksmithctl unlock {self.ctx.machine_id}` or restart locksmithd",
            )
            return
        if self.update_pending():
            # Flatcar#408: the Go agent kept the lock here and blocked the whole group.
            self.log.info("after-boot.update-pending", detail="releasing anyway; the new update queues in turn")
        await self.give_back("after boot")

    def _keep(self, cause: Any, reason: str, **fields: str) -> None:
        self.log.error("after-boot.keeping-lock", cause=cause, reason=reason, **fields)
        self.emit(LockKept(cause, reason))

    async def _release_when_reachable(self, gate: bool, hook_ok: bool = True) -> None:
        """Once the store answers: a lock held after boot (`gate`) is judged as at boot, but too late to
        roll back (a failed gate keeps it and stays); otherwise it is released."""
        delay = 1.0
        while True:
            try:
                if await self.strategy.holds(self.ctx):
                    if gate:
                        if not self._kept_after_boot(hook_ok):
                            await self._gate_and_release()
                    else:
                        await self.strategy.release(self.ctx)
                        self.emit(LockReleased("deferred release"))
                else:
                    self.log.info("after-boot.not-held")
                return
            except StrategyUnavailable as exc:
                self.log.warning("release.retry", reason=str(exc), in_seconds=delay)
            except StrategyError as exc:
                self.log.error("release.failed", reason=str(exc), in_seconds=delay)
            await self.clock.sleep(delay)
            delay = min(delay * 2, self.settings.unavailable_backoff_max)
