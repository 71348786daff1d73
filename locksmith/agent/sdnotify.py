"""sd_notify(3) over $NOTIFY_SOCKET: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

A few lines instead of a dependency: one AF_UNIX datagram per notification; a leading `@` in the
socket address means the Linux abstract namespace. Without NOTIFY_SOCKET (not started by systemd
with Type=notify) every call is a no-op, and a failed send is logged, never raised: systemd
integration must not take the agent down.
"""

from __future__ import annotations

import os
import socket

import structlog

_log = structlog.get_logger("locksmith.agent.sdnotify")


def notify(*fields: str) -> bool:
    """Send `KEY=value` lines in one datagram; True if sent, False if no socket or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    payload = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(payload)
    except OSError as exc:
        _log.warning("sd-notify-failed", socket=os.environ.get("NOTIFY_SOCKET"), error=str(exc))
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Startup finished (Type=notify); optionally with a first STATUS= line."""
    return notify("READY=1", *([_status_field(status)] if status is not None else []))


def status(text: str) -> bool:
    """The one-line status `systemctl status` shows."""
    return notify(_status_field(text))


def watchdog() -> bool:
    """Ping the watchdog (WatchdogSec=)."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Shutdown began."""
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between required pings, or None when no watchdog applies to this process.

    As sd_watchdog_enabled(3): WATCHDOG_USEC must be a positive integer, and WATCHDOG_PID, if
    set, must be our pid (the variables may be inherited by a child that is not the service).
    Callers should ping at half this interval."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def _status_field(text: str) -> str:
    # STATUS is one line; a newline would start a new (bogus) field.
    return "STATUS=" + " ".join(text.splitlines())
