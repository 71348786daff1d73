"""FleetNetwork for real: `ip netns`, a bridge, taps and stand-ins, and that every way out deletes them."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from harness.vmfleet import netns
from harness.vmfleet.netns import FleetNetwork

from .conftest import PREFIX

SWEEP_PREFIX = "lsvmsweep"  # the sweep test's own: see there

ECHO_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    conn, peer = server.accept()
    with conn:
        conn.sendall(b"hello " + peer[0].encode() + b" from " + sys.argv[1].encode())
"""
ECHO_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    print(s.recv(200).decode())
"""
# A run that dies without cleaning up: its namespaces, and a process inside, stay behind.
CRASHING_RUN = """
import sys
from harness.vmfleet.netns import FleetNetwork
net = FleetNetwork(sys.argv[1]).open()
stand_in = net.add_stand_in(1)
sleeper = net.popen(["sleep", "1000"], netns=stand_in)
print(net.name, stand_in, sleeper.pid, flush=True)
sys.stdin.read()
"""


def read_line(proc: subprocess.Popen[str], seconds: float = 20.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    assert ready, f"no line from {proc.args} within {seconds} s"
    return proc.stdout.readline().strip()


def ip_json(*args: str) -> Any:
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout)


def host_links() -> set[str]:
    return {link["ifname"] for link in ip_json("link")}


def links(net: FleetNetwork, netns_name: str | None = None) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in json.loads(net.ip("-j", "link", netns=netns_name).stdout)}


def wait_inside(name: str, pids: list[int], seconds: float = 10.0) -> None:
    """Until `ip netns exec` has entered the namespace with each of `pids` (it starts outside)."""
    deadline = time.monotonic() + seconds
    while not set(pids) <= set(netns.pids_inside(name)):
        assert time.monotonic() < deadline, f"{pids} not inside {name} within {seconds} s"
        time.sleep(0.02)


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for its reaper (it holds no namespace any more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_namespace_has_the_bridge_with_the_host_address_and_the_taps() -> None:
    before = host_links()
    with FleetNetwork(PREFIX) as net:
        name = net.name
        assert net.host_address == netns.host_address() == IPv4Interface("10.77.0.1/24")
        assert name in netns.namespaces()
        taps = [net.add_tap(1), net.add_tap(2)]
        inside = links(net)
        assert "UP" in inside["lo"]["flags"]
        # Admin-up: its carrier comes when a qemu opens a tap, so operstate says DOWN until then.
        assert "UP" in inside["br0"]["flags"]
        for tap in taps:
            assert inside[tap]["master"] == "br0"
            assert "UP" in inside[tap]["flags"]
        (br0,) = json.loads(net.ip("-j", "addr", "show", "dev", "br0").stdout)
        inet = [(a["local"], a["prefixlen"]) for a in br0["addr_info"] if a["family"] == "inet"]
        assert inet == [("10.77.0.1", 24)]
        assert host_links() == before  # nothing of it is on the host's side
    assert name not in netns.namespaces()
    assert host_links() == before


def test_a_stand_in_has_its_own_stack_on_the_bridge_and_goes_with_the_network() -> None:
    with FleetNetwork(PREFIX) as net:
        stand_in = net.add_stand_in(3)
        assert stand_in == f"{net.name}-vm3"
        (eth0,) = json.loads(net.ip("-j", "addr", "show", "dev", "eth0", netns=stand_in).stdout)
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [
            ("10.77.0.13", 24)
        ]
        assert links(net)["veth3"]["master"] == "br0"
        assert "UP" in links(net, stand_in)["lo"]["flags"]
    assert stand_in not in netns.namespaces()


def test_servers_inside_answer_clients_inside() -> None:
    with FleetNetwork(PREFIX) as net:
        stand_in = net.add_stand_in(1)
        for address in ("10.77.0.1", "127.0.0.1"):
            server = net.popen([sys.executable, "-c", ECHO_SERVER, address, "8080"], stdout=subprocess.PIPE, text=True)
            assert read_line(server) == "ready"
        client = [sys.executable, "-c", ECHO_CLIENT]
        here = net.run([*client, "10.77.0.1", "8080"], timeout=20, capture_output=True, text=True, check=True)
        assert here.stdout.strip() == "hello 10.77.0.1 from 10.77.0.1"
        lo = net.run([*client, "127.0.0.1", "8080"], timeout=20, capture_output=True, text=True, check=True)
        assert lo.stdout.strip() == "hello 127.0.0.1 from 127.0.0.1"
        # A VM's way to the host side: across the bridge, from its own address.
        vm = net.run([*client, "10.77.0.1", "8080"], timeout=20, netns=stand_in, capture_output=True, text=True)
        assert vm.stdout.strip() == "hello 10.77.0.11 from 10.77.0.1"
    assert server.poll() is not None  # stopped with the network


def test_the_namespace_goes_when_the_body_raises() -> None:
    net = FleetNetwork(PREFIX)
    with pytest.raises(RuntimeError, match="boom"), net:
        name = net.name
        net.add_tap(1)
        raise RuntimeError("boom")
    assert name not in netns.namespaces()


def test_the_namespace_goes_on_ctrl_c() -> None:
    net = FleetNetwork(PREFIX)
    with pytest.raises(KeyboardInterrupt), net:
        name = net.name
        stand_in = net.add_stand_in(2)
        raise KeyboardInterrupt
    assert name not in netns.namespaces()
    assert stand_in not in netns.namespaces()


def test_processes_left_inside_are_stopped_and_the_namespace_goes() -> None:
    with FleetNetwork(PREFIX, grace=0.5) as net:
        name = net.name
        stand_in = net.add_stand_in(1)
        # Started around FleetNetwork (it does not know them): found by `ip netns pids`.
        polite = netns.run_inside(name, ["sleep", "1000"])
        stubborn = netns.run_inside(stand_in, ["sh", "-c", "trap '' TERM; exec sleep 1000"])
        tracked = net.popen(["sleep", "1000"])  # stopped even before it is inside: close() knows it
        wait_inside(name, [polite.pid])
        wait_inside(stand_in, [stubborn.pid])
    assert polite.wait(timeout=10) == -signal.SIGTERM
    assert stubborn.wait(timeout=10) == -signal.SIGKILL  # ignored SIGTERM, killed after the grace
    assert tracked.returncode == -signal.SIGTERM  # reaped by close()
    assert name not in netns.namespaces()
    assert stand_in not in netns.namespaces()


def test_sweep_removes_what_a_dead_run_left_and_nothing_else() -> None:
    # A prefix of its own: what another test's dead run left under PREFIX is rightly swept too, and
    # would make "nothing else" fail here (a Ctrl-C test killed after its deadline once did).
    prefix = SWEEP_PREFIX
    crashed = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, prefix], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    left: list[str] = []
    decoys = [f"{prefix}-decoy", f"{prefix}x-{crashed.pid}-abcdef", f"{prefix}-{crashed.pid}-abcdef-extra"]
    try:
        *left, sleeper = read_line(crashed).split()
        orphan = int(sleeper)
        wait_inside(left[1], [orphan])
        crashed.kill()
        # Not reaped yet: a zombie creator counts as dead (where nobody reaps orphans, it stays one).
        exited = os.pidfd_open(crashed.pid)
        try:
            assert select.select([exited], [], [], 10)[0], "the killed run did not exit"
        finally:
            os.close(exited)
        assert set(left) <= set(netns.namespaces())
        for decoy in decoys:
            subprocess.run(["ip", "netns", "add", decoy], check=True, timeout=10)
        with FleetNetwork(prefix) as live:
            mine = [live.name, live.add_stand_in(1)]
            assert sorted(netns.sweep(prefix)) == sorted(left)
            remaining = set(netns.namespaces())
            assert not set(left) & remaining
            assert set(mine) | set(decoys) <= remaining
        assert ended(orphan)
    finally:
        if crashed.poll() is None:
            crashed.kill()
            crashed.wait(timeout=10)
        netns.remove([name for name in [*left, *decoys] if name in netns.namespaces()])


def test_bad_input_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="namespace prefix 'Bad-Prefix'"):
        FleetNetwork("Bad-Prefix")
    with pytest.raises(ValueError, match=re.escape("subnet '10.77.0.1/24'")):
        FleetNetwork(PREFIX, subnet="10.77.0.1/24")
    with pytest.raises(ValueError, match=re.escape("VM 6: 10.77.0.0/28 has no host address")):
        netns.vm_address("10.77.0.0/28", 6)
    assert str(netns.vm_address("10.77.0.0/24", 1)) == "10.77.0.11/24"
    assert str(netns.vm_address("10.77.0.0/24", 5)) == "10.77.0.15/24"


def test_an_ip_failure_is_one_line_and_cleans_up() -> None:
    with FleetNetwork(PREFIX) as net:
        name = net.name
        net.add_tap(1)
        with pytest.raises(netns.NetnsError) as failed:
            net.add_tap(1)
        assert "\n" not in str(failed.value)
        assert str(failed.value).startswith(f"ip -n {name} tuntap add dev tap1 mode tap: exit")
    assert name not in netns.namespaces()
