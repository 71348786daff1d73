"""Booting an image under qemu: UEFI (OVMF), virtio disk, user-mode networking on 127.0.0.1 only.

KVM only when a probe guest proves it works: on these machines /dev/kvm opens but a nested guest can hang
right after the kernel's decompressor, so the probe boots a kernel with `-kernel` and waits a few seconds
for its first line; otherwise TCG.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from locksmith.image.errors import ImageError, require
from locksmith.image.filesystems import make_vfat
from locksmith.image.recipe import DEFAULT_CACHE

OVMF = Path("/usr/share/ovmf/OVMF.fd")
PROBE_KERNEL = "vmlinuz-probe"  # the image's kernel, kept in the cache by each build


def probe_kernel(cache_dir: Path = DEFAULT_CACHE) -> Path | None:
    cached = cache_dir / PROBE_KERNEL
    if cached.is_file():
        return cached
    host = sorted(Path("/boot").glob("vmlinuz-*"))
    return host[-1] if host else None


def kvm_works(cache_dir: Path = DEFAULT_CACHE, seconds: float = 6.0) -> bool:
    """True if a KVM guest prints its first kernel line within `seconds`."""
    kernel = probe_kernel(cache_dir)
    if kernel is None or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    args = ["qemu-system-x86_64", "-machine", "accel=kvm", "-m", "256", "-nodefaults", "-display", "none"]
    args += ["-kernel", str(kernel), "-append", "console=ttyS0 panic=-1", "-serial", "stdio", "-no-reboot"]
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except OSError:
        return False
    try:
        console = Console(proc)
        return console.wait_for(re.compile(rb"Linux version|Command line:"), seconds) is not None
    finally:
        stop(proc)


@dataclass
class VmOptions:
    image: Path
    ssh_port: int | None = None
    user_data: Path | None = None
    serial_log: Path | None = None
    memory_mib: int = 1024
    accel: str = "auto"  # auto, kvm or tcg
    snapshot: bool = False  # writes go to a temporary overlay (tests)
    #: (guest address:port, host loopback port): the guest reaches a service on the host's 127.0.0.1
    #: at that address (qemu guestfwd), and nothing else on the host or beyond.
    guest_forwards: tuple[tuple[str, int], ...] = ()
    #: A tap device (already made, in the network namespace qemu runs in) instead of user-mode networking,
    #: with the NIC's MAC address: a fleet's VMs on one bridge, each with its own.
    tap: str | None = None
    mac: str | None = None


def config_drive(user_data: Path, out: Path) -> Path:
    """A `config-2` VFAT drive holding openstack/latest/user_data (Debian's cloud kernel has no 9p)."""
    if not user_data.is_file():
        raise ImageError(f"user data {user_data} is not a readable file; give --user-data a cloud-config file")
    make_vfat(out, 16, "config-2", {"/openstack/latest/user_data": user_data}, fat32=False)
    return out


# Said by the file, never guessed by qemu (a raw image whose first bytes look like a header would be misread).
_DISK_MAGIC = {b"QFI\xfb": "qcow2", b"KDMV": "vmdk"}  # the vmware/virtualbox formats' monolithic sparse vmdk


def qemu_command(opts: VmOptions, accel: str, work: Path) -> list[str]:
    require("qemu-system-x86_64")
    if not OVMF.is_file():
        raise ImageError(f"{OVMF} not found; install ovmf (scripts/bootstrap does)")
    if not opts.image.is_file():
        raise ImageError(f"image {opts.image} not found; build one with locksmith-image build")
    with open(opts.image, "rb") as f:
        fmt = _DISK_MAGIC.get(f.read(4), "raw")
    # One vCPU under TCG: on a loaded host a descheduled second vCPU thread shows up as RCU stalls and soft
    # lockups that time out systemd's watchdogs; one vCPU boots as fast and does not stall.
    smp = "1" if accel == "tcg" else "2"
    args = ["nice", "-n", "19", "qemu-system-x86_64", "-machine", f"q35,accel={accel}", "-m", str(opts.memory_mib)]
    args += ["-smp", smp]
    # -cpu host/max abort under nested KVM here ("failed to set MSR 0x10a"): the default model for KVM.
    args += ["-cpu", "max"] if accel == "tcg" else []
    args += ["-bios", str(OVMF), "-nodefaults", "-display", "none"]
    args += ["-drive", f"if=virtio,format={fmt},file={opts.image}" + (",snapshot=on" if opts.snapshot else "")]
    args += [
        "-netdev",
        _netdev(opts),
        "-device",
        "virtio-net-pci,netdev=net0" + (f",mac={opts.mac}" if opts.mac else ""),
    ]
    if opts.user_data is not None:
        drive = config_drive(opts.user_data, work / "config-2.img")
        args += ["-drive", f"if=virtio,format=raw,file={drive},readonly=on"]
    return args


def _netdev(opts: VmOptions) -> str:
    if opts.tap is not None:
        if opts.ssh_port or opts.guest_forwards:
            raise ImageError("a VM on a tap device has no user-mode forwards; reach it at its own address")
        return f"tap,id=net0,ifname={opts.tap},script=no,downscript=no"
    fwd = f",hostfwd=tcp:127.0.0.1:{opts.ssh_port}-:22" if opts.ssh_port else ""
    if opts.guest_forwards:
        fwd += ",restrict=on"  # the guest reaches only the forwards, never the host's other ports or the world
    for guest, port in opts.guest_forwards:
        fwd += f",guestfwd=tcp:{guest}-tcp:127.0.0.1:{port}"
    return f"user,id=net0{fwd}"


def pxe_command(kernel: Path, initrd: Path, cmdline: str, accel: str, memory_mib: int = 2048) -> list[str]:
    """A PXE-style boot: the kernel and initramfs straight from files (as a boot server hands them over), no
    disk; the whole OS lives in memory, so it needs more of it than a disk boot."""
    require("qemu-system-x86_64")
    for path in (kernel, initrd):
        if not path.is_file():
            raise ImageError(f"{path} not found; build the pxe format with locksmith-image build --format pxe")
    smp = "1" if accel == "tcg" else "2"
    args = ["nice", "-n", "19", "qemu-system-x86_64", "-machine", f"q35,accel={accel}", "-m", str(memory_mib)]
    args += ["-smp", smp, *(["-cpu", "max"] if accel == "tcg" else []), "-nodefaults", "-display", "none"]
    args += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", f"{cmdline} console=ttyS0,115200n8"]
    args += ["-netdev", "user,id=net0,restrict=on", "-device", "virtio-net-pci,netdev=net0"]
    return args


def choose_accel(requested: str, cache_dir: Path = DEFAULT_CACHE) -> tuple[str, str]:
    """(accel, the reason said on the first line)."""
    if requested == "tcg":
        return "tcg", "TCG (asked for)"
    if requested == "kvm":
        return "kvm", "KVM (asked for)"
    if kvm_works(cache_dir):
        return "kvm", "KVM (a probe guest booted)"
    return "tcg", "TCG (/dev/kvm missing or a probe guest did not print its first kernel line)"


class Console:
    """The guest's serial console on qemu's stdout: everything read is kept (and logged), waits have deadlines."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path | None = None) -> None:
        self.proc = proc
        self.buffer = bytearray()
        self.mark = 0
        self._log = open(log, "ab") if log else None  # noqa: SIM115 - closed in close()

    def _read(self, timeout: float) -> bool:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], max(timeout, 0))
        if not ready:
            return True
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        self.buffer += chunk
        if self._log:
            self._log.write(chunk)
            self._log.flush()
        return True

    def wait_for(self, pattern: re.Pattern[bytes], seconds: float) -> re.Match[bytes] | None:
        """The first match after the mark within `seconds` (the mark moves past it), else None."""
        deadline = time.monotonic() + seconds
        while True:
            match = pattern.search(self.buffer, self.mark)
            if match:
                self.mark = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 1.0)):
                return None

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        if self._log:
            self._log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """qemu is never left running: terminate, then kill."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
