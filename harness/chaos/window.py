"""A reboot window that opens a few seconds after an agent starts, so chaos runs reach (and kill agents
in) waiting-for-window without waiting for a real wall-clock window.

Windows are given to the minute, so instead of waiting for one the agent's clock is moved: Debian's
libfaketime starts the agent's wall clock just before 04:00 UTC (monotonic time stays real, so every
timeout and sleep is unchanged) and the window is 04:00 for an hour. Each restarted agent starts its clock
over, so it waits again — what a real host restarted before its window does.
"""

from __future__ import annotations

import glob
import random

WINDOW_START = "04:00"
WINDOW_LENGTH = "1h"
_LIBFAKETIME = "/usr/lib/*/faketime/libfaketime.so.1"


def libfaketime() -> str:
    found = sorted(glob.glob(_LIBFAKETIME))
    if not found:
        raise RuntimeError("libfaketime is missing: install Debian's faketime package (scripts/bootstrap does)")
    return found[0]


def window_env(rng: random.Random) -> dict[str, str]:
    """Agent settings for a window that opens 1 to 4 seconds after the agent starts."""
    second = rng.randint(56, 59)
    return {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": f"@2026-01-05 03:59:{second}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "TZ": "UTC",
        "REBOOT_WINDOW_START": WINDOW_START,
        "REBOOT_WINDOW_LENGTH": WINDOW_LENGTH,
    }
