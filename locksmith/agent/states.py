"""The agent's states, in the order a reboot walks through them, and how each is shown outside."""

from __future__ import annotations

import enum


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

NEED_REBOOT_OPERATION = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
