"""Fault injection: etcd members killed and restarted (the leader too), agents SIGKILLed in every
state, agents stalled with SIGSTOP/SIGCONT, and delays (a member frozen for a moment, so every
request routed through it waits).

Faults run one after another, drawn from a random generator seeded per run, so a failing run's
seed replays the same choices (their timing against the agents differs from one replay to the
next). At most one etcd member is down or frozen at a time: the cluster keeps quorum and the run
tests the agents, not etcd's well-known unavailability without one. Agents are killed in whatever
state they are in (read from their own log), and "agent-kill-holder" aims at the rarer states
that hold a slot: acquired, pre-reboot, rebooting, releasing after boot.
"""

from __future__ import annotations

import asyncio
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
    "agent-kill": 5,
    "agent-kill-holder": 3,
    "agent-stall": 3,
}


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
    holders: set[str] = field(default_factory=set)  # kept current by the harness from the observer
    counts: Counter[str] = field(default_factory=Counter)
    killed_in_state: Counter[str] = field(default_factory=Counter)

    async def run(self, until: asyncio.Event) -> None:
        kinds = list(WEIGHTS)
        weights = [WEIGHTS[k] for k in kinds]
        while not until.is_set():
            await asyncio.sleep(self.rng.uniform(*self.gap))
            if until.is_set():
                break
            kind = self.rng.choices(kinds, weights)[0]
            await getattr(self, "_" + kind.replace("-", "_"))(kind)

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
