"""The update engine as locksmithd sees it over D-Bus: its status, a secure watcher, send-need-reboot.

Security model: any peer on the system bus may emit a signal with interface
`com.coreos.update1.Manager`. CoreOS's locksmith acted on all of them, so any local process able to
talk to the bus could make the host reboot. Here a status counts only when it comes from the current
*unique-name owner* of `com.coreos.update1` (message senders are stamped by dbus-daemon and cannot
be forged); the owner is tracked with GetNameOwner plus NameOwnerChanged signals, which are trusted
only when they come from the bus daemon itself.

Ordering: all bus messages (replies and signals) are handled synchronously, in arrival order, in
one message handler. dbus-daemon is single-threaded, so arrival order is causal order; handling a
reply after an `await` resumes would let a stale reply overwrite a newer signal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from dbus_fast import Message, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from locksmith.bus.system import DBUS_INTERFACE, DBUS_NAME, DBUS_PATH

UPDATE_ENGINE_NAME: Final = "com.coreos.update1"
UPDATE_ENGINE_PATH: Final = "/com/coreos/update1"
UPDATE_ENGINE_INTERFACE: Final = "com.coreos.update1.Manager"
STATUS_SIGNAL: Final = "StatusUpdate"
STATUS_SIGNATURE: Final = "xdssx"

# The rule CoreOS's locksmith used; we add it verbatim and filter by sender ourselves, because a
# match rule with sender='com.coreos.update1' would be resolved by the daemon only at AddMatch time.
STATUS_UPDATE_MATCH_RULE: Final = f"type='signal',interface='{UPDATE_ENGINE_INTERFACE}',member='{STATUS_SIGNAL}'"
NAME_OWNER_MATCH_RULE: Final = (
    f"type='signal',sender='{DBUS_NAME}',path='{DBUS_PATH}',interface='{DBUS_INTERFACE}',"
    f"member='NameOwnerChanged',arg0='{UPDATE_ENGINE_NAME}'"
)

UPDATE_STATUS_IDLE: Final = "UPDATE_STATUS_IDLE"
UPDATE_STATUS_CHECKING_FOR_UPDATE: Final = "UPDATE_STATUS_CHECKING_FOR_UPDATE"
UPDATE_STATUS_UPDATE_AVAILABLE: Final = "UPDATE_STATUS_UPDATE_AVAILABLE"
UPDATE_STATUS_DOWNLOADING: Final = "UPDATE_STATUS_DOWNLOADING"
UPDATE_STATUS_VERIFYING: Final = "UPDATE_STATUS_VERIFYING"
UPDATE_STATUS_FINALIZING: Final = "UPDATE_STATUS_FINALIZING"
UPDATE_STATUS_UPDATED_NEED_REBOOT: Final = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
UPDATE_STATUS_REPORTING_ERROR_EVENT: Final = "UPDATE_STATUS_REPORTING_ERROR_EVENT"

#: The eight operations in CoreOS's enum order (the order is part of the interface).
UPDATE_STATUSES: Final[tuple[str, ...]] = (
    UPDATE_STATUS_IDLE,
    UPDATE_STATUS_CHECKING_FOR_UPDATE,
    UPDATE_STATUS_UPDATE_AVAILABLE,
    UPDATE_STATUS_DOWNLOADING,
    UPDATE_STATUS_VERIFYING,
    UPDATE_STATUS_FINALIZING,
    UPDATE_STATUS_UPDATED_NEED_REBOOT,
    UPDATE_STATUS_REPORTING_ERROR_EVENT,
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_log = structlog.get_logger("locksmith.bus.update_engine")


class MalformedStatusError(ValueError):
    """A GetStatus reply or StatusUpdate body that is not a valid `xdssx` status; str() is the reason."""


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    """One update-engine status: the five values of GetStatus / StatusUpdate."""

    last_checked_time: int
    progress: float
    current_operation: str
    new_version: str
    new_size: int

    @property
    def needs_reboot(self) -> bool:
        """True only for UPDATE_STATUS_UPDATED_NEED_REBOOT — the one status that leads to a reboot."""
        return self.current_operation == UPDATE_STATUS_UPDATED_NEED_REBOOT

    @classmethod
    def from_dbus(cls, signature: str, body: list[Any]) -> UpdateStatus:
        """Parse a D-Bus body strictly; raise MalformedStatusError naming what is wrong."""
        if signature != STATUS_SIGNATURE:
            raise MalformedStatusError(f"signature is {signature!r}, expected {STATUS_SIGNATURE!r}")
        if len(body) != 5:
            raise MalformedStatusError(f"body has {len(body)} values, expected 5")
        checked, progress, operation, version, size = body
        for name, value in (("last_checked_time", checked), ("new_size", size)):
            if type(value) is not int or not _INT64_MIN <= value <= _INT64_MAX:
                raise MalformedStatusError(f"{name} is {value!r}, expected a 64-bit integer")
        if size < 0:
            raise MalformedStatusError(f"new_size is {size}, expected >= 0")
        if type(progress) is not float or not math.isfinite(progress) or not 0.0 <= progress <= 1.0:
            raise MalformedStatusError(f"progress is {progress!r}, expected a number from 0.0 to 1.0")
        if type(operation) is not str or operation not in UPDATE_STATUSES:
            raise MalformedStatusError(f"current_operation {operation!r} is not one of the UPDATE_STATUS_* values")
        if type(version) is not str:
            raise MalformedStatusError(f"new_version is {version!r}, expected a string")
        return cls(checked, progress, operation, version, size)

    def to_dbus(self) -> list[Any]:
        """The body to send with signature STATUS_SIGNATURE."""
        return [self.last_checked_time, self.progress, self.current_operation, self.new_version, self.new_size]


StatusCallback = Callable[[UpdateStatus], None]
_CLOSED: Final = object()


class UpdateEngineWatcher:
    """Follows the update engine's status on `bus`, trusting only the owner of com.coreos.update1.

    Usage::

        watcher = UpdateEngineWatcher(bus)
        await watcher.start()            # returns once the current owner (or its absence) is known
        async for status in watcher:     # yields `latest` first if known, then every accepted status
            ...
        await watcher.stop()

    On start, and whenever a new owner appears (engine started or restarted), GetStatus is called on
    that owner. Statuses from anyone else, malformed bodies and failed calls are logged and ignored;
    nothing here raises after start(). `latest` survives the engine going away (an installed update
    is still installed); `owner` is None while no engine runs.
    """

    def __init__(self, bus: MessageBus, *, on_status: StatusCallback | None = None) -> None:
        self._bus = bus
        self._on_status = on_status
        self._owner: str | None = None
        self._latest: UpdateStatus | None = None
        self._pending: dict[int, tuple[str, str | None]] = {}  # reply serial -> (kind, owner asked)
        self._subscribers: list[asyncio.Queue[object]] = []
        self._owner_known: asyncio.Future[None] | None = None
        self._started = False

    @property
    def owner(self) -> str | None:
        """The unique bus name currently owning com.coreos.update1, or None."""
        return self._owner

    @property
    def latest(self) -> UpdateStatus | None:
        """The most recent accepted status, or None if none was received yet."""
        return self._latest

    async def start(self) -> None:
        """Subscribe and look up the current owner; raises only if the bus itself fails."""
        if self._started:
            return
        self._started = True
        self._owner_known = asyncio.get_running_loop().create_future()
        self._bus.add_message_handler(self._on_message)
        for rule in (NAME_OWNER_MATCH_RULE, STATUS_UPDATE_MATCH_RULE):
            await self._call_daemon("AddMatch", rule)
        # After AddMatch: any owner change from now on reaches us, so nothing falls between the two.
        self._send(
            "owner",
            None,
            Message(
                destination=DBUS_NAME,
                path=DBUS_PATH,
                interface=DBUS_INTERFACE,
                member="GetNameOwner",
                signature="s",
                body=[UPDATE_ENGINE_NAME],
            ),
        )
        await self._owner_known

    async def stop(self) -> None:
        """Unsubscribe and end every `async for` over this watcher."""
        if not self._started:
            return
        self._started = False
        self._bus.remove_message_handler(self._on_message)
        if self._bus.connected:
            for rule in (NAME_OWNER_MATCH_RULE, STATUS_UPDATE_MATCH_RULE):
                try:
                    await self._call_daemon("RemoveMatch", rule)
                except Exception as exc:  # the bus may be going away; nothing to undo then
                    _log.debug("remove-match-failed", rule=rule, error=str(exc))
        for queue in self._subscribers:
            queue.put_nowait(_CLOSED)

    def __aiter__(self) -> AsyncIterator[UpdateStatus]:
        return self.statuses()

    async def statuses(self) -> AsyncIterator[UpdateStatus]:
        """Every accepted status from now on, starting with `latest` if there is one."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            if self._latest is not None:
                yield self._latest
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    return
                assert isinstance(item, UpdateStatus)
                yield item
        finally:
            self._subscribers.remove(queue)

    # -- internals -------------------------------------------------------------------------

    async def _call_daemon(self, member: str, arg: str) -> None:
        reply = await self._bus.call(
            Message(
                destination=DBUS_NAME,
                path=DBUS_PATH,
                interface=DBUS_INTERFACE,
                member=member,
                signature="s",
                body=[arg],
            )
        )
        if reply is not None and reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"D-Bus {member} failed: {reply.error_name}: {_first(reply.body)}")

    def _send(self, kind: str, owner: str | None, msg: Message) -> None:
        # Our own serial, registered before sending, so the reply is recognised in _on_message.
        msg.serial = self._bus.next_serial()
        self._pending[msg.serial] = (kind, owner)
        self._bus.send(msg)

    def _on_message(self, msg: Message) -> bool:
        try:
            if msg.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR):
                pending = self._pending.pop(msg.reply_serial, None)
                if pending is not None:
                    self._on_reply(msg, *pending)
            elif msg.message_type is MessageType.SIGNAL:
                if msg.interface == DBUS_INTERFACE and msg.member == "NameOwnerChanged":
                    self._on_name_owner_changed(msg)
                elif msg.interface == UPDATE_ENGINE_INTERFACE and msg.member == STATUS_SIGNAL:
                    self._on_status_signal(msg)
        except Exception as exc:  # a bug here must not take the bus connection down
            _log.error("update-engine-watcher-error", error=f"{exc.__class__.__name__}: {exc}")
        return False  # never claim the message: other handlers on this bus may want it

    def _on_reply(self, msg: Message, kind: str, asked: str | None) -> None:
        if kind == "owner":
            if msg.message_type is MessageType.METHOD_RETURN and msg.signature == "s":
                self._set_owner(msg.body[0], reason="GetNameOwner")
            else:
                self._set_owner(None, reason="GetNameOwner")
            if self._owner_known is not None and not self._owner_known.done():
                self._owner_known.set_result(None)
        elif kind == "status":
            if asked != self._owner or msg.sender != asked:
                _log.debug("stale-getstatus-reply", asked=asked, owner=self._owner)
            elif msg.message_type is MessageType.ERROR:
                _log.warning("getstatus-failed", owner=asked, error=f"{msg.error_name}: {_first(msg.body)}")
            else:
                self._accept(msg, source="GetStatus")

    def _on_name_owner_changed(self, msg: Message) -> None:
        if msg.sender != DBUS_NAME or msg.path != DBUS_PATH:
            _log.warning("ignored-spoofed-name-owner-changed", sender=msg.sender)
            return
        if msg.signature != "sss" or msg.body[0] != UPDATE_ENGINE_NAME:
            return
        self._set_owner(msg.body[2] or None, reason="NameOwnerChanged")

    def _set_owner(self, owner: str | None, *, reason: str) -> None:
        if owner == self._owner:
            return
        previous, self._owner = self._owner, owner
        if owner is None:
            _log.info("update-engine-absent", previous_owner=previous, via=reason, action="waiting for it")
            return
        _log.info("update-engine-owner", owner=owner, previous_owner=previous, via=reason)
        # Ask the owner itself (its unique name), so the reply is from the peer we trust.
        self._send(
            "status",
            owner,
            Message(destination=owner, path=UPDATE_ENGINE_PATH, interface=UPDATE_ENGINE_INTERFACE, member="GetStatus"),
        )

    def _on_status_signal(self, msg: Message) -> None:
        if self._owner is None or msg.sender != self._owner:
            _log.warning(
                "ignored-status-update-from-non-owner",
                sender=msg.sender,
                owner=self._owner,
                reason=f"only the owner of {UPDATE_ENGINE_NAME} is trusted",
            )
            return
        if msg.path != UPDATE_ENGINE_PATH:
            _log.warning("ignored-status-update-wrong-path", sender=msg.sender, path=msg.path)
            return
        self._accept(msg, source="StatusUpdate")

    def _accept(self, msg: Message, *, source: str) -> None:
        try:
            status = UpdateStatus.from_dbus(msg.signature, list(msg.body))
        except MalformedStatusError as exc:
            _log.warning("ignored-malformed-status", source=source, sender=msg.sender, reason=str(exc))
            return
        self._latest = status
        _log.debug("update-engine-status", source=source, operation=status.current_operation)
        for queue in self._subscribers:
            queue.put_nowait(status)
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception as exc:
                _log.error("status-callback-failed", error=f"{exc.__class__.__name__}: {exc}")


def _first(body: list[Any]) -> str:
    return str(body[0]) if body else ""


class UpdateEngineRunningError(Exception):
    """send_need_reboot refused: a real update engine owns com.coreos.update1. str() is one line."""


class SendNeedRebootError(Exception):
    """send_need_reboot failed for another reason (bus refused the name, …). str() is one line."""


NEED_REBOOT_STATUS: Final = UpdateStatus(0, 1.0, UPDATE_STATUS_UPDATED_NEED_REBOOT, "", 0)


async def get_name_owner(bus: MessageBus, name: str = UPDATE_ENGINE_NAME) -> str | None:
    """The unique name owning `name`, or None if nobody owns it."""
    reply = await bus.call(
        Message(
            destination=DBUS_NAME,
            path=DBUS_PATH,
            interface=DBUS_INTERFACE,
            member="GetNameOwner",
            signature="s",
            body=[name],
        )
    )
    if reply is None or reply.message_type is MessageType.ERROR:
        return None
    return str(reply.body[0])


async def send_need_reboot(bus: MessageBus, status: UpdateStatus = NEED_REBOOT_STATUS) -> None:
    """Make locksmithd believe an update is installed (locksmithctl send-need-reboot).

    The agent trusts only the owner of com.coreos.update1, so we briefly *become* that owner: take
    the name with DO_NOT_QUEUE, emit StatusUpdate from /com/coreos/update1, answer GetStatus (the
    agent asks every new owner), then release the name. If a real update engine owns the name we
    refuse: a signal from us would be (rightly) ignored as spoofed, and the engine is the authority.
    The caller should disconnect `bus` afterwards.
    """
    try:
        reply = await bus.request_name(UPDATE_ENGINE_NAME, NameFlag.DO_NOT_QUEUE)
    except Exception as exc:
        raise SendNeedRebootError(
            f"cannot own {UPDATE_ENGINE_NAME} on the system bus: {exc} (run as root; check the D-Bus policy"
            " in systemd/locksmith.conf is installed)"
        ) from None
    if reply is RequestNameReply.EXISTS:
        owner = await get_name_owner(bus)
        raise UpdateEngineRunningError(
            f"an update engine is running (it owns {UPDATE_ENGINE_NAME} as {owner}); locksmithd trusts only"
            " StatusUpdate signals from that owner and would ignore one sent by locksmithctl — let the update"
            " engine report the reboot, or stop it first"
        )
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        raise SendNeedRebootError(f"could not own {UPDATE_ENGINE_NAME}: the bus answered {reply.name}")

    def answer_get_status(msg: Message) -> Message | None:
        if (
            msg.message_type is MessageType.METHOD_CALL
            and msg.path == UPDATE_ENGINE_PATH
            and msg.interface in (UPDATE_ENGINE_INTERFACE, None)
            and msg.member == "GetStatus"
        ):
            return Message.new_method_return(msg, STATUS_SIGNATURE, status.to_dbus())
        return None

    bus.add_message_handler(answer_get_status)
    try:
        await bus.send(
            Message.new_signal(
                UPDATE_ENGINE_PATH, UPDATE_ENGINE_INTERFACE, STATUS_SIGNAL, STATUS_SIGNATURE, status.to_dbus()
            )
        )
        # A round trip to the daemon: it handles our messages in order, so once this returns the
        # signal has been routed to every subscriber while we still owned the name.
        await get_name_owner(bus)
    finally:
        await bus.release_name(UPDATE_ENGINE_NAME)
