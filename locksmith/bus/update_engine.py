"""The update engine as its clients see it over D-Bus: a secure status watcher (the one StatusUpdate
subscription: locksmithd, update_engine_client and the demo use it), GetStatus, and send-need-reboot.

Security model: any peer on the system bus may emit a signal with the engine's interface
(`update1.INTERFACE`). CoreOS's locksmith acted on all of them, so any local process able to talk
to the bus could make the host reboot. Here a status counts only when it comes from the current
*unique-name owner* of `update1.SERVICE` (message senders are stamped by dbus-daemon and cannot be
forged); the owner is tracked with GetNameOwner plus NameOwnerChanged signals, which are trusted
only when they come from the bus daemon itself.

Root is trusted too: a StatusUpdate from a peer whose Unix user (asked of the bus daemon, which
learnt it from the kernel when the peer connected) is root counts as if the engine had sent it, and the
log says so. That is what `locksmithctl send-need-reboot` relies on while an engine runs; root can
reboot the host anyway, so nothing is given away, and every other peer is still ignored.

Ordering: all bus messages (replies and signals) are handled synchronously, in arrival order, in
one message handler. dbus-daemon is single-threaded, so arrival order is causal order; handling a
reply after an `await` resumes would let a stale reply overwrite a newer signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import structlog
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from locksmith.bus.system import (
    DBUS_INTERFACE,
    DBUS_NAME,
    DBUS_PATH,
    DEFAULT_CALL_TIMEOUT,
    CallError,
    LazyBus,
    NameTakenError,
    call,
    call_daemon,
    emit_signal,
    first_string,
    get_name_owner,
    method_call,
    own_name,
    serve_methods,
)
from locksmith.protocol import update1
from locksmith.protocol.update1 import MalformedStatus, Status
from locksmith.safe_text import outside_text

# The rule CoreOS's locksmith used; we add it verbatim and filter by sender ourselves, because a
# match rule with sender=<the well-known name> would be resolved by the daemon only at AddMatch time.
STATUS_UPDATE_MATCH_RULE: Final = f"type='signal',interface='{update1.INTERFACE}',member='{update1.STATUS_SIGNAL}'"
NAME_OWNER_MATCH_RULE: Final = (
    f"type='signal',sender='{DBUS_NAME}',path='{DBUS_PATH}',interface='{DBUS_INTERFACE}',"
    f"member='NameOwnerChanged',arg0='{update1.SERVICE}'"
)
#: Unix users whose StatusUpdate is believed besides the engine's: root (send-need-reboot).
TRUSTED_UIDS: Final = frozenset({0})
#: How long send-need-reboot stays connected after a signal sent as root, so agents can ask who sent it.
ROOT_SENDER_LINGER: Final = 2.0
#: How long start() waits for the bus daemon to say who owns the engine's name.
START_TIMEOUT: Final = DEFAULT_CALL_TIMEOUT

_log = structlog.get_logger("locksmith.bus.update_engine")

# Longer than any OS version string; the bound keeps a peer's text out of everyone's log lines.
MAX_VERSION_LEN = 128

StatusCallback = Callable[[Status], None]
_CLOSED: Final = object()


class UpdateEngineWatcher:
    """Follows the update engine's status on `bus`, trusting only the owner of `update1.SERVICE`.

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

    def __init__(
        self, bus: MessageBus, *, on_status: StatusCallback | None = None, trusted_uids: frozenset[int] = TRUSTED_UIDS
    ) -> None:
        self._bus = bus
        self._on_status = on_status
        self._trusted_uids = trusted_uids
        self._from_peers: dict[int, Message] = {}  # GetConnectionUnixUser serial -> the signal it is about
        self._owner: str | None = None
        self._latest: Status | None = None
        self._pending: dict[int, tuple[str, str | None]] = {}  # reply serial -> (kind, owner asked)
        self._subscribers: list[asyncio.Queue[object]] = []
        self._owner_known: asyncio.Future[None] | None = None
        self._started = False

    @property
    def owner(self) -> str | None:
        """The unique bus name currently owning `update1.SERVICE`, or None."""
        return self._owner

    @property
    def latest(self) -> Status | None:
        """The most recent accepted status, or None if none was received yet."""
        return self._latest

    async def start(self) -> None:
        """Subscribe and look up the current owner. Raises only if the bus itself fails (CallError) or
        the daemon does not say who owns the name within START_TIMEOUT (TimeoutError); call stop()
        after either."""
        if self._started:
            return
        self._started = True
        self._owner_known = asyncio.get_running_loop().create_future()
        self._bus.add_message_handler(self._on_message)
        for rule in (NAME_OWNER_MATCH_RULE, STATUS_UPDATE_MATCH_RULE):
            await call_daemon(self._bus, "AddMatch", "s", [rule])
        # After AddMatch: any owner change from now on reaches us, so nothing falls between the two.
        ask = method_call(DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, "GetNameOwner", "s", [update1.SERVICE])
        self._send("owner", None, ask)
        async with asyncio.timeout(START_TIMEOUT):
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
                    await call_daemon(self._bus, "RemoveMatch", "s", [rule])
                except Exception as exc:  # the bus may be going away; nothing to undo then
                    _log.debug("remove-match-failed", rule=rule, error=outside_text(exc))
        for queue in self._subscribers:
            queue.put_nowait(_CLOSED)

    def __aiter__(self) -> AsyncIterator[Status]:
        return self.statuses()

    async def statuses(self) -> AsyncIterator[Status]:
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
                assert isinstance(item, Status)
                yield item
        finally:
            self._subscribers.remove(queue)

    # -- internals -------------------------------------------------------------------------

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
                signal = self._from_peers.pop(msg.reply_serial, None)
                if signal is not None:
                    self._on_sender_user(msg, signal)
            elif msg.message_type is MessageType.SIGNAL:
                if msg.interface == DBUS_INTERFACE and msg.member == "NameOwnerChanged":
                    self._on_name_owner_changed(msg)
                elif msg.interface == update1.INTERFACE and msg.member == update1.STATUS_SIGNAL:
                    self._on_status_signal(msg)
        except Exception as exc:  # a bug here must not take the bus connection down
            _log.error("update-engine-watcher-error", error=outside_text(f"{exc.__class__.__name__}: {exc}"))
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
                error = outside_text(f"{msg.error_name}: {first_string(msg.body)}")
                _log.warning("getstatus-failed", owner=asked, error=error)
            else:
                self._accept(msg, source="GetStatus")

    def _on_name_owner_changed(self, msg: Message) -> None:
        if msg.sender != DBUS_NAME or msg.path != DBUS_PATH:
            _log.warning("ignored-spoofed-name-owner-changed", sender=outside_text(msg.sender))
            return
        if msg.signature != "sss" or msg.body[0] != update1.SERVICE:
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
            method_call(owner, update1.OBJECT_PATH, update1.INTERFACE, "GetStatus"),
        )

    def _on_status_signal(self, msg: Message) -> None:
        if self._owner is not None and msg.sender == self._owner:
            self._accept_at_path(msg, source="StatusUpdate")
            return
        if not self._trusted_uids or not msg.sender:
            self._ignore_non_owner(msg, uid=None)
            return
        # Not the engine: believed only if the daemon says the sender is a trusted user (root).
        ask = method_call(DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, "GetConnectionUnixUser", "s", [msg.sender])
        ask.serial = self._bus.next_serial()
        self._from_peers[ask.serial] = msg
        self._bus.send(ask)

    def _on_sender_user(self, reply: Message, signal: Message) -> None:
        answered = reply.message_type is MessageType.METHOD_RETURN and reply.signature == "u"
        uid = reply.body[0] if answered and reply.sender == DBUS_NAME else None
        if uid not in self._trusted_uids:
            self._ignore_non_owner(signal, uid=uid)  # None: the sender left before the daemon was asked
            return
        _log.info(
            "accepted-status-update-from-root",
            sender=signal.sender,
            uid=uid,
            owner=self._owner,
            reason="a root sender (e.g. locksmithctl send-need-reboot) is trusted as the engine is",
        )
        self._accept_at_path(signal, source="StatusUpdate from root")

    def _ignore_non_owner(self, msg: Message, *, uid: int | None) -> None:
        _log.warning(
            "ignored-status-update-from-non-owner",
            sender=msg.sender,
            uid=uid,
            owner=self._owner,
            reason=f"only the owner of {update1.SERVICE} and root are trusted",
        )

    def _accept_at_path(self, msg: Message, *, source: str) -> None:
        if msg.path != update1.OBJECT_PATH:
            _log.warning("ignored-status-update-wrong-path", sender=msg.sender, path=outside_text(msg.path))
            return
        self._accept(msg, source=source)

    def _accept(self, msg: Message, *, source: str) -> None:
        try:
            status = Status.from_dbus(msg.signature, list(msg.body))
        except MalformedStatus as exc:
            # The reason may quote the body: a peer's text, bounded and escaped (a 5 MB string stays short).
            _log.warning("ignored-malformed-status", source=source, sender=msg.sender, reason=outside_text(exc))
            return
        if len(status.new_version) > MAX_VERSION_LEN or not status.new_version.isprintable():
            # Every consumer logs the version: one that long or with control characters would
            # flood or forge their lines. No release version looks like that (e.g. 3815.2.0).
            _log.warning(
                "ignored-malformed-status",
                source=source,
                sender=msg.sender,
                reason=f"new_version {outside_text(repr(status.new_version))} is not a release version",
            )
            return
        self._latest = status
        _log.debug("update-engine-status", source=source, operation=status.current_operation.value)
        for queue in self._subscribers:
            queue.put_nowait(status)
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception as exc:
                _log.error("status-callback-failed", error=outside_text(f"{exc.__class__.__name__}: {exc}"))


async def update_statuses(bus: LazyBus) -> AsyncIterator[Status]:
    """Every status the update engine reports, for locksmithd: the watcher trusts only the name's
    owner and re-asks GetStatus whenever the engine (re)appears. Reconnects if the bus drops."""
    while True:
        connection = await bus.get()
        watcher = UpdateEngineWatcher(connection)
        try:
            await watcher.start()
            async for status in watcher:
                yield status
        except (CallError, TimeoutError) as exc:
            _log.warning("update-engine.watch-failed", reason=outside_text(exc))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
        _log.warning("update-engine.watch-ended", detail="reconnecting to the bus")
        await asyncio.sleep(1.0)


async def get_status(bus: MessageBus, *, within: float = DEFAULT_CALL_TIMEOUT) -> Status:
    """GetStatus on the engine (routed by the daemon to the name's owner): CallError if no engine
    answers, MalformedStatus if its answer is not a status."""
    reply = await call(bus, update1.SERVICE, update1.OBJECT_PATH, update1.INTERFACE, "GetStatus", within=within)
    return Status.from_dbus(reply.signature, list(reply.body))


async def call_engine(bus: MessageBus, member: str, *, within: float = DEFAULT_CALL_TIMEOUT) -> None:
    """AttemptUpdate or ResetStatus on the engine; CallError (one line) if it fails."""
    await call(bus, update1.SERVICE, update1.OBJECT_PATH, update1.INTERFACE, member, within=within)


class UpdateEngineRunningError(Exception):
    """send_need_reboot refused: a real update engine owns the engine's name. str() is one line."""


class SendNeedRebootError(Exception):
    """send_need_reboot failed for another reason (bus refused the name, …). str() is one line."""


def status_methods(status: Callable[[], Status]) -> dict[str, Callable[[Message], tuple[str, list[Any]]]]:
    """GetStatus answered with `status()`: what a stand-in for the engine serves (send-need-reboot,
    the test engine)."""
    return {"GetStatus": lambda _msg: (update1.STATUS_SIGNATURE, status().to_dbus())}


async def emit_status(bus: MessageBus, status: Status) -> None:
    """Broadcast StatusUpdate(status) from the engine's object (we must own the name to be believed)."""
    await emit_signal(
        bus, update1.OBJECT_PATH, update1.INTERFACE, update1.STATUS_SIGNAL, update1.STATUS_SIGNATURE, status.to_dbus()
    )


async def send_need_reboot(bus: MessageBus, status: Status = update1.NEED_REBOOT) -> None:
    """Make locksmithd believe an update is installed (locksmithctl send-need-reboot).

    With no engine running we briefly *become* the engine: take its name with DO_NOT_QUEUE, emit
    StatusUpdate from its object, answer GetStatus (the agent asks every new owner), then release the
    name. While an engine owns the name, root emits the signal from its own connection: the agent trusts
    root as it trusts the engine (and logs that it did). Anyone else is refused here, in one line, rather
    than sending a signal every agent would rightly ignore. The caller should disconnect `bus` afterwards.
    """
    try:
        await own_name(bus, update1.SERVICE)
    except NameTakenError as exc:
        if exc.owner is None:
            raise SendNeedRebootError(f"could not own {update1.SERVICE}: the bus refused it") from None
        if os.geteuid() != 0:
            raise UpdateEngineRunningError(
                f"an update engine is running (it owns {update1.SERVICE} as {exc.owner}); locksmithd trusts"
                " only that engine and root, so run send-need-reboot as root (or let the engine report the reboot)"
            ) from None
        await emit_status(bus, status)
        # Each agent asks the daemon who sent the signal when it arrives; a peer already gone cannot be
        # vouched for (and is ignored), so we stay on the bus a moment before the caller disconnects.
        await get_name_owner(bus, DBUS_NAME)
        await asyncio.sleep(ROOT_SENDER_LINGER)
        return
    except Exception as exc:
        raise SendNeedRebootError(
            f"cannot own {update1.SERVICE} on the system bus: {exc} (run as root; check the D-Bus policy"
            " in systemd/locksmith.conf is installed)"
        ) from None
    # Left in place until the caller disconnects: the agent's GetStatus to us may come after the release.
    serve_methods(bus, update1.OBJECT_PATH, update1.INTERFACE, status_methods(lambda: status))
    try:
        await emit_status(bus, status)
        # A round trip to the daemon: it handles our messages in order, so once this returns the
        # signal has been routed to every subscriber while we still owned the name.
        await get_name_owner(bus, DBUS_NAME)
    finally:
        await bus.release_name(update1.SERVICE)
