"""A long command run to its end within a deadline, as a user would: past the deadline it gets Ctrl-C
(SIGINT), so it stops what it started (VMs, namespaces, agents) before the caller fails with how far it got.
"""

from __future__ import annotations

import signal
import subprocess


def finish(proc: subprocess.Popen[str], seconds: float, what: str, stop_seconds: float) -> tuple[str, str]:
    """`proc`'s (stdout, stderr; "" when merged) once it exits within `seconds`; else Ctrl-C, its clean-up
    awaited for `stop_seconds` (then killed), and an AssertionError naming `what` with the end of what it
    printed."""
    try:
        try:
            stdout, stderr = proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=stop_seconds)
            raise AssertionError(
                f"{what} did not finish within {seconds:g} s:\n{stdout[-6000:]}\n{(stderr or '')[-2000:]}"
            ) from None
    finally:
        # whatever ended the wait (the clean-up's own deadline, the test's timeout), nothing is left running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return stdout, stderr or ""
