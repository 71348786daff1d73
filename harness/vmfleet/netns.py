"""A private network for a VM fleet: one network namespace holding a bridge and one tap per VM.

Everything lives inside namespaces this module creates and deletes. The host's own interfaces,
addresses and routes are never touched, and nothing links the fleet's namespace to the host's, so the
VMs and whatever runs inside (`ip netns exec`: the update server, the observer) reach only each other.
A stand-in (`add_stand_in`) is a namespace of its own in place of a VM: its own stack with the VM's
address, joined to the bridge by a veth pair. Addresses on the bridge alone would not do: a connection
from one of them to another leaves from the bridge's first address, and etcd refuses a peer whose
certificate does not name the address it comes from.

Deleting a namespace removes its devices; the processes still inside are stopped first, because a
process inside keeps the namespace, and so its devices, alive after its name is gone. A run killed
before it could clean up leaves its namespaces behind: `sweep` deletes those, and only those whose
creator is dead (the creator's pid is part of the name), so two runs never sweep each other away.

Addresses: the host side (the bridge) is the subnet's `.1`, VM `i` (1, 2, …) is `.(10 + i)`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "lsfleet"
DEFAULT_SUBNET = "10.77.0.0/24"
BRIDGE = "br0"
HOST_OFFSET = 1
VM_OFFSET = 10
IP_TIMEOUT = 10.0  # one `ip` call: netlink answers at once, so a hang is worth a clear error
TERM_GRACE = 5.0  # what a process inside gets to exit on SIGTERM before SIGKILL (qemu needs far less)
KILL_WAIT = 5.0
# Letters and digits only: the '-' separates the prefix from the pid, so sweep's match is unambiguous.
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,19}")


class NetnsError(RuntimeError):
    """An `ip` command failed; str() is one line naming the command and the kernel's answer."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    shown = "ip " + " ".join(args)
    try:
        done = subprocess.run(
            ["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=IP_TIMEOUT
        )
    except FileNotFoundError:
        raise NetnsError(f"{shown}: ip is not installed (apt-get install iproute2)") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{shown}: no answer within {IP_TIMEOUT:.0f} s") from None
    if check and done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise NetnsError(f"{shown}: exit {done.returncode}" + (f": {lines[-1]}" if lines else ""))
    return done


def network(subnet: str | IPv4Network) -> IPv4Network:
    """The subnet as a network; ValueError (one line) for anything but an IPv4 network address."""
    try:
        return subnet if isinstance(subnet, IPv4Network) else IPv4Network(subnet)
    except ValueError as exc:
        raise ValueError(f"subnet {subnet!r}: {exc}; use a network address such as {DEFAULT_SUBNET}") from None


def _at(subnet: str | IPv4Network, offset: int, what: str) -> IPv4Interface:
    net = network(subnet)
    if not 0 < offset < net.num_addresses - 1:
        raise ValueError(f"{what}: {net} has no host address at offset {offset}; use a larger subnet")
    return IPv4Interface(f"{net.network_address + offset}/{net.prefixlen}")


def host_address(subnet: str | IPv4Network = DEFAULT_SUBNET) -> IPv4Interface:
    """The host side's address (the bridge's): the subnet's first address, e.g. 10.77.0.1/24."""
    return _at(subnet, HOST_OFFSET, "the host side")


def vm_address(subnet: str | IPv4Network, index: int) -> IPv4Interface:
    """VM `index` (counted from 1)'s address: `.(10 + index)`, e.g. 10.77.0.11/24 for the first."""
    if index < 1:
        raise ValueError(f"VM index {index}: VMs are counted from 1")
    return _at(subnet, VM_OFFSET + index, f"VM {index}")


def _checked_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"namespace prefix {prefix!r}: use 1-20 lower-case letters and digits, starting with a letter")
    return prefix


def _name_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(_checked_prefix(prefix)) + r"-(\d+)-[0-9a-f]{6}(?:-vm\d+)?")


def namespaces() -> list[str]:
    """The names of the named network namespaces (`ip netns list`)."""
    # Each line is "name" or "name (id: N)".
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def pids_inside(name: str) -> list[int]:
    """The processes inside namespace `name` (zombies are not: they hold no namespace)."""
    return [int(word) for word in _ip("netns", "pids", name).stdout.split()]


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside namespace `name`: `ip netns exec` execs it, so the pid is argv's own."""
    return ["ip", "netns", "exec", name, *argv]


def run_inside(name: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside namespace `name` (stdin from /dev/null unless given)."""
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(exec_argv(name, argv), **popen_kwargs)


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie does not (where nobody reaps orphans, a crashed run stays one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], deadline: float) -> None:
    """Until each of `pids` has exited, or the deadline: a pidfd becomes readable when its process ends."""
    fds: list[int] = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                fds.append(os.pidfd_open(pid))
        while fds and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(fds, [], [], left)
            for fd in ready:
                fds.remove(fd)
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def stop_processes(
    names: Sequence[str], grace: float = TERM_GRACE, kill_wait: float = KILL_WAIT, also: Sequence[int] = ()
) -> list[int]:
    """SIGTERM every process inside the namespaces `names` (and the processes `also`), SIGKILL those left
    after `grace`; the pids still there after `kill_wait` more (stuck in the kernel), normally none.

    `also` is for processes started to go inside that may not be there yet (`ip netns exec` enters
    after it started): listed by nobody, they would enter a namespace nobody stops any more."""
    remaining: list[int] = []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        inside_now = {pid for name in names for pid in pids_inside(name)} - {os.getpid()}  # never ourselves
        remaining = sorted({*inside_now, *filter(_alive, also)})
        if not remaining:
            return []
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        _wait_gone(remaining, time.monotonic() + wait)
    return [pid for pid in remaining if _alive(pid)]


def _delete(name: str) -> None:
    done = _ip("netns", "del", name, check=False)
    if done.returncode != 0 and name in namespaces():
        lines = done.stderr.strip().splitlines()
        raise NetnsError(f"ip netns del {name}: exit {done.returncode}" + (f": {lines[-1]}" if lines else ""))


def remove(names: Sequence[str], grace: float = TERM_GRACE, also: Sequence[int] = ()) -> None:
    """Stop the processes inside the namespaces `names` (and `also`), then delete each namespace with
    its devices, in order; one that fails to go (even by Ctrl-C) does not keep the others."""
    failure: BaseException | None = None
    try:
        if survivors := stop_processes(names, grace, also=also):
            # Deleted anyway: the names go, the namespaces live on until these exit.
            log.warning("netns-processes-survived", namespaces=list(names), pids=survivors)
    except BaseException as exc:
        failure = exc
    for name in names:
        try:
            _delete(name)
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def sweep(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete the namespaces named `<prefix>-<pid>-<6 hex>` (and its stand-ins', `…-vm<i>`) whose creating
    process is gone (an earlier run that crashed); any other name, and a live run's namespaces, are left
    alone. The names deleted."""
    pattern = _name_pattern(prefix)
    # Stand-ins first (their names are longer): their veth ends go with them, then the bridge's namespace.
    names = sorted(namespaces(), key=len, reverse=True)
    left = [n for n in names if (found := pattern.fullmatch(n)) is not None and not _alive(int(found.group(1)))]
    remove(left)
    return left


class FleetNetwork:
    """A uniquely named namespace with `lo` up and a bridge holding the host side's address; taps and
    stand-ins on request. Deleted on leaving the `with` block however it is left, its stand-ins first
    (processes inside stopped before)."""

    def __init__(
        self, name_prefix: str = DEFAULT_PREFIX, subnet: str = DEFAULT_SUBNET, grace: float = TERM_GRACE
    ) -> None:
        self.prefix = _checked_prefix(name_prefix)
        self.subnet = network(subnet)
        self.host_address = host_address(self.subnet)
        self.bridge = BRIDGE
        self.grace = grace
        self.name = ""
        self.taps: list[str] = []
        self.stand_ins: dict[int, str] = {}
        self._children: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"FleetNetwork(name={self.name or None!r}, subnet='{self.subnet}')"

    @property
    def is_open(self) -> bool:
        return bool(self.name)

    def vm_address(self, index: int) -> IPv4Interface:
        return vm_address(self.subnet, index)

    def open(self) -> FleetNetwork:
        if self.is_open:
            raise RuntimeError(f"{self!r} is already open")
        # The pid lets sweep tell a crashed run's namespace from a live one's; the random part, two of ours.
        name = f"{self.prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        _ip("netns", "add", name)
        self.name = name
        try:
            self.ip("link", "set", "lo", "up")
            self.ip("link", "add", self.bridge, "type", "bridge")
            self.ip("addr", "add", str(self.host_address), "dev", self.bridge)
            self.ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process inside, delete the stand-ins and the namespace; harmless when closed."""
        if not self.is_open:
            return
        unfinished = [child.pid for child in self._children if child.poll() is None]
        try:
            remove([*self.stand_ins.values(), self.name], self.grace, also=unfinished)
        finally:
            for child in self._children:
                child.poll()  # reap what remove() stopped (a pidfd wait leaves the zombie to its parent)
            self._children.clear()
            self.name = ""
            self.taps = []
            self.stand_ins = {}

    def __enter__(self) -> FleetNetwork:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self.is_open:
            raise RuntimeError(f"{self!r} is not open")

    def ip(self, *args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
        """`ip -n <namespace> args…`: an `ip` command inside this namespace (or one of its stand-ins)."""
        self._check_open()
        return _ip("-n", netns or self.name, *args)

    def add_tap(self, index: int) -> str:
        """A tap device for VM `index`, attached to the bridge and up: `-netdev tap,ifname=<name>,
        script=no,downscript=no` for a qemu started with `popen`."""
        self.vm_address(index)  # refuses an index the subnet has no address for
        tap = f"tap{index}"
        self.ip("tuntap", "add", "dev", tap, "mode", "tap")
        self.taps.append(tap)
        self.ip("link", "set", tap, "master", self.bridge)
        self.ip("link", "set", tap, "up")
        return tap

    def add_stand_in(self, index: int) -> str:
        """A namespace in place of VM `index`: `lo` up and VM `index`'s address on `eth0`, whose veth
        peer is on the bridge; no route beyond the subnet. Returns its name (for `popen(netns=…)`)."""
        address = self.vm_address(index)
        self._check_open()
        if index in self.stand_ins:
            raise ValueError(f"VM {index} already has a stand-in: {self.stand_ins[index]}")
        name = f"{self.name}-vm{index}"
        _ip("netns", "add", name)
        self.stand_ins[index] = name  # from here on close() deletes it, whatever fails below
        veth = f"veth{index}"
        self.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        self.ip("link", "set", veth, "master", self.bridge)
        self.ip("link", "set", veth, "up")
        self.ip("link", "set", "lo", "up", netns=name)
        self.ip("addr", "add", str(address), "dev", "eth0", netns=name)
        self.ip("link", "set", "eth0", "up", netns=name)
        return name

    def popen(self, argv: Sequence[str], *, netns: str | None = None, **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside the namespace (or the stand-in `netns`); stopped, if still running, on close."""
        self._check_open()
        child = run_inside(netns or self.name, argv, **popen_kwargs)
        self._children.append(child)
        return child

    def run(
        self, argv: Sequence[str], timeout: float, *, netns: str | None = None, **run_kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run `argv` inside the namespace (or the stand-in `netns`) to its end, at most `timeout` s."""
        self._check_open()
        run_kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(exec_argv(netns or self.name, argv), timeout=timeout, **run_kwargs)


_CLONE_NEWNET = 0x40000000


def _setns(fd: int, what: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        raise NetnsError(f"entering {what}: {os.strerror(ctypes.get_errno())} (run as root)")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """The calling thread in namespace `name` for the block (setns(2); os.setns is Python 3.12+), back in
    its own afterwards. Threads and processes started in the block are inside for good: the demo's
    watchers, its update server and its qemu processes reach the fleet's bridge and nothing else."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, f"namespace {name}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home, "this process's own network namespace")
    finally:
        os.close(home)
