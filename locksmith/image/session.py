"""A scripted boot for tests and benchmarks: an image copy with console autologin, commands over the serial line.

The OEM partition's grub.cfg adds `coreos.autologin=ttyS0` (as CoreOS's OEM grub.cfg could), so a root shell
appears on the serial console; only the copy is changed, never the built image.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from locksmith.disk.layout import write_image_to_partition
from locksmith.image.errors import ImageError, run
from locksmith.image.filesystems import make_ext4
from locksmith.image.formats import PXE_CMDLINE
from locksmith.image.qemu import Console, VmOptions, choose_accel, pxe_command, qemu_command, stop

PROMPT = re.compile(rb"root@[A-Za-z0-9.-]+:~# ")  # cloud-config may rename the host
# A guest booted as built (no autologin) is up when its serial getty asks: systemd stops printing its status
# lines to the console once a getty owns it.
LOGIN_PROMPT = re.compile(rb"locksmith login: ")
# A root shell on the serial console. The shell may come up before the boot is done: systemd's status
# lines would land in the middle of a command's output on the same console, so only errors are shown.
_SCRIPTED_CMDLINE = "coreos.autologin=ttyS0 systemd.show_status=error"
GRUB_CHOICE = re.compile(rb"locksmith: booting (USR-[AB])")
# Quiet the console (kernel messages, bracketed paste, echo) so outputs read cleanly.
_QUIET = "dmesg -n 1; bind 'set enable-bracketed-paste off'; stty -echo; export TERM=dumb"


class Shell:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.count = 0

    def run(self, command: str, seconds: float) -> tuple[int, str]:
        """(exit status, output) of one shell command; markers are split so the typed line cannot match."""
        self.count += 1
        tag = f"{self.count:03d}"
        self.console.send(f"echo @@B''EGIN{tag}; {command}; echo @@E''ND{tag} $?\n")
        begin = self.console.wait_for(re.compile(rb"@@BEGIN" + tag.encode() + rb"\r?\n"), seconds)
        if begin is None:
            raise ImageError(f"no output from {command!r} within {seconds} s")
        start = self.console.mark
        end = self.console.wait_for(re.compile(rb"@@END" + tag.encode() + rb" (\d+)"), seconds)
        if end is None:
            raise ImageError(f"{command!r} did not finish within {seconds} s")
        text = self.console.buffer[start : end.start()].decode(errors="replace").replace("\r", "")
        return int(end.group(1)), text

    def login(self, seconds: float) -> None:
        if not self.console.wait_for(PROMPT, seconds):
            raise ImageError(f"no root prompt within {seconds} s; see the serial log")
        self.run(_QUIET, 120)

    def await_reboot(self, seconds: float) -> str:
        """After the guest reboots (by itself or asked): the slot GRUB chose, once a fresh prompt is up."""
        choice = self.console.wait_for(GRUB_CHOICE, seconds)
        if choice is None:
            raise ImageError(f"the guest did not reboot within {seconds} s; see the serial log")
        self.login(seconds)
        return choice.group(1).decode()


def with_autologin(image: Path, work: Path) -> Path:
    """A sparse copy of a raw image whose OEM partition asks GRUB for CoreOS's console autologin."""
    disk = work / "boot-test.raw"
    run(["cp", "--sparse=always", str(image), str(disk)], "copying the image", nice=False)
    oem = work / "oem"
    oem.mkdir()
    (oem / "grub.cfg").write_text(f'set linux_append="{_SCRIPTED_CMDLINE}"\n')
    make_ext4(oem, work / "oem.ext4", 128, "OEM", 0)
    write_image_to_partition(disk, 6, work / "oem.ext4")
    return disk


@contextmanager
def booted(
    disk: Path,
    work: Path,
    login_seconds: float,
    forwards: tuple[tuple[str, int], ...] = (),
    user_data: Path | None = None,
    ssh_port: int | None = None,
) -> Iterator[tuple[Shell, str]]:
    """Boot `disk`, wait for the autologin prompt, yield a shell and the accelerator line; qemu always stops.

    `forwards`: (guest address:port, host loopback port) pairs the guest may reach (qemu guestfwd);
    `user_data`: a cloud-config on a config-2 drive; `ssh_port`: 127.0.0.1:PORT reaches the guest's SSH."""
    accel, why = choose_accel("auto")
    opts = VmOptions(disk, ssh_port=ssh_port, user_data=user_data, guest_forwards=forwards)
    with _serial_shell(qemu_command(opts, accel, work), work, login_seconds) as sh:
        yield sh, why


@contextmanager
def booted_pxe(kernel: Path, initrd: Path, work: Path, login_seconds: float) -> Iterator[tuple[Shell, str]]:
    """Boot the pxe format's kernel and initramfs with its command line and console autologin."""
    accel, why = choose_accel("auto")
    cmdline = f"{PXE_CMDLINE} {_SCRIPTED_CMDLINE}"
    with _serial_shell(pxe_command(kernel, initrd, cmdline, accel), work, login_seconds) as sh:
        yield sh, why


@contextmanager
def _serial_shell(cmd: list[str], work: Path, login_seconds: float) -> Iterator[Shell]:
    proc = subprocess.Popen(
        [*cmd, "-serial", "stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    console = Console(proc, work / "serial.log")
    try:
        shell = Shell(console)
        shell.login(login_seconds)
        yield shell
    finally:
        stop(proc)
        console.close()
