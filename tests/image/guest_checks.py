"""What the disk boot test asks of its booted guest over the serial console: bounded waits, the group's
semaphore as locksmithctl shows it, the A/B slots, the booted version, and a health gate for locksmithd.
Kept apart from test_boot.py so the tests there read as the story of one VM's boots."""

from __future__ import annotations

import re

from locksmith.image.errors import ImageError
from locksmith.image.session import Shell

GROUP = "vm-test"  # locksmithd's group (the semaphore key's) from the cloud-config
ETCD = "http://127.0.0.1:2379"  # the guest's own etcd, a one-member cluster made by coreos.etcd2
CTL = f"locksmithctl -endpoint {ETCD} -group {GROUP}"
REBOOT_SECONDS = 1500  # download + verify under TCG, the agent's reboot, then a full boot
HEALTH_DROP_IN = "/etc/systemd/system/locksmithd.service.d/50-health.conf"

# What the guest was doing, when a reboot did not come: the engine's and the agent's view and their journals
# (progress lines left out), or the console's last lines when no command answers any more.
_DIAGNOSIS = (
    f"update_engine_client -status; {CTL} status;"
    " journalctl -b -u update-engine -u locksmithd -o short-monotonic | grep -v DOWNLOADING | tail -n 60"
)


def until(sh: Shell, condition: str, seconds: int, diagnose: str, every: int = 1) -> None:
    """Wait in the guest (bounded by `seconds`) until the shell `condition` succeeds; if it never does,
    fail with what `diagnose` prints there."""
    status, _ = sh.run(f"timeout {seconds} sh -c 'until {condition}; do sleep {every}; done'", seconds + 30)
    assert status == 0, f"not within {seconds} s: {condition}\n" + sh.run(diagnose, 60)[1]


def await_reboot(sh: Shell) -> str:
    """The slot GRUB chose at the next boot; a missed reboot fails with what the guest said about it."""
    try:
        return sh.await_reboot(REBOOT_SECONDS)
    except ImageError as exc:
        try:
            _, said = sh.run(_DIAGNOSIS, 300)
        except ImageError:
            said = "(no answer on the console) ...\n" + sh.console.buffer[-4000:].decode(errors="replace")
        raise AssertionError(f"{exc}\n{said}") from None


def health_gate(sh: Shell, command: str | None, restart: bool = True) -> None:
    """Give locksmithd a health gate (or take it away) in a drop-in of the test's own, beside the
    cloud-config's; `restart` makes the running agent read it."""
    if command:
        lines = [
            "[Service]",
            f"Environment=LOCKSMITHD_HEALTH_COMMAND={command}",
            "Environment=LOCKSMITHD_HEALTH_TIMEOUT=15s",
        ]
        sh.run(f"printf '%s\\n' {' '.join(repr(x) for x in lines)} > {HEALTH_DROP_IN}", 60)
    else:
        sh.run(f"rm -f {HEALTH_DROP_IN}", 60)
    status, out = sh.run(
        "systemctl daemon-reload" + ("&& systemctl restart locksmithd.service" if restart else ""), 300
    )
    assert status == 0, out


def holders(sh: Shell) -> tuple[int, list[str]]:
    """(free slots, holders) of the group's semaphore in the guest's etcd, as locksmithctl shows them."""
    status, out = sh.run(f"{CTL} status", 120)
    assert status == 0, out
    free = int(re.search(r"Available: (\d+)", out).group(1))  # type: ignore[union-attr]
    return free, re.findall(r"^([0-9a-f]{32}) ", out, re.MULTILINE)


def machine_id(sh: Shell) -> str:
    return sh.run("cat /etc/machine-id", 60)[1].strip()


def slot_line(sh: Shell, name: str) -> str:
    _, out = sh.run("locksmith-bootloader status", 60)
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def version(sh: Shell) -> str:
    _, out = sh.run(". /usr/share/coreos/release; echo $COREOS_RELEASE_VERSION", 60)
    return out.strip()


def wait_journal(sh: Shell, unit: str, word: str, seconds: int) -> None:
    diagnose = f"journalctl -b -u {unit} -o cat | tail -n 30"
    until(sh, f"journalctl -b -u {unit} -o cat | grep -q {word}", seconds, diagnose, every=2)
