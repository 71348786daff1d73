"""Asking systemd-logind to reboot the machine: org.freedesktop.login1.Manager.Reboot(false)."""

from __future__ import annotations

from typing import Final

from dbus_fast.aio import MessageBus

from locksmith.bus.system import CallError, call

LOGIND_NAME: Final = "org.freedesktop.login1"
LOGIND_PATH: Final = "/org/freedesktop/login1"
LOGIND_INTERFACE: Final = "org.freedesktop.login1.Manager"


class RebootRequestError(Exception):
    """logind did not accept the reboot. str() is one line naming the D-Bus error."""


async def request_reboot(bus: MessageBus) -> None:
    """Call Reboot(interactive=false) on logind; returns once logind has accepted the request.

    `false` = non-interactive: logind must not prompt for authorisation (polkit), it either allows
    the caller (root does) or refuses at once."""
    try:
        await call(bus, LOGIND_NAME, LOGIND_PATH, LOGIND_INTERFACE, "Reboot", "b", [False])
    except CallError as exc:
        if exc.error_name is None:  # the connection itself failed, or logind did not answer
            raise RebootRequestError(f"logind Reboot call failed: {exc}") from None
        raise RebootRequestError(
            f"logind refused Reboot(false): {exc.error_name}{': ' + exc.detail if exc.detail else ''}"
            " (is systemd-logind running, and is locksmithd running as root?)"
        ) from None


async def list_session_rows(bus: MessageBus) -> list[tuple[str, int, str, str, str]]:
    """logind's ListSessions: (session id, uid, user name, seat, object path) per session.
    CallError if logind does not answer; ValueError if its answer is not `a(susso)`."""
    reply = await call(bus, LOGIND_NAME, LOGIND_PATH, LOGIND_INTERFACE, "ListSessions", within=5.0)
    if reply.signature != "a(susso)":
        raise ValueError(f"ListSessions answered {reply.signature[:40]!r}, expected 'a(susso)'")
    return [tuple(row) for row in reply.body[0]]  # type: ignore[misc]
