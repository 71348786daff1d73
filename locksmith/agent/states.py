"""The agent's states, in the order a reboot walks through them, the moves allowed between them,
and how each is shown outside."""

from __future__ import annotations

import enum
from collections.abc import Mapping


class State(enum.StrEnum):
    STARTING = "starting"
    # Give back a lock held from before this boot (after the post-boot hook and the health gate).
    RELEASING_AFTER_BOOT = "releasing-after-boot"
    IDLE = "idle"
    NEED_REBOOT = "need-reboot"
    WAITING_FOR_WINDOW = "waiting-for-window"
    ACQUIRING = "acquiring"
    # Permission held: logged-in users warned/waited for, then the pre-reboot hook.
    PRE_REBOOT = "pre-reboot"
    REBOOTING = "rebooting"
    STOPPING = "stopping"


# The coordinator file speaks the Go agent's four words (STATE=…), which other tools read.
COORDINATOR_STATE: dict[State, str] = {
    State.STARTING: "starting",
    State.RELEASING_AFTER_BOOT: "running",
    State.IDLE: "running",
    State.NEED_REBOOT: "reboot-planned",
    State.WAITING_FOR_WINDOW: "reboot-planned",
    State.ACQUIRING: "reboot-planned",
    State.PRE_REBOOT: "reboot-planned",
    State.REBOOTING: "rebooting",
    State.STOPPING: "running",
}

# States in which the agent may hold a permission it took *for a reboot of this boot*: stopping
# there (SIGTERM) gives it back, since nobody is going to reboot. REBOOTING is deliberately absent:
# the reboot is under way and the next boot releases the lock.
RELEASE_ON_STOP = frozenset({State.ACQUIRING, State.PRE_REBOOT})

# Every move the lifecycle makes (machine.py). A state missing from a set is a bug, not a new path:
# `check_transition` refuses it so the agent stops loudly instead of wandering. STOPPING (SIGTERM)
# may follow every state but itself; a restart begins again at STARTING, in a new process.
_AFTER_AN_ABANDONED_REBOOT = frozenset({State.WAITING_FOR_WINDOW, State.ACQUIRING, State.IDLE, State.STOPPING})
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.STARTING: frozenset({State.RELEASING_AFTER_BOOT, State.STOPPING}),
    # REBOOTING: the boot under the lock failed its health gate, so we roll back (release.py).
    State.RELEASING_AFTER_BOOT: frozenset({State.IDLE, State.REBOOTING, State.STOPPING}),
    State.IDLE: frozenset({State.NEED_REBOOT, State.STOPPING}),
    # IDLE again when the update is withdrawn before the first attempt.
    State.NEED_REBOOT: frozenset({State.WAITING_FOR_WINDOW, State.ACQUIRING, State.IDLE, State.STOPPING}),
    State.WAITING_FOR_WINDOW: frozenset({State.ACQUIRING, State.IDLE, State.STOPPING}),
    # ACQUIRING again after a back-off; WAITING_FOR_WINDOW when the window closed while we waited.
    State.ACQUIRING: frozenset({State.PRE_REBOOT} | _AFTER_AN_ABANDONED_REBOOT),
    State.PRE_REBOOT: frozenset({State.REBOOTING} | _AFTER_AN_ABANDONED_REBOOT),
    # The reboot was refused or never came: the lock was given back, the update is tried again.
    State.REBOOTING: _AFTER_AN_ABANDONED_REBOOT,
    State.STOPPING: frozenset(),
}
INITIAL = State.STARTING


class IllegalTransition(RuntimeError):
    """The machine tried a move that TRANSITIONS does not allow (a bug in the lifecycle)."""


def check_transition(previous: State | None, new: State) -> None:
    """Raise IllegalTransition unless `previous` → `new` is in the table (None: not started yet)."""
    if previous is None:
        if new is not INITIAL:
            raise IllegalTransition(f"the agent must start in {INITIAL.value}, not {new.value}")
        return
    if new not in TRANSITIONS[previous]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[previous])) or "nothing"
        raise IllegalTransition(f"{previous.value} → {new.value} is not allowed; from {previous.value}: {allowed}")
