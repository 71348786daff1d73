"""A real three-member etcd cluster with client and peer TLS, configured by nothing but the cloud-configs.

Each member runs in a stand-in for its VM (its own stack on the fleet's bridge) with exactly the ETCD_*
variables `coreos-cloudinit` wrote into its etcd.service drop-in, their paths pointing into that
host's applied tree. The host side (the bridge's namespace, where the observer will run) and a fourth
host that is no member reach it with the client certificate; nobody reaches it without one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.devtools import pki
from harness.devtools.etcd import EtcdMember
from harness.vmfleet import hostconfig, netns
from harness.vmfleet.netns import FleetNetwork
from locksmith.cloudconfig import services

from .conftest import PREFIX, apply, drop_in_environment, image_tree

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFleetTestsOnly0000000000000 demo@host"
ETCD_DROP_IN = f"run/systemd/system/{services.ETCD_UNIT}.d/{services.DROP_IN}"
LOCKSMITHD_DROP_IN = f"run/systemd/system/{services.LOCKSMITHD}.d/{services.DROP_IN}"
LOCKSMITHCTL = str(Path(sys.executable).with_name("locksmithctl"))
HEALTHY_WITHIN = 45.0  # three members electing a leader over TLS: a few seconds, far more on a loaded CI box

# One TLS request to a member's client port: the HTTP status line, or why the TLS layer refused.
TLS_PROBE = """
import socket, ssl, sys
host, port, ca, *cert = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(*cert)
try:
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET /version HTTP/1.1\\r\\nHost: etcd\\r\\nConnection: close\\r\\n\\r\\n")
            print(tls.recv(4096).decode(errors="replace").splitlines()[0])
except ssl.SSLError as exc:
    print("refused:", type(exc).__name__, exc.reason)
"""


@dataclass
class StandInMember(EtcdMember):
    """An etcd member in a VM's stand-in, started (and stopped, and logged) as the harness's members are,
    but configured only by `environment`: what systemd gives etcd.service on that VM."""

    netns: str = ""
    environment: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        binary = shutil.which("etcd")
        assert binary, "etcd is not installed: run scripts/bootstrap"
        # etcd.service itself sets the data directory (ETCD_DATA_DIR=/var/lib/etcd/default); here, ours.
        env = {**self.environment, "ETCD_DATA_DIR": str(self.data_dir)}
        return netns.exec_argv(self.netns, ["env", "-i", *(f"{k}={v}" for k, v in env.items()), binary])


def in_tree(tree: Path, values: dict[str, str]) -> dict[str, str]:
    """The guest's file paths (`/etc/ssl/etcd/…`) as they are on this machine: inside `tree`."""
    return {k: str(tree / v.lstrip("/")) if v.startswith(hostconfig.TLS_DIR + "/") else v for k, v in values.items()}


def etcdctl(
    net: FleetNetwork, *args: str, where: str | None = None, tls: list[str]
) -> subprocess.CompletedProcess[str]:
    argv = ["etcdctl", "--dial-timeout=2s", "--command-timeout=4s", *tls, *args]
    env = {"ETCDCTL_API": "3", "PATH": os.environ["PATH"]}
    return net.run(argv, timeout=30, netns=where, capture_output=True, text=True, env=env)


def wait_healthy(net: FleetNetwork, members: list[StandInMember], endpoints: str, tls: list[str]) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    while True:
        for m in members:
            if not m.running():
                log = m.data_dir.with_suffix(".log").read_text()[-2000:]
                raise AssertionError(f"etcd member {m.name} exited: {log}")
        done = etcdctl(net, "--endpoints", endpoints, "endpoint", "health", tls=tls)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy within {HEALTHY_WITHIN} s: {done.stdout}{done.stderr[-2000:]}")
        time.sleep(0.3)  # between two health checks, each bounded by its own timeouts


def tls_args(ca: Path | str, cert: Path | str | None = None, key: Path | str | None = None) -> list[str]:
    args = ["--cacert", str(ca)]
    if cert and key:
        args += ["--cert", str(cert), "--key", str(key)]
    return args


def test_the_rendered_members_form_a_tls_cluster_that_wants_client_certificates(tmp_path: Path) -> None:
    fleet = hostconfig.plan(4, ssh_public_key=SSH_KEY, update_server="http://10.77.0.1:8080/v1/update/")
    trees: dict[str, Path] = {}
    for host in fleet.hosts:
        trees[host.hostname] = image_tree(tmp_path / host.hostname)
        done = apply(hostconfig.render(fleet, host), trees[host.hostname])
        assert done.returncode == 0, done.stdout + done.stderr
    observer = pki.write(fleet.pki, tmp_path / "observer")  # the host side's copy of the client files
    client = tls_args(observer.ca, observer.client.cert, observer.client.key)
    endpoints = fleet.endpoints.split(",")

    with FleetNetwork(PREFIX) as net:
        members = []
        for host in fleet.members:
            tree = trees[host.hostname]
            members.append(
                StandInMember(
                    name=host.hostname,
                    data_dir=tmp_path / f"{host.hostname}-data",
                    netns=net.add_stand_in(host.index),
                    environment=in_tree(tree, drop_in_environment(tree / ETCD_DROP_IN)),
                )
            )
        vm4 = net.add_stand_in(4)
        try:
            for m in members:
                m.start()
            wait_healthy(net, members, fleet.endpoints, client)

            health = etcdctl(net, "--endpoints", fleet.endpoints, "endpoint", "health", tls=client)
            # etcdctl reports health on stderr, where its client's warnings may go too.
            lines = sorted(line for line in health.stderr.splitlines() if line.startswith("https://"))
            assert [line.split()[0] for line in lines] == sorted(endpoints)
            assert all(" is healthy: " in line for line in lines)
            listed = json.loads(
                etcdctl(net, "--endpoints", endpoints[0], "member", "list", "-w", "json", tls=client).stdout
            )
            peers = {m["name"]: m["peerURLs"] for m in listed["members"]}
            assert peers == {h.hostname: [h.peer_url] for h in fleet.members}

            # Written through the first member, read through the third: the peers replicate over TLS.
            assert etcdctl(net, "--endpoints", endpoints[0], "put", "fleet/probe", "42", tls=client).returncode == 0
            got = etcdctl(net, "--endpoints", endpoints[2], "get", "fleet/probe", "--print-value-only", tls=client)
            assert got.stdout.strip() == "42"

            # On a member, its own certificate serves as a client's too, on 127.0.0.1.
            tree1 = trees["vm1"]
            own = tls_args(
                *(tree1 / p.lstrip("/") for p in (hostconfig.CA_FILE, hostconfig.MEMBER_CERT, hostconfig.MEMBER_KEY))
            )
            local = etcdctl(
                net, "--endpoints", "https://127.0.0.1:2379", "endpoint", "health", where=members[0].netns, tls=own
            )
            assert local.returncode == 0, local.stderr[-2000:]

            # Without a client certificate, or with one another CA signed, every member refuses.
            stranger = pki.write(pki.generate({}), tmp_path / "stranger")
            theirs = [str(stranger.client.cert), str(stranger.client.key)]
            ours = [str(observer.client.cert), str(observer.client.key)]
            for host in fleet.members:
                probe = [sys.executable, "-c", TLS_PROBE, str(host.address.ip), "2379", str(observer.ca)]
                said = {}
                for label, cert in (("none", []), ("stranger", theirs), ("ours", ours)):
                    said[label] = net.run([*probe, *cert], timeout=30, capture_output=True, text=True).stdout.strip()
                # Which alert etcd's Go sends (or whether it just hangs up) varies: refused at all is the point.
                assert said["none"].startswith("refused: "), (host.hostname, said)
                assert said["stranger"].startswith("refused: "), (host.hostname, said)
                assert said["ours"] == "HTTP/1.1 200 OK", (host.hostname, said)
            quick = ("--dial-timeout=1s", "--command-timeout=2s")  # the last of a flag counts
            refused = etcdctl(net, "--endpoints", endpoints[0], *quick, "get", "fleet/probe", tls=tls_args(observer.ca))
            assert refused.returncode != 0 and "42" not in refused.stdout

            # A host that is no member locks through the cluster with what its cloud-config gave locksmithd.
            settings = in_tree(trees["vm4"], drop_in_environment(trees["vm4"] / LOCKSMITHD_DROP_IN))
            ctl = [
                LOCKSMITHCTL,
                "--endpoint",
                settings["LOCKSMITHD_ENDPOINT"],
                "--etcd-cafile",
                settings["LOCKSMITHD_ETCD_CAFILE"],
                "--etcd-certfile",
                settings["LOCKSMITHD_ETCD_CERTFILE"],
                "--etcd-keyfile",
                settings["LOCKSMITHD_ETCD_KEYFILE"],
            ]
            env: dict[str, Any] = {"PATH": os.environ["PATH"]}
            set_max = net.run([*ctl, "set-max", "2"], timeout=60, netns=vm4, capture_output=True, text=True, env=env)
            assert set_max.returncode == 0, set_max.stdout + set_max.stderr
            status = net.run([*ctl, "status"], timeout=60, netns=vm4, capture_output=True, text=True, env=env)
            assert status.returncode == 0, status.stdout + status.stderr
            assert "Max: 2" in status.stdout
        finally:
            for m in members:
                m.stop()
