"""The fleet's virtual machines: one qemu each on the fleet's bridge (a tap in the fleet's namespace),
booted from a copy-on-write overlay of the image, so the image itself is never written, with a config-2
drive holding the host's cloud-config. The serial console goes to a file the observer reads.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.vmfleet import hostconfig
from harness.vmfleet.hostconfig import Fleet, Host
from harness.vmfleet.netns import FleetNetwork
from locksmith.image.errors import ImageError, run
from locksmith.image.qemu import VmOptions, qemu_command

DEFAULT_MEMORY_MIB = 1024


def mac_address(index: int) -> str:
    """VM `index`'s NIC: qemu's locally administered prefix 52:54:00, then the index (one per fleet)."""
    if not 1 <= index <= 0xFFFF:
        raise ValueError(f"VM index {index}: use 1 to 65535")
    return f"52:54:00:4c:{index >> 8:02x}:{index & 0xFF:02x}"


@dataclass
class Machine:
    host: Host
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.host.hostname

    @property
    def serial_log(self) -> Path:
        return self.directory / "serial.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def overlay(image: Path, out: Path) -> Path:
    """A qcow2 file over the raw `image`: the VM's writes land there, the image is only read."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.resolve()), str(out)], "qemu-img")
    return out


def prepare(fleet: Fleet, host: Host, image: Path, directory: Path, tap: str, memory_mib: int) -> VmOptions:
    """The VM's folder: its disk overlay and its cloud-config (0600: it holds TLS keys)."""
    if not image.is_file():
        raise ImageError(f"image {image} not found; build it first (locksmith-demo --vms builds it)")
    directory.mkdir(parents=True, exist_ok=True)
    disk = overlay(image, directory / "disk.qcow2")
    user_data = directory / "user_data"
    user_data.touch(mode=0o600)
    user_data.write_text(hostconfig.render(fleet, host))
    return VmOptions(disk, user_data=user_data, memory_mib=memory_mib, tap=tap, mac=mac_address(host.index))


def launch(
    net: FleetNetwork, fleet: Fleet, image: Path, work: Path, accel: str, memory_mib: int = DEFAULT_MEMORY_MIB
) -> list[Machine]:
    """Start every host of `fleet` in `net` (stopped with the namespace, however the run ends)."""
    machines = []
    for host in fleet.hosts:
        machine = Machine(host, work / host.hostname)
        opts = prepare(fleet, host, image, machine.directory, net.add_tap(host.index), memory_mib)
        argv = [*qemu_command(opts, accel, machine.directory), "-serial", f"file:{machine.serial_log}"]
        with open(machine.directory / "qemu.log", "wb") as errors:
            machine.process = net.popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        machines.append(machine)
    return machines
