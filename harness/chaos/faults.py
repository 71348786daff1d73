"""Fault injection: etcd members killed and restarted (the leader too), agents SIGKILLed in every
state, agents stalled with SIGSTOP/SIGCONT, and delays (a member frozen for a moment, so every
request routed through it waits).

Faults run one after another, drawn from a random generator seeded per run, so a failing run's
seed replays the same choices (their timing against the agents differs from one replay to the
next). At most one etcd member is down or frozen at a time: the cluster keeps quorum and the run
tests the agents, not etcd's well-known unavailability without one. Agents are killed in whatever
state they are in (read from their coordinator file), and three kinds aim at states a random kill
rarely hits: "agent-kill-holder" at those that hold a slot (acquired, pre-reboot, rebooting, releasing
after boot), "agent-kill-need-reboot" at the moment a freshly restarted agent has just learnt a reboot is
needed (the kill follows the first state it publishes after that: need-reboot lasts a millisecond, and
the agent's file shows a burst's last state, so usually acquiring, with its line join or first
compare-and-swap under way), and
"agent-kill-waiting-for-window" at a host whose reboot window has not opened yet. "etcd-freeze" (long
mode) stops a member for longer than a request's deadline and a watch's idle bound, so agents must
notice and move on; "etcd-delay" is the short version that only slows requests. "holder-dies-for-good"
(only when the agents run with LOCKSMITHD_LOCK_TTL, planned by the harness for every third run): one host,
chosen at the start, is taken away for good a moment after it gets a slot — killed in whatever holding
state it is in by then, rebooting included, and never started again — so only its lease's expiry, judged
by the others, can give its slot back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from dataclasses import dataclass, field

from harness.chaos.history import Recorder
from harness.devtools.etcd import EtcdCluster, EtcdMember
from harness.devtools.simhost import SimHost

# Relative weights of the fault kinds.
WEIGHTS = {
    "etcd-kill-leader": 2,
    "etcd-kill-follower": 2,
    "etcd-delay": 2,
    "etcd-freeze": 1,
    "agent-kill": 5,
    "agent-kill-holder": 3,
    "agent-kill-need-reboot": 2,
    "agent-kill-waiting-for-window": 2,
    "agent-stall": 3,
}
# How long after it got its slot a host planned to die for good dies (seconds: spread over the holding states).
_DEATH_AFTER = (0.0, 1.2)
_DEATH_WAIT = 60.0  # for the planned host's turn; longer means the fleet is stuck (the checker says so)
# How often the phase of an agent being aimed at is read, and for how long at most (seconds).
_AIM_POLL = 0.002
_AIM_FOR = 5.0


@dataclass
class FaultInjector:
    cluster: EtcdCluster
    hosts: list[SimHost]
    recorder: Recorder
    rng: random.Random
    #: Pause between faults, drawn uniformly (seconds).
    gap: tuple[float, float] = (0.1, 0.6)
    #: How long a member stays dead or a host stalled (seconds).
    hold: tuple[float, float] = (0.3, 1.5)
    #: How long "etcd-freeze" stops a member (seconds); None leaves the kind out (short mode: CI time).
    freeze: tuple[float, float] | None = None
    #: The agents' LOCKSMITHD_LOCK_TTL (seconds); None leaves "holder-dies-for-good" out (nothing would free it).
    lock_ttl: float | None = None
    #: This run takes one host away for good while it holds (needs `lock_ttl`).
    plan_death: bool = False
    holders: set[str] = field(default_factory=set)  # kept current by the harness from the observer
    counts: Counter[str] = field(default_factory=Counter)
    killed_in_state: Counter[str] = field(default_factory=Counter)

    async def run(self, until: asyncio.Event) -> None:
        kinds = [k for k in WEIGHTS if k != "etcd-freeze" or self.freeze is not None]
        weights = [WEIGHTS[k] for k in kinds]
        death: asyncio.Task[None] | None = None
        if self.plan_death and self.lock_ttl and len(self.hosts) >= 2:
            host, after = self.rng.choice(self.hosts), self.rng.uniform(*_DEATH_AFTER)
            death = asyncio.create_task(self._holder_dies_for_good("holder-dies-for-good", host, after))
        try:
            while not until.is_set():
                await asyncio.sleep(self.rng.uniform(*self.gap))
                if until.is_set():
                    break
                kind = self.rng.choices(kinds, weights)[0]
                await getattr(self, "_" + kind.replace("-", "_"))(kind)
            if death is not None:  # planned: it happens even if the host gets its slot after the window
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(death, _DEATH_WAIT)
        finally:
            if death is not None and not death.done():
                death.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await death

    def _hold(self) -> float:
        return self.rng.uniform(*self.hold)

    def _note(self, kind: str, **detail: object) -> None:
        self.counts[kind] += 1
        self.recorder.add("fault", fault=kind, **detail)

    async def _restart(self, member: EtcdMember) -> None:
        await asyncio.to_thread(member.start)
        await asyncio.to_thread(self.cluster.wait_healthy, 60.0, [member])

    async def _etcd_kill_leader(self, kind: str) -> None:
        leader = await asyncio.to_thread(self.cluster.leader)
        if leader is None:
            return
        await self._kill_member(kind, leader)

    async def _etcd_kill_follower(self, kind: str) -> None:
        leader = await asyncio.to_thread(self.cluster.leader)
        followers = [m for m in self.cluster.members if m is not leader and m.running()]
        if followers:
            await self._kill_member(kind, self.rng.choice(followers))

    async def _kill_member(self, kind: str, member: EtcdMember) -> None:
        hold = self._hold()
        self._note(kind, member=member.name, down_for=round(hold, 2))
        await asyncio.to_thread(member.kill)
        await asyncio.sleep(hold)
        await self._restart(member)

    async def _etcd_delay(self, kind: str) -> None:
        member = self.rng.choice([m for m in self.cluster.members if m.running()])
        hold = self.rng.uniform(0.1, 0.8)
        self._note(kind, member=member.name, frozen_for=round(hold, 2))
        member.pause()
        try:
            await asyncio.sleep(hold)
        finally:
            member.resume()

    async def _etcd_freeze(self, kind: str) -> None:
        assert self.freeze is not None
        member = self.rng.choice([m for m in self.cluster.members if m.running()])
        hold = self.rng.uniform(*self.freeze)
        self._note(kind, member=member.name, frozen_for=round(hold, 2))
        member.pause()
        try:
            await asyncio.sleep(hold)
        finally:
            member.resume()

    def _kill(self, kind: str, host: SimHost) -> None:
        state = host.agent_phase()
        if host.signal_agent(signal.SIGKILL):
            self.killed_in_state[state] += 1
            self._note(kind, host=host.name, state=state)

    async def _agent_kill(self, kind: str) -> None:
        self._kill(kind, self.rng.choice(self.hosts))

    async def _agent_kill_holder(self, kind: str) -> None:
        """Kill a host that holds a slot: the states worth testing most are the rare ones."""
        holders = [h for h in self.hosts if h.machine_id in self.holders]
        if holders:
            self._kill(kind, self.rng.choice(holders))

    async def _agent_kill_need_reboot(self, kind: str) -> None:
        """Restart the agent of a host still to update (kill it; its supervisor starts a new one), then
        kill the new one the moment it publishes need-reboot."""
        pending = [h for h in self.hosts if h.boot == 0 and h.machine_id not in self.holders]
        if not pending:
            return
        host = self.rng.choice(pending)
        if host.agent_phase() == "down":
            return
        self._kill("agent-kill", host)  # its supervisor starts a new agent
        await self._kill_when(kind, host, "need-reboot", "acquiring")

    async def _agent_kill_waiting_for_window(self, kind: str) -> None:
        waiting = [h for h in self.hosts if h.agent_phase() == "waiting-for-window"]
        if waiting:
            self._kill(kind, self.rng.choice(waiting))

    async def _kill_when(self, kind: str, host: SimHost, *phases: str) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _AIM_FOR
        while loop.time() < give_up:
            if host.agent_phase() in phases:
                self._kill(kind, host)
                return
            await asyncio.sleep(_AIM_POLL)

    async def _holder_dies_for_good(self, kind: str, host: SimHost, after: float) -> None:
        """`host` dies for good `after` seconds into its first hold (if it still holds then)."""
        # Polled like the other aimed faults: `holders` is set from the observer's callback.
        while host.machine_id not in self.holders:
            if host.boot >= 1 and not host.rebooting:
                return  # its turn came and went between two looks
            await asyncio.sleep(_AIM_POLL * 5)
        await asyncio.sleep(after)
        if host.machine_id not in self.holders:
            return
        state = "rebooting" if host.rebooting else host.agent_phase()
        if host.die_for_good():
            self.killed_in_state[state] += 1
            self._note(kind, host=host.name, state=state)
            self.recorder.add("died", host=host.machine_id, name=host.name, state=state)

    async def _agent_stall(self, kind: str) -> None:
        host = self.rng.choice(self.hosts)
        hold = self._hold()
        state = host.agent_phase()
        if not host.signal_agent(signal.SIGSTOP):
            return
        self._note(kind, host=host.name, state=state, stalled_for=round(hold, 2))
        try:
            await asyncio.sleep(hold)
        finally:
            host.signal_agent(signal.SIGCONT)

    async def heal(self) -> None:
        """After the last fault: every member running, nothing frozen."""
        for m in self.cluster.members:
            m.resume()
            if not m.running():
                await self._restart(m)
        for h in self.hosts:
            h.signal_agent(signal.SIGCONT)
