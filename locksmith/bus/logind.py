"""Asking systemd-logind to reboot the machine: org.freedesktop.login1.Manager.Reboot(false)."""

from __future__ import annotations

from typing import Final

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

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
        reply = await bus.call(
            Message(
                destination=LOGIND_NAME,
                path=LOGIND_PATH,
                interface=LOGIND_INTERFACE,
                member="Reboot",
                signature="b",
                body=[False],
            )
        )
    except Exception as exc:  # the connection itself failed
        raise RebootRequestError(f"logind Reboot call failed: {exc.__class__.__name__}: {exc}") from None
    if reply is None or reply.message_type is MessageType.ERROR:
        name = reply.error_name if reply is not None else "no reply"
        text = str(reply.body[0]) if reply is not None and reply.body else ""
        raise RebootRequestError(
            f"logind refused Reboot(false): {name}{': ' + text if text else ''}"
            " (is systemd-logind running, and is locksmithd running as root?)"
        )
