"""The agent as an explicit state machine. Read `_lifecycle` first; each step below it is one state.

    STARTING → RELEASING_AFTER_BOOT → IDLE ⇄ NEED_REBOOT → WAITING_FOR_WINDOW → ACQUIRING
             → PRE_REBOOT → REBOOTING                              (and STOPPING on SIGTERM)

Every move is checked against states.TRANSITIONS; the outside world is reached only through the
typed ports of ports.py (update stream, rebooter, health gate, sessions, clock, observers).

Rules it keeps (see the module docs of the strategies for theirs):
- After boot, a lock held from before is given back — also when an update is already pending
  again (Flatcar#408) — after the post-boot hook and the health gate. If the gate times out the
  lock is kept on purpose, so a broken update stops here; the log says so (release.py). On an A/B
  host that boot is rebooted once more, into the old slot, still holding the lock (`_roll_back`).
- Only the need-reboot status (`update1.NEED_REBOOT`) starts a reboot; any other status while waiting stops it.
- The window is waited for *before* taking the lock; if it closes while we wait for the lock, we
  stop waiting, give back whatever we may hold, and wait for the next window (coreos bugs#1886).
- Whenever a reboot is abandoned after permission was taken (hook failed, reboot refused, reboot
  never came, window closed, update withdrawn, SIGTERM before rebooting) the permission is given
  back — never a lock held with nobody going to reboot. Only once the reboot was accepted do we
  keep it: the next boot gives it back.
- Crash safety: a restart always goes through RELEASING_AFTER_BOOT, so a lock held by a killed
  agent (at any state) is given back — or, if the update is still pending, simply taken again in
  turn. The semaphore's idempotent lock means a host never takes a second slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Literal

import structlog

from locksmith.agent.hooks import run_hook
from locksmith.agent.ports import (
    Event,
    ExpiredHolderRemoved,
    HealthCheck,
    HealthGateStarted,
    LockAcquired,
    LockAttempt,
    LockFailure,
    LockReleased,
    LockWoken,
    Ports,
    Ready,
    StateEntered,
)
from locksmith.agent.reboot import RebootFailed
from locksmith.agent.release import Releaser
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import RELEASE_ON_STOP, State, check_transition
from locksmith.agent.waits import first, window_closes, window_opens
from locksmith.protocol.update1 import Status
from locksmith.strategy import Strategy, StrategyContext, StrategyError, StrategyUnavailable

STOP_RELEASE_TIMEOUT = 10.0
Outcome = Literal["ready", "window-closed", "failed"]


class Agent:
    def __init__(self, settings: AgentSettings, strategy: Strategy, ctx: StrategyContext, ports: Ports) -> None:
        self.settings = settings
        self.strategy = strategy
        self.ctx = ctx
        self.ports = ports
        self.clock = ports.clock
        self.state = State.STARTING
        self._started = False
        self.status: Status | None = None
        self.log = structlog.get_logger("locksmith.agent").bind(strategy=strategy.name)
        ctx.on_wake = lambda how: self._emit(LockWoken(how))
        ctx.on_expired_holder = lambda holder, ttl: self._emit(ExpiredHolderRemoved(holder, ttl))
        # Exactly one of these two is set at any time: whether an update awaits a reboot.
        self._need_reboot = asyncio.Event()
        self._no_reboot_needed = asyncio.Event()
        self._no_reboot_needed.set()
        self.releaser = Releaser(
            settings,
            strategy,
            ctx,
            health=ports.health or _settings_gate(settings),
            clock=self.clock,
            emit=self._emit,
            log=self.log,
            update_pending=self._need_reboot.is_set,
        )

    # --- the whole life, top to bottom ----------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set (SIGTERM/SIGINT) or the strategy never reboots; returns 0."""
        self._enter(State.STARTING)
        follow = asyncio.create_task(self._follow_updates(), name="follow-update-engine")
        life = asyncio.create_task(self._lifecycle(), name="lifecycle")
        stopping = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            await asyncio.wait({life, stopping}, return_when=asyncio.FIRST_COMPLETED)
            state_at_stop = self.state
            if not life.done():
                life.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await life
                await self._on_stop(state_at_stop)
            else:
                life.result()  # re-raise an unexpected error
            return 0
        finally:
            for task in (follow, stopping):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await self.releaser.aclose()
            await self.strategy.aclose()

    async def _lifecycle(self) -> None:
        self._emit(Ready())
        self._enter(State.RELEASING_AFTER_BOOT)
        await self.strategy.started(self.ctx)
        if await self.releaser.after_boot() == "roll-back":
            await self._roll_back()
        if not self.strategy.reboots:
            self.log.info("strategy.off", detail="this host never reboots by itself; locksmithd exits")
            return
        while True:
            self._enter(State.IDLE)
            await self._need_reboot.wait()
            self._enter(State.NEED_REBOOT, version=self.status.new_version if self.status else None)
            await self._reboot_when_allowed()

    # --- NEED_REBOOT → … → REBOOTING --------------------------------------------------------

    async def _reboot_when_allowed(self) -> None:
        """One update: loop until we rebooted (never returns then) or the update is withdrawn."""
        while self._need_reboot.is_set():
            if not await self._take_permission():
                return
            outcome = await self._prepare_reboot()
            if outcome == "window-closed":
                continue
            if outcome == "ready":
                await self._reboot()  # returns only if the reboot did not happen
            await self._pause(self.settings.retry_interval, "retry after an abandoned reboot")

    async def _take_permission(self) -> bool:
        """WAITING_FOR_WINDOW then ACQUIRING until permission is held inside a window (True), or
        the update is no longer pending (False)."""
        backoff = 1.0
        window = self.settings.window if self.strategy.needs_window else None
        while self._need_reboot.is_set():
            if window is not None and not window.is_open(self.clock.now()):
                self._enter(State.WAITING_FOR_WINDOW, next_open=window.next_open(self.clock.now()).isoformat())
                opens = window_opens(window, self.clock, self.settings.clock_check)
                if await first(window=opens, dropped=self._no_reboot_needed.wait()) != "window":
                    return False
            self.releaser.cancel_deferred()
            self._enter(State.ACQUIRING)
            self._emit(LockAttempt())
            race: dict[str, Coroutine[Any, Any, Any]] = {"acquired": self.strategy.acquire(self.ctx)}
            if window is not None:
                race["window-closed"] = window_closes(window, self.clock, self.settings.clock_check)
            race["dropped"] = self._no_reboot_needed.wait()
            try:
                winner = await first(**race)
            except StrategyUnavailable as exc:
                self._emit(LockFailure(str(exc)))
                self.log.warning("acquire.unavailable", reason=str(exc), retry_in=backoff)
                await self._pause(backoff, "strategy unavailable")
                backoff = min(backoff * 2, self.settings.unavailable_backoff_max)
                continue
            except StrategyError as exc:
                self._emit(LockFailure(str(exc)))
                self.log.error("acquire.refused", reason=str(exc), detail="not rebooting")
                await self._pause(self.settings.retry_interval, "strategy error")
                continue
            if winner == "acquired":
                self._emit(LockAcquired())
                if self.releaser.rollback.clear():  # a new update's trial: the last rollback is behind us
                    self.log.info("rollback.cleared", detail="the lock was taken for a new update")
                return True
            self.log.info("acquire.abandoned", reason=winner)
            await self.releaser.give_back(winner)
        return False

    async def _prepare_reboot(self) -> Outcome:
        """PRE_REBOOT: warn logged-in users (and wait), re-check the window, run the pre-reboot
        hook. Returns "ready", "window-closed" (lock given back) or "failed" (lock given back)."""
        self._enter(State.PRE_REBOOT)
        sessions = self.ports.sessions
        if self.settings.login_check and sessions is not None:
            users = await sessions.users()
            if users:
                minutes = self.settings.login_delay / 60
                self.log.info("login.delay", users=users, seconds=self.settings.login_delay)
                await sessions.broadcast(f"locksmithd: this host reboots for an OS update in {minutes:g} minutes")
                await self.clock.sleep(self.settings.login_delay)
        window = self.settings.window if self.strategy.needs_window else None
        if window is not None and not window.is_open(self.clock.now()):
            self.log.info("window.closed-before-reboot", detail="giving the lock back until the next window")
            await self.releaser.give_back("window closed")
            return "window-closed"
        if not self._need_reboot.is_set():
            await self.releaser.give_back("update withdrawn")
            return "failed"
        if self.settings.pre_reboot_hook:
            result = await run_hook("pre-reboot", self.settings.pre_reboot_hook, self.settings.pre_reboot_timeout)
            if not result.ok:
                self.log.error("hook.pre-reboot", ok=False, result=result.detail, output=result.output.strip()[-500:])
                await self.releaser.post_boot_hook()  # undo what the failed hook may have done (e.g. uncordon)
                await self.releaser.give_back("pre-reboot hook failed")
                return "failed"
            self.log.info("hook.pre-reboot", ok=True, result=result.detail)
        lapsed = self.strategy.permission_lapsed()
        if lapsed is not None:
            self.log.error("reboot.permission-lapsed", reason=lapsed, detail="not rebooting; asking again")
            await self.releaser.give_back("permission lapsed")
            return "failed"
        return "ready"

    async def _reboot(self) -> None:
        rebooter = self.ports.rebooter
        self._enter(State.REBOOTING, action=rebooter.description)
        try:
            await rebooter.reboot()
        except RebootFailed as exc:
            self.log.error("reboot.failed", reason=str(exc), detail="giving the lock back; will retry")
            await self.releaser.post_boot_hook()
            await self.releaser.give_back("reboot failed")
            return
        self.log.info("reboot.accepted", detail="waiting for the shutdown to stop us")
        await self.clock.sleep(self.settings.reboot_grace)
        self.log.error("reboot.never-happened", waited=self.settings.reboot_grace, detail="giving the lock back")
        await self.releaser.post_boot_hook()
        await self.releaser.give_back("reboot never happened")

    async def _roll_back(self) -> None:
        """After a boot under the lock failed its gate: reboot into the old slot, keeping the lock (the rollout
        stops here). If the reboot does not come, stay up and keep it all the same: this boot is not good."""
        rebooter = self.ports.rebooter
        self._enter(State.REBOOTING, action=rebooter.description, why="rollback")
        try:
            await rebooter.reboot()
        except RebootFailed as exc:
            self.log.error("rollback.reboot-failed", reason=str(exc), detail="keeping the lock; reboot by hand")
            return
        self.log.info("rollback.reboot-accepted", detail="waiting for the shutdown to stop us")
        await self.clock.sleep(self.settings.reboot_grace)
        self.log.error("rollback.reboot-never-happened", waited=self.settings.reboot_grace, detail="keeping the lock")

    # --- STOPPING --------------------------------------------------------------------------

    async def _on_stop(self, state_at_stop: State) -> None:
        self._enter(State.STOPPING, was=state_at_stop.value)
        if state_at_stop in RELEASE_ON_STOP:
            try:
                async with asyncio.timeout(STOP_RELEASE_TIMEOUT):
                    await self.releaser.give_back("stopped before rebooting", background=False)
            except TimeoutError:
                self.log.error("stop.release-timeout", detail="the next start releases it")
        elif state_at_stop is State.REBOOTING:
            self.log.info("stop.keeping-lock", detail="the reboot is under way; released after boot")

    # --- helpers ---------------------------------------------------------------------------

    async def _follow_updates(self) -> None:
        async for status in self.ports.updates:
            previous, self.status = self.status, status
            op = status.current_operation
            # A download signals its progress about twice a second: the journal gets each operation once.
            same = previous is not None and previous.current_operation == op
            log = self.log.debug if same else self.log.info
            log("update-engine.status", operation=getattr(op, "value", op), version=status.new_version)
            if status.needs_reboot:
                self._no_reboot_needed.clear()
                self._need_reboot.set()
            else:
                self._need_reboot.clear()
                self._no_reboot_needed.set()
        self.log.warning("update-engine.stream-ended")

    async def _pause(self, seconds: float, why: str) -> None:
        self.log.info("pause", seconds=seconds, why=why)
        await first(slept=self.clock.sleep(seconds), dropped=self._no_reboot_needed.wait())

    def _enter(self, state: State, **detail: str | None) -> None:
        """Move to `state`; IllegalTransition (a bug) if states.TRANSITIONS does not allow it."""
        previous = self.state if self._started else None
        check_transition(previous, state)
        self._started, self.state = True, state
        shown = {k: v for k, v in detail.items() if v is not None}
        self.log.info("state", state=state.value, previous=previous.value if previous else None, **shown)
        self._emit(StateEntered(state, previous, self.clock.now(), shown))

    def _emit(self, event: Event) -> None:
        match event:  # the log keeps the event names it always had
            case LockAttempt():
                self.log.info("lock.attempt")
            case LockAcquired():
                self.log.info("lock.acquired")
            case LockFailure(reason=reason):
                self.log.info("lock.failure", reason=reason)
            case LockReleased(reason=reason):
                self.log.info("lock.released", reason=reason)
            case HealthGateStarted(timeout=timeout):
                self.log.info("health.gate", timeout=timeout)
        for observer in self.ports.observers:
            try:
                observer(event)
            except Exception as exc:  # reporting must never stop a reboot or a release
                name = getattr(observer, "__name__", repr(observer))
                self.log.warning("observer.failed", observer=name, error=str(exc))


def _settings_gate(settings: AgentSettings) -> HealthCheck | None:
    # Without a bus-aware gate from main.py, the configured gate runs as is (no systemd unit check).
    gate = settings.health
    return gate if gate is not None and gate.enabled else None
