"""The update state machine, independent of D-Bus:

IDLE → CHECKING_FOR_UPDATE → (noupdate → IDLE) | UPDATE_AVAILABLE → DOWNLOADING → VERIFYING → FINALIZING →
need-reboot (`update1.NEED_REBOOT`'s operation, sticky until reboot). Any failure → REPORTING_ERROR_EVENT →
IDLE, with the inactive slot left unbootable and the active slot untouched (we never open it for writing).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog

from locksmith.protocol import omaha
from locksmith.protocol.omaha import ErrorCode, Event, EventResult, EventType, NoUpdate, OmahaError, UpdateOffer
from locksmith.protocol.release import signature_name
from locksmith.protocol.update1 import NEED_REBOOT, NO_VERSION, Operation, Status
from locksmith.updateengine import trial, versions
from locksmith.updateengine.engineconfig import EngineConfig
from locksmith.updateengine.target import InstallTarget, TargetError, VerificationError
from locksmith.updateengine.transfer import (
    TransferFailed,
    UpdateFailure,
    fetch_signature,
    omaha_exchange,
    stream_payload,
)

log = structlog.get_logger("update_engine")

Listener = Callable[[Status], None]
# One StatusUpdate per percent of download: enough for a progress bar, bounded on the bus.
PROGRESS_STEP = 0.01
NEED_REBOOT_FILE = "need-reboot.json"
LAST_VERSION_FILE = "last-booted-version"


class Refused(UpdateFailure):
    """The server offered a release we must not install (a downgrade): reported, then back to IDLE.
    Not a failed check: the server answered, so the scheduler keeps its normal interval."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.OMAHA_UPDATE_IGNORED_PER_POLICY)


@dataclass(frozen=True)
class Identity:
    machine_id: str
    boot_id: str


class UpdateEngine:
    def __init__(
        self,
        config: EngineConfig,
        identity: Identity,
        target: InstallTarget,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        attempts_per_codebase: int = 2,
        request_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.identity = identity
        self.target = target
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(request_timeout), follow_redirects=True)
        self._clock = clock
        self._request_timeout = request_timeout
        self._attempts = attempts_per_codebase
        self._listeners: list[Listener] = []
        self._status = Status()
        self._busy = False
        self._boot_reported = False
        self._refused: str | None = None  # the last version refused, reported once
        self.last_error: str | None = None
        self._restore_need_reboot()
        self._failed_version = trial.settle(config.state_dir, config.version, identity.boot_id)

    # ---- status ----

    @property
    def status(self) -> Status:
        return self._status

    @property
    def busy(self) -> bool:
        return self._busy

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _set(self, **changes: Any) -> None:
        new = self._status.evolve(**changes)
        if new == self._status:
            return
        self._status = new
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:  # a broken listener must not break an update
                log.exception("status listener failed")

    def _enter(self, op: Operation, **changes: Any) -> None:
        log.info("status", operation=op.value, **{k: v for k, v in changes.items() if k != "progress"})
        self._set(current_operation=op, **changes)

    # ---- requests to the Omaha server ----

    def _app(self) -> omaha.AppInfo:
        c = self.config
        return omaha.AppInfo(
            version=c.version,
            track=c.group,
            board=c.board,
            machineid=self.identity.machine_id,
            bootid=self.identity.boot_id,
            arch=c.arch,
            appid=c.appid,
        )

    async def _post(self, body: bytes) -> bytes:
        return await omaha_exchange(self._http, self.config.server, body, self._request_timeout)

    async def send_event(self, event: Event) -> bool:
        """Best effort: an event that cannot be delivered is logged, never fatal."""
        try:
            await self._post(omaha.build_request(self._app(), updatecheck=False, ping=False, events=[event]))
            return True
        except UpdateFailure as exc:
            log.warning("event not delivered", eventtype=event.type, eventresult=event.result, error=str(exc))
            return False

    # ---- the boot report ----

    async def report_boot(self) -> None:
        """Once per boot: tell the server we came up in a new version (event 3/2), then remember it."""
        if self._boot_reported:
            return
        record = self.config.state_dir / LAST_VERSION_FILE
        try:
            previous = record.read_text().strip()
        except FileNotFoundError:
            previous = ""
        except OSError as exc:
            log.warning("cannot read boot record", path=str(record), error=str(exc))
            return
        if previous and previous != self.config.version:
            event = Event(EventType.UPDATE_COMPLETE, EventResult.SUCCESS_REBOOT, previousversion=previous)
            if not await self.send_event(event):
                return  # retried before the next check
            log.info("reported update complete", previous_version=previous, version=self.config.version)
        if previous != self.config.version:
            _write_atomic(record, self.config.version + "\n")
        self._boot_reported = True

    # ---- NEED_REBOOT survives a daemon restart (not a reboot) ----

    def _restore_need_reboot(self) -> None:
        try:
            saved = json.loads((self.config.state_dir / NEED_REBOOT_FILE).read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict) and saved.get("boot_id") == self.identity.boot_id:
            self._status = NEED_REBOOT.evolve(
                last_checked_time=int(saved.get("last_checked_time", 0)),
                new_version=str(saved.get("new_version", NO_VERSION)),
                new_size=int(saved.get("new_size", 0)),
            )

    def reset_status(self) -> None:
        """CoreOS semantics: allowed from IDLE (no-op) and need-reboot (forget the update)."""
        op = self._status.current_operation
        if op is Operation.IDLE:
            return
        if not self._status.needs_reboot:
            raise ValueError(f"ResetStatus is not allowed while {op.value}; wait for IDLE or NEED_REBOOT")
        # Forgetting the update means the next boot must not pick it up.
        self.target.discard()
        (self.config.state_dir / NEED_REBOOT_FILE).unlink(missing_ok=True)
        trial.forget_install(self.config.state_dir)
        self._enter(Operation.IDLE, progress=0.0, new_version=NO_VERSION, new_size=0)

    # ---- one update attempt ----

    async def check_for_update(self, asked: bool = False) -> Operation:
        """Run one attempt to its end; returns the operation it ended in. Ignored while another runs.
        `asked`: an admin asked for it (AttemptUpdate), not the schedule."""
        if self._busy or self._status.current_operation is not Operation.IDLE:
            log.info("update check skipped", operation=self._status.current_operation.value)
            return self._status.current_operation
        self._busy = True
        self.last_error = None
        try:
            await self.report_boot()
            await self._attempt(asked)
        except UpdateFailure as exc:
            await self._fail(exc)
        finally:
            self._busy = False
        return self._status.current_operation

    async def _attempt(self, asked: bool) -> None:
        self._enter(Operation.CHECKING_FOR_UPDATE, progress=0.0)
        reply = await self._post(omaha.build_request(self._app()))
        try:
            result = omaha.parse_response(reply)
        except OmahaError as exc:
            raise UpdateFailure(str(exc), exc.code) from None
        now = int(self._clock())
        if isinstance(result, NoUpdate):
            log.info("no update", version=self.config.version, group=self.config.group)
            self._enter(Operation.IDLE, last_checked_time=now)
            return
        assert isinstance(result, UpdateOffer)
        refusal = self._refusal(result.version)
        if refusal is not None:
            if result.version == self._refused:
                # Reported already: the server keeps offering it until it has something newer.
                log.info("update refused again", offered=result.version, booted=self.config.version)
                self._enter(Operation.IDLE, last_checked_time=now)
                return
            self._refused = result.version
            raise Refused(refusal)
        if result.version == self._failed_version:
            if not asked:
                log.info("update not installed on its own: it was rolled back on this host", offered=result.version)
                self._enter(Operation.IDLE, last_checked_time=now)
                return
            trial.retry_asked(self.config.state_dir, result.version)
            self._failed_version = None
        self._enter(Operation.UPDATE_AVAILABLE, last_checked_time=now, new_version=result.version, new_size=result.size)
        await self._install(result)

    def _refusal(self, offered: str) -> str | None:
        """Why `offered` must not replace the booted version (a rollback attack, even signed), or None.
        The booted version itself is refused even with ALLOW_DOWNGRADE: reinstalling it would loop."""
        booted = self.config.version
        found = versions.not_newer(offered, booted)
        if found is None:
            return None
        problem, same = found
        if same:
            return f"{problem}: it is the booted version, nothing to install (the update server should say noupdate)"
        if self.config.allow_downgrade:
            log.warning("installing a downgrade: UPDATE_ENGINE_ALLOW_DOWNGRADE=true", offered=offered, booted=booted)
            return None
        return f"{problem}: refused as a downgrade (to roll back on purpose set UPDATE_ENGINE_ALLOW_DOWNGRADE=true)"

    async def _install(self, offer: UpdateOffer) -> None:
        try:
            await asyncio.to_thread(self.target.prepare)
        except TargetError as exc:
            raise UpdateFailure(str(exc), ErrorCode.INSTALL_DEVICE_OPEN_ERROR) from None
        self._enter(Operation.DOWNLOADING, progress=0.0)
        failures: list[str] = []
        signature: bytes | None = None
        for codebase in offer.codebases:
            for _ in range(self._attempts):
                try:
                    await self._download(codebase, offer)
                    url = codebase + signature_name(offer.package_name)
                    signature = await fetch_signature(self._http, url, self._request_timeout)
                    break
                except TransferFailed as exc:
                    failures.append(str(exc))
                    log.warning("download failed", url=codebase + offer.package_name, error=str(exc))
                    self._set(progress=0.0)
            if signature is not None:
                break
        if signature is None:
            raise UpdateFailure(
                f"download failed from every codebase: {'; '.join(failures[-3:])}", ErrorCode.DOWNLOAD_TRANSFER_ERROR
            )
        self._enter(Operation.VERIFYING, progress=1.0)
        try:
            await asyncio.to_thread(self.target.verify, signature)
        except VerificationError as exc:
            raise UpdateFailure(str(exc), exc.code) from None
        except TargetError as exc:
            raise UpdateFailure(str(exc), ErrorCode.DOWNLOAD_WRITE_ERROR) from None
        self._enter(Operation.FINALIZING)
        try:
            await asyncio.to_thread(self.target.commit)
        except TargetError as exc:
            raise UpdateFailure(str(exc), ErrorCode.SET_BOOTABLE_FLAG_ERROR) from None
        status = self._status
        _write_atomic(
            self.config.state_dir / NEED_REBOOT_FILE,
            json.dumps(
                {
                    "boot_id": self.identity.boot_id,
                    "new_version": status.new_version,
                    "new_size": status.new_size,
                    "last_checked_time": status.last_checked_time,
                }
            ),
        )
        trial.record_install(self.config.state_dir, status.new_version, self.identity.boot_id)
        self._enter(NEED_REBOOT.current_operation)
        await self.send_event(Event(EventType.UPDATE_COMPLETE, EventResult.SUCCESS))

    async def _download(self, codebase: str, offer: UpdateOffer) -> None:
        try:
            await asyncio.to_thread(self.target.begin, offer.size, offer.sha256_b64)
        except TargetError as exc:
            raise UpdateFailure(str(exc), ErrorCode.INSTALL_DEVICE_OPEN_ERROR) from None
        reported = 0.0

        async def take(chunk: bytes, received: int) -> None:
            nonlocal reported
            try:
                await asyncio.to_thread(self.target.feed, chunk)
            except VerificationError as exc:
                raise UpdateFailure(str(exc), exc.code) from None
            except TargetError as exc:
                raise UpdateFailure(str(exc), ErrorCode.DOWNLOAD_WRITE_ERROR) from None
            progress = received / offer.size
            if progress - reported >= PROGRESS_STEP or received == offer.size:
                reported = progress
                self._set(progress=progress)

        url = codebase + offer.package_name
        await stream_payload(self._http, url, offer.size, self._request_timeout, take)

    async def _fail(self, exc: UpdateFailure) -> None:
        refused = isinstance(exc, Refused)
        log.error("update refused" if refused else "update failed", error=str(exc), errorcode=exc.code)
        self.last_error = None if refused else str(exc)
        self._enter(Operation.REPORTING_ERROR_EVENT, progress=0.0)
        try:
            # A refused offer never opened the slot: it may hold the host's fallback, keep it bootable.
            if not refused:
                await asyncio.to_thread(self.target.discard)
        except Exception as discard_exc:  # the slot stays unbootable from prepare(); log and go on
            log.error("could not mark the inactive slot unbootable", error=str(discard_exc))
        await self.send_event(Event(EventType.UPDATE_COMPLETE, EventResult.ERROR, errorcode=exc.code))
        self._enter(Operation.IDLE, progress=0.0, new_version=NO_VERSION, new_size=0)

    async def aclose(self) -> None:
        await self._http.aclose()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
