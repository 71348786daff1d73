"""The agent as an explicit state machine. Read `_lifecycle` first; each step below it is one state.

    STARTING → RELEASING_AFTER_BOOT → IDLE ⇄ NEED_REBOOT → WAITING_FOR_WINDOW → ACQUIRING
             → PRE_REBOOT → REBOOTING                              (and STOPPING on SIGTERM)

Rules it keeps (see the module docs of the strategies for theirs):
- After boot, a lock held from before is given back — also when an update is already pending
  again (Flatcar#408) — after the post-boot hook and the health gate. If the gate times out the
  lock is kept on purpose, so a broken update stops here; the log says so.
- Only UPDATE_STATUS_UPDATED_NEED_REBOOT starts a reboot; any other status while waiting stops it.
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
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog

from locksmith.agent.hooks import run_hook
from locksmith.agent.reboot import Rebooter, RebootFailed
from locksmith.agent.settings import AgentSettings
from locksmith.agent.states import NEED_REBOOT_OPERATION, RELEASE_ON_STOP, State
from locksmith.strategy import Strategy, StrategyContext, StrategyError, StrategyUnavailable

# An observer sees every transition ("state", new state, fields) and event ("lock.wait", …).
Observer = Callable[[str, "State", dict[str, Any]], None]

STOP_RELEASE_TIMEOUT = 10.0


def utcnow() -> datetime:
    # datetime.now (not time.time) so freezegun can move it in tests.
    return datetime.now(UTC)


def operation_of(status: Any) -> str:
    """The CURRENT_OP string of a status from the update engine watcher (enum or string)."""
    op = getattr(status, "current_operation", status)
    return str(getattr(op, "value", op))


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        strategy: Strategy,
        ctx: StrategyContext,
        updates: AsyncIterable[Any],
        rebooter: Rebooter,
        *,
        observers: list[Observer] | None = None,
        on_ready: Callable[[], None] | None = None,
        logged_in_users: Callable[[], Awaitable[list[str]]] | None = None,
        broadcast: Callable[[str], Awaitable[None]] | None = None,
        bus: Callable[[], Awaitable[Any]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.strategy = strategy
        self.ctx = ctx
        self.updates = updates
        self.rebooter = rebooter
        self.observers = list(observers or [])
        self.on_ready = on_ready
        self.logged_in_users = logged_in_users
        self.broadcast = broadcast
        self.bus = bus
        self.clock = clock
        self.state = State.STARTING
        self.status: Any = None
        self.log = structlog.get_logger("locksmith.agent").bind(strategy=strategy.name)
        ctx.on_wake = self._on_wake
        # Exactly one of these two is set at any time: whether an update awaits a reboot.
        self._need_reboot = asyncio.Event()
        self._no_reboot_needed = asyncio.Event()
        self._no_reboot_needed.set()
        self._deferred_release: asyncio.Task[None] | None = None

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
            for task in (follow, stopping, self._deferred_release):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await self.strategy.aclose()

    async def _lifecycle(self) -> None:
        if self.on_ready is not None:
            self.on_ready()
        await self._release_after_boot()
        if not self.strategy.reboots:
            self.log.info("strategy.off", detail="this host never reboots by itself; locksmithd exits")
            return
        while True:
            self._enter(State.IDLE)
            await self._need_reboot.wait()
            self._enter(State.NEED_REBOOT, version=getattr(self.status, "new_version", None))
            await self._reboot_when_allowed()

    # --- RELEASING_AFTER_BOOT -------------------------------------------------------------

    async def _release_after_boot(self) -> None:
        self._enter(State.RELEASING_AFTER_BOOT)
        hook_ok = await self._post_boot_hook()
        try:
            held = await self.strategy.holds(self.ctx)
        except StrategyUnavailable as exc:
            self.log.warning("after-boot.deferred", reason=str(exc), detail="will release once reachable")
            self._deferred_release = asyncio.create_task(self._release_when_reachable(gate=hook_ok))
            return
        except StrategyError as exc:
            self.log.error("after-boot.unknown", reason=str(exc), detail="left untouched; not releasing")
            return
        if not held:
            self.log.info("after-boot.not-held")
            return
        if not hook_ok:
            self.log.error("after-boot.keeping-lock", reason="the post-boot hook failed; release it by hand")
            return
        await self._gate_and_release()

    async def _post_boot_hook(self) -> bool:
        # Runs on every start, not only after our reboots: it must be idempotent (e.g. uncordon),
        # which also makes it undo a pre-reboot hook whose reboot a crash interrupted.
        if not self.settings.post_boot_hook:
            return True
        result = await run_hook("post-boot", self.settings.post_boot_hook, self.settings.post_boot_timeout)
        level = self.log.info if result.ok else self.log.error
        level("hook.post-boot", ok=result.ok, result=result.detail, output=result.output.strip()[-500:] or None)
        return result.ok

    async def _gate_and_release(self) -> None:
        gate = self.settings.health
        if gate is not None and gate.enabled:
            self._event("health.gate", timeout=gate.timeout)
            if not await gate.wait_healthy(self.log, self.bus):
                self.log.error(
                    "after-boot.keeping-lock",
                    reason=f"the health gate did not pass within {gate.timeout:g}s",
                    detail="no other host reboots until this one is fixed; then run "
                    f"`locksmithctl unlock {self.ctx.machine_id}` or restart locksmithd",
                )
                return
        if self._need_reboot.is_set():
            # Flatcar#408: the Go agent kept the lock here and blocked the whole group.
            self.log.info("after-boot.update-pending", detail="releasing anyway; the new update queues in turn")
        await self._give_back("after boot")

    async def _release_when_reachable(self, gate: bool) -> None:
        delay = 1.0
        while True:
            try:
                if await self.strategy.holds(self.ctx):
                    if gate:
                        await self._gate_and_release()
                    else:
                        await self.strategy.release(self.ctx)
                        self._event("lock.released", reason="deferred release")
                else:
                    self.log.info("after-boot.not-held")
                return
            except StrategyUnavailable as exc:
                self.log.warning("release.retry", reason=str(exc), in_seconds=delay)
            except StrategyError as exc:
                self.log.error("release.failed", reason=str(exc), in_seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.unavailable_backoff_max)

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
        while self._need_reboot.is_set():
            if self._window_applies():
                now = self.clock()
                if not self.settings.window.is_open(now):  # type: ignore[union-attr]
                    nxt = self.settings.window.next_open(now)  # type: ignore[union-attr]
                    self._enter(State.WAITING_FOR_WINDOW, next_open=nxt.isoformat())
                    opened = await self._first(window=self._window_opens(), dropped=self._no_reboot_needed.wait())
                    if opened != "window":
                        return False
            self._cancel_deferred_release()
            self._enter(State.ACQUIRING)
            self._event("lock.attempt")
            race: dict[str, Coroutine[Any, Any, Any]] = {"acquired": self.strategy.acquire(self.ctx)}
            if self._window_applies():
                race["window-closed"] = self._window_closes()
            race["dropped"] = self._no_reboot_needed.wait()
            try:
                winner = await self._first(**race)
            except StrategyUnavailable as exc:
                self._event("lock.failure", reason=str(exc))
                self.log.warning("acquire.unavailable", reason=str(exc), retry_in=backoff)
                await self._pause(backoff, "strategy unavailable")
                backoff = min(backoff * 2, self.settings.unavailable_backoff_max)
                continue
            except StrategyError as exc:
                self._event("lock.failure", reason=str(exc))
                self.log.error("acquire.refused", reason=str(exc), detail="not rebooting")
                await self._pause(self.settings.retry_interval, "strategy error")
                continue
            if winner == "acquired":
                self._event("lock.acquired")
                return True
            self.log.info("acquire.abandoned", reason=winner)
            await self._give_back(winner)
        return False

    async def _prepare_reboot(self) -> str:
        """PRE_REBOOT: warn logged-in users (and wait), re-check the window, run the pre-reboot
        hook. Returns "ready", "window-closed" (lock given back) or "failed" (lock given back)."""
        self._enter(State.PRE_REBOOT)
        if self.settings.login_check and self.logged_in_users is not None:
            users = await self.logged_in_users()
            if users:
                minutes = self.settings.login_delay / 60
                message = f"locksmithd: this host reboots for an OS update in {minutes:g} minutes"
                self.log.info("login.delay", users=users, seconds=self.settings.login_delay)
                if self.broadcast is not None:
                    await self.broadcast(message)
                await asyncio.sleep(self.settings.login_delay)
        if self._window_applies() and not self.settings.window.is_open(self.clock()):  # type: ignore[union-attr]
            self.log.info("window.closed-before-reboot", detail="giving the lock back until the next window")
            await self._give_back("window closed")
            return "window-closed"
        if not self._need_reboot.is_set():
            await self._give_back("update withdrawn")
            return "failed"
        if self.settings.pre_reboot_hook:
            result = await run_hook("pre-reboot", self.settings.pre_reboot_hook, self.settings.pre_reboot_timeout)
            if not result.ok:
                self.log.error("hook.pre-reboot", ok=False, result=result.detail, output=result.output.strip()[-500:])
                await self._post_boot_hook()  # undo what the failed hook may have done (e.g. uncordon)
                await self._give_back("pre-reboot hook failed")
                return "failed"
            self.log.info("hook.pre-reboot", ok=True, result=result.detail)
        return "ready"

    async def _reboot(self) -> None:
        self._enter(State.REBOOTING, action=self.rebooter.description)
        try:
            await self.rebooter.reboot()
        except RebootFailed as exc:
            self.log.error("reboot.failed", reason=str(exc), detail="giving the lock back; will retry")
            await self._post_boot_hook()
            await self._give_back("reboot failed")
            return
        self.log.info("reboot.accepted", detail="waiting for the shutdown to stop us")
        await asyncio.sleep(self.settings.reboot_grace)
        self.log.error("reboot.never-happened", waited=self.settings.reboot_grace, detail="giving the lock back")
        await self._post_boot_hook()
        await self._give_back("reboot never happened")

    # --- STOPPING --------------------------------------------------------------------------

    async def _on_stop(self, state_at_stop: State) -> None:
        self._enter(State.STOPPING, was=state_at_stop.value)
        if state_at_stop in RELEASE_ON_STOP:
            try:
                async with asyncio.timeout(STOP_RELEASE_TIMEOUT):
                    await self._give_back("stopped before rebooting", background=False)
            except TimeoutError:
                self.log.error("stop.release-timeout", detail="the next start releases it")
        elif state_at_stop is State.REBOOTING:
            self.log.info("stop.keeping-lock", detail="the reboot is under way; released after boot")

    # --- helpers ---------------------------------------------------------------------------

    async def _give_back(self, reason: str, background: bool = True) -> None:
        """Release the permission if we hold it; if the service is unreachable, keep trying in
        the background (never leave a lock held with nobody going to reboot)."""
        try:
            if await self.strategy.holds(self.ctx):
                await self.strategy.release(self.ctx)
                self._event("lock.released", reason=reason)
        except StrategyError as exc:
            self.log.warning("release.deferred", reason=reason, error=str(exc))
            if background:
                self._cancel_deferred_release()
                self._deferred_release = asyncio.create_task(self._release_when_reachable(gate=False))

    def _cancel_deferred_release(self) -> None:
        # A deferred release must not run after we take the lock again for a new reboot: the
        # idempotent lock would hand us our old slot, and the release would then drop it.
        if self._deferred_release is not None and not self._deferred_release.done():
            self.log.info("release.deferred-cancelled", detail="taking the lock again for a new reboot")
            self._deferred_release.cancel()
        self._deferred_release = None

    async def _follow_updates(self) -> None:
        async for status in self.updates:
            self.status = status
            op = operation_of(status)
            self.log.info("update-engine.status", operation=op, version=getattr(status, "new_version", None))
            if op == NEED_REBOOT_OPERATION:
                self._no_reboot_needed.clear()
                self._need_reboot.set()
            else:
                self._need_reboot.clear()
                self._no_reboot_needed.set()
        self.log.warning("update-engine.stream-ended")

    def _window_applies(self) -> bool:
        return self.settings.window is not None and self.strategy.needs_window

    async def _window_opens(self) -> None:
        window = self.settings.window
        assert window is not None
        while True:
            now = self.clock()
            if window.is_open(now):
                return
            await asyncio.sleep(self._until(window.next_open(now), now))

    async def _window_closes(self) -> None:
        window = self.settings.window
        assert window is not None
        while True:
            now = self.clock()
            end = window.current_window_end(now)
            if end is None:
                return
            await asyncio.sleep(self._until(end, now))

    def _until(self, when: datetime, now: datetime) -> float:
        # Sleep in slices so a wall-clock jump (NTP, suspend, a test's frozen clock) is noticed.
        return min(max((when - now).total_seconds(), 0.01), self.settings.clock_check)

    async def _pause(self, seconds: float, why: str) -> None:
        self.log.info("pause", seconds=seconds, why=why)
        await self._first(slept=asyncio.sleep(seconds), dropped=self._no_reboot_needed.wait())

    async def _first(self, **contenders: Coroutine[Any, Any, Any]) -> str:
        """Run the contenders, return the name of the first to finish (re-raising its error),
        cancel and reap the rest. Earlier names win ties."""
        tasks = {name: asyncio.ensure_future(c) for name, c in contenders.items()}
        try:
            done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks.values():
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        for name, task in tasks.items():
            if task in done:
                task.result()
                return name
        raise AssertionError("unreachable")  # pragma: no cover

    def _on_wake(self, how: str) -> None:
        self._event("lock.wake", via=how)

    def _enter(self, state: State, **fields: Any) -> None:
        previous, self.state = self.state, state
        self.log.info("state", state=state.value, previous=previous.value, **fields)
        self._notify("state", state, {"previous": previous.value, **fields})

    def _event(self, name: str, **fields: Any) -> None:
        if name != "lock.wake":  # strategies already log their wake-ups
            self.log.info(name, **fields)
        self._notify(name, self.state, fields)

    def _notify(self, name: str, state: State, fields: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(name, state, fields)
            except Exception as exc:  # reporting must never stop a reboot or a release
                name = getattr(observer, "__name__", repr(observer))
                self.log.warning("observer.failed", observer=name, error=str(exc))
