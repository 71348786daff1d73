"""Shared pieces of the update-engine service tests: a world of releases + a GPT image, an in-process
service on the private bus, and a StatusUpdate recorder on its own bus connection."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from locksmith.bus.system import CallError, call, call_daemon, connect_system_bus
from locksmith.bus.update_engine import STATUS_UPDATE_MATCH_RULE
from locksmith.disk import slots
from locksmith.disk.layout import make_coreos_disk
from locksmith.protocol import update1
from locksmith.protocol.update1 import Operation, Status
from locksmith.updateengine import engineconfig
from locksmith.updateengine.engine import Identity, UpdateEngine
from locksmith.updateengine.engineconfig import EngineConfig
from locksmith.updateengine.keys import generate_keypair
from locksmith.updateengine.pack import make_usr_image, pack_release
from locksmith.updateengine.scheduler import Scheduler
from locksmith.updateengine.service import ManagerInterface, export
from locksmith.updateengine.target import SlotTarget

MACHINE_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class World:
    tmp: Path
    root: Path
    disk: Path
    public_key: Path
    private_key: Path
    state_dir: Path
    images: dict[str, Path] = field(default_factory=dict)

    def add_release(self, channel: str, version: str, filler: int = 300_000) -> Path:
        image = make_usr_image(self.tmp / f"usr-{channel}-{version}.squashfs", version, filler_bytes=filler)
        self.images[version] = image
        pack_release(image, version, self.private_key, self.root / channel / version)
        return self.root / channel / version

    def config(self, server: str, group: str = "stable", version: str = "1.0.0", **extra: object) -> EngineConfig:
        conf = self.tmp / "update.conf"
        conf.write_text(
            f"GROUP={group}\nSERVER={server}\nUPDATE_ENGINE_DISK={self.disk}\n"
            f"UPDATE_ENGINE_PUBLIC_KEY={self.public_key}\nUPDATE_ENGINE_STATE_DIR={self.state_dir}\n"
        )
        release = self.tmp / "release"
        release.write_text(f"COREOS_RELEASE_VERSION={version}\nCOREOS_RELEASE_BOARD=amd64-usr\n")
        return dataclasses.replace(engineconfig.load((release, self.tmp / "missing.conf", conf)), **extra)

    def slot(self, name: str) -> slots.Slot:
        return next(s for s in slots.read_slots(self.disk) if s.name == name)

    def slot_sha256(self, name: str, length: int) -> str:
        slot = self.slot(name)
        with open(self.disk, "rb") as f:
            f.seek(slot.offset)
            return hashlib.sha256(f.read(length)).hexdigest()

    def usr_a_fingerprint(self) -> tuple[str, int, int, bool]:
        """USR-A's bytes hash and gptprio fields: the active slot, which nothing may touch."""
        a = self.slot("USR-A")
        return (self.slot_sha256("USR-A", a.size), a.priority, a.tries, a.successful)


def _new_world(tmp: Path) -> World:
    return World(
        tmp=tmp,
        root=tmp / "releases",
        disk=tmp / "disk.img",
        public_key=tmp / "key.pub.pem",
        private_key=tmp / "key.pem",
        state_dir=tmp / "state",
    )


_template: World | None = None


def make_world(tmp: Path) -> World:
    """Keys, a GPT image with 1.0.0 in USR-A (booted) and a stable 2.0.0 release. Built once per session
    (mksquashfs and sgdisk dominate) and copied, so every test still gets its own files."""
    global _template
    if _template is None:
        base = Path(tempfile.mkdtemp(prefix="ue-template-"))
        atexit.register(shutil.rmtree, base, True)
        world = _new_world(base)
        generate_keypair(world.private_key, world.public_key)
        image = make_usr_image(base / "usr-1.0.0.squashfs", "1.0.0")
        make_coreos_disk(world.disk, usr_size_mib=4, small=True, initial_image=image)
        world.add_release("stable", "2.0.0")
        _template = world
    shutil.copytree(_template.tmp, tmp, dirs_exist_ok=True)
    world = _new_world(tmp)
    world.images = {v: tmp / p.name for v, p in _template.images.items()}
    slots.write_boot_record(world.disk, world.slot("USR-A"))
    return world


def image_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recorder:
    """StatusUpdate signals as another bus client sees them."""

    def __init__(self) -> None:
        self.statuses: list[Status] = []
        self._changed = asyncio.Event()
        self.bus: MessageBus | None = None

    async def start(self) -> Recorder:
        self.bus = await connect_system_bus()

        def handler(msg: Message) -> None:
            # Every signal, not only the owner's (as the watcher would): these tests check what the engine sent.
            if msg.message_type == MessageType.SIGNAL and msg.member == update1.STATUS_SIGNAL:
                self.statuses.append(Status.from_dbus(msg.signature, list(msg.body)))
                self._changed.set()

        self.bus.add_message_handler(handler)
        await call_daemon(self.bus, "AddMatch", "s", [STATUS_UPDATE_MATCH_RULE])
        return self

    @property
    def ops(self) -> list[Operation]:
        ops: list[Operation] = []
        for s in self.statuses:
            if not ops or ops[-1] is not s.current_operation:
                ops.append(s.current_operation)
        return ops

    async def wait_for(self, predicate: Callable[[list[Operation]], bool]) -> list[Operation]:
        async with asyncio.timeout(30):
            # No signal yet is never the awaited state (the predicates look at the last one).
            while not (self.ops and predicate(self.ops)):
                self._changed.clear()
                await self._changed.wait()
        return self.ops

    async def call(self, member: str) -> Message:
        """The engine's method return for `member` (CallError if it answers with an error)."""
        assert self.bus is not None
        return await call(self.bus, update1.SERVICE, update1.OBJECT_PATH, update1.INTERFACE, member)

    async def error_of(self, member: str) -> str | None:
        """The D-Bus error name the engine answers `member` with, None if it succeeds."""
        try:
            await self.call(member)
        except CallError as exc:
            return exc.error_name
        return None

    def stop(self) -> None:
        if self.bus:
            self.bus.disconnect()


def ends_in_error_then_idle(ops: list[Operation]) -> bool:
    return ops[-2:] == [Operation.REPORTING_ERROR_EVENT, Operation.IDLE]


@asynccontextmanager
async def running_service(config: EngineConfig) -> AsyncIterator[tuple[UpdateEngine, Recorder]]:
    """The real service (engine + scheduler + D-Bus adapter) in this event loop, checks on demand only."""
    engine = UpdateEngine(
        config, Identity(MACHINE_ID, "b" * 32), SlotTarget(config.disk, config.boot_record, config.public_key)
    )
    scheduler = Scheduler(engine, initial_delay=0, interval=60, fuzz=0, max_backoff=60, periodic=False)
    bus = await connect_system_bus()
    iface = ManagerInterface(lambda: engine.status, scheduler.request_check, engine.reset_status)
    engine.add_listener(iface.StatusUpdate)
    await export(bus, iface)
    recorder = await Recorder().start()
    task = asyncio.create_task(scheduler.run())
    try:
        yield engine, recorder
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        recorder.stop()
        await engine.aclose()
        bus.disconnect()


def corrupt_release(release_dir: Path, **fields: object) -> None:
    meta = json.loads((release_dir / "release.json").read_text())
    meta.update(fields)
    (release_dir / "release.json").write_text(json.dumps(meta))
