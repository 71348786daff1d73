"""A simulated host's boot and update engine: the bootloader's choice on the host's GPT disk image,
the release read out of the chosen USR slot, then the real `update_engine` on the host's bus.

This is the `Engine` part of `harness.devtools.simhost.SimHost`: the host supervisor calls `start`
at every (re)boot and `stop` at shutdown, so the A/B switch and a rollback are the real code paths:
`locksmith-bootloader choose` consumes the new slot's one try, and a slot never marked successful
(the health gate did not pass) is skipped at the next boot.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from locksmith.disk.slots import Slot, SlotError, booted_slot
from locksmith.updateengine.pack import PackError, read_release_from_slot

if TYPE_CHECKING:
    from harness.devtools.simhost import SimHost

# A slot whose /usr cannot be read does not boot; the bootloader then tries again (as a watchdog
# reset would make it) — each try consumes the slot's tries, so this ends in the other slot.
BOOT_ATTEMPTS = 3


class BootFailed(Exception):
    """No slot of the disk booted; one line."""


@dataclass(frozen=True)
class EngineTiming:
    initial_delay: float = 0.3
    check_interval: float = 2.0
    check_fuzz: float = 1.0


class DiskEngine:
    """The real update engine of one simulated host, with its disk image `disk`."""

    def __init__(
        self,
        disk: Path,
        server_url: str,
        channel: str,
        public_key: Path,
        timing: EngineTiming | None = None,
    ) -> None:
        self.disk = disk
        self.server_url = server_url
        self.channel = channel
        self.public_key = public_key
        self.timing = timing or EngineTiming()
        self.proc: asyncio.subprocess.Process | None = None
        self.slot: Slot | None = None  # the booted slot, once booted
        self.version: str | None = None  # COREOS_RELEASE_VERSION of the booted slot

    async def start(self, host: SimHost, boot: int) -> None:
        from harness.devtools.simhost import ProcessSpec, start_process

        self.slot, release = await self._boot(host.dir)
        self.version = release.get("COREOS_RELEASE_VERSION", "unknown")
        root = host.dir / "root"
        (root / "usr/share/coreos").mkdir(parents=True, exist_ok=True)
        (root / "etc/coreos").mkdir(parents=True, exist_ok=True)
        # The booted /usr's release file, as CoreOS has it at /usr/share/coreos/release.
        release_file = root / "usr/share/coreos/release"
        release_file.write_text("".join(f"{k}={v}\n" for k, v in release.items()))
        # The vendor's file, empty here: both programs are told its path, so it must exist (issue 9).
        (root / "usr/share/coreos/update.conf").touch()
        conf = root / "etc/coreos/update.conf"
        conf.write_text(
            f"GROUP={self.channel}\nSERVER={self.server_url}\n"
            f"UPDATE_ENGINE_DISK={self.disk}\nUPDATE_ENGINE_PUBLIC_KEY={self.public_key}\n"
            f"UPDATE_ENGINE_STATE_DIR={root / 'var/lib/update_engine'}\n"
            f"UPDATE_ENGINE_INITIAL_DELAY={self.timing.initial_delay}\n"
            f"UPDATE_ENGINE_CHECK_INTERVAL={self.timing.check_interval}\n"
            f"UPDATE_ENGINE_CHECK_FUZZ={self.timing.check_fuzz}\n"
            "UPDATE_ENGINE_MAX_BACKOFF=10\n"
        )
        boot_id = host.dir / "boot_id"
        boot_id.write_text(str(uuid.uuid4()) + "\n")
        argv = [
            sys.executable, "-m", "harness.demo.engine_main", str(boot_id),
            "--update-conf", str(conf), "--usr-update-conf", str(root / "usr/share/coreos/update.conf"),
            "--release-file", str(release_file), "--machine-id-file", str(host.dir / "machine-id"),
        ]  # fmt: skip
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": host.bus_address, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        with (host.dir / "engine.log").open("a") as log:
            log.write(f"--- boot {boot}: {self.slot.name} version {self.version} ---\n")
        self.proc = await start_process(ProcessSpec(argv, env, host.dir / "engine.log"))
        await host.wait_for_engine(self.proc)

    async def stop(self) -> None:
        from harness.devtools.simhost import stop_process

        await stop_process(self.proc)
        self.proc = None

    async def _boot(self, host_dir: Path) -> tuple[Slot, dict[str, str]]:
        """`locksmith-bootloader choose`, then read the chosen slot's release: what GRUB and the
        initrd's mount of /usr do. A slot that does not hold a readable /usr counts as a failed boot."""
        log_path = host_dir / "boot.log"
        problems: list[str] = []
        for _ in range(BOOT_ATTEMPTS):
            with log_path.open("ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "locksmith.disk.bootloader", "choose", "--disk", str(self.disk),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                code = await proc.wait()
            if code != 0:
                raise BootFailed(f"locksmith-bootloader choose failed on {self.disk}; see {log_path}")
            try:
                slot = await asyncio.to_thread(booted_slot, self.disk)
                return slot, await asyncio.to_thread(read_release_from_slot, self.disk, slot)
            except (SlotError, PackError) as exc:
                problems.append(str(exc))
                with log_path.open("a") as log:
                    log.write(f"boot failed: {exc}\n")
        raise BootFailed(f"{self.disk} did not boot: {problems[-1]}")
