"""Each VM's cloud-config: who it is, its static address, its TLS files, and how it joins the fleet.

`plan` lays out a fleet (host names, addresses, the PKI); `render` turns one host into a `#cloud-config`
document for its config-2 drive. The first `members` hosts (three by default) form a static etcd cluster
with TLS for clients and peers, client certificates required on both; every host's locksmithd uses
`etcd-lock` against that cluster with the shared client certificate.

Only keys `coreos-cloudinit --validate` knows are written (the tests hold every document to that). Key
files are 0600: the client key is root's (locksmithd runs as root), a member's key belongs to `etcd`,
the user Debian's etcd.service runs as.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

import yaml

from harness.devtools import pki
from harness.devtools.pki import FleetPki, KeyPair
from harness.vmfleet import netns

TLS_DIR = "/etc/ssl/etcd"
CA_FILE = f"{TLS_DIR}/ca.pem"
CLIENT_CERT = f"{TLS_DIR}/client.pem"
CLIENT_KEY = f"{TLS_DIR}/client-key.pem"
MEMBER_CERT = f"{TLS_DIR}/member.pem"
MEMBER_KEY = f"{TLS_DIR}/member-key.pem"
ETCD_OWNER = "etcd:etcd"
# CoreOS's name; Debian's etcd.service declares Alias=etcd2.service, and coreos.etcd2's drop-in is
# written for etcd.service itself, so starting either starts the configured etcd.
ETCD_UNIT = "etcd2.service"
NETWORK_UNIT = "10-static.network"  # sorts before the image's 80-locksmith-dhcp.network, which it replaces
CLIENT_PORT = 2379
PEER_PORT = 2380
DEFAULT_MEMBERS = 3
# A guest under TCG (no KVM) runs many times slower than etcd's 100 ms / 1 s defaults assume: longer
# heartbeats and elections keep a busy guest from losing its leadership over and over.
HEARTBEAT_MS = 500
ELECTION_MS = 5000


@dataclass(frozen=True)
class Host:
    index: int  # counted from 1, as netns.vm_address
    hostname: str
    address: IPv4Interface
    member: KeyPair | None = None  # the etcd member's certificate, on the first `members` hosts

    @property
    def client_url(self) -> str:
        return f"https://{self.address.ip}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.address.ip}:{PEER_PORT}"


@dataclass(frozen=True)
class Fleet:
    hosts: tuple[Host, ...]
    pki: FleetPki
    ssh_public_key: str
    update_server: str
    update_group: str = "stable"
    locksmith_group: str | None = None
    etcd_token: str = "locksmith-fleet"
    #: A release whose health gate fails on every host (the demo's --broken-update): a locksmithd drop-in.
    broken_version: str | None = None

    @property
    def members(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.member is not None)

    @property
    def endpoints(self) -> str:
        """The members' client URLs, comma-separated (locksmithd's, locksmithctl's and the observer's)."""
        return ",".join(h.client_url for h in self.members)


def _one_line_key(key: str) -> str:
    text = key.strip()
    # One authorized_keys line: a newline would smuggle in a second key (or options) unseen.
    if not text or not text.isprintable() or not text.startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValueError("ssh_public_key: use one OpenSSH public key line (ssh-ed25519 AAAA… comment)")
    return text


def plan(
    count: int,
    *,
    ssh_public_key: str,
    update_server: str,
    subnet: str = netns.DEFAULT_SUBNET,
    members: int = DEFAULT_MEMBERS,
    hostname_prefix: str = "vm",
    update_group: str = "stable",
    locksmith_group: str | None = None,
    etcd_token: str = "locksmith-fleet",
    broken_version: str | None = None,
) -> Fleet:
    """`count` hosts `<prefix>1`…, host i at `netns.vm_address(subnet, i)`, the first `members` of
    them etcd members, with a new PKI."""
    if not 1 <= members <= count:
        raise ValueError(f"members {members}: a fleet of {count} hosts can have 1 to {count} etcd members")
    addresses = [netns.vm_address(subnet, i) for i in range(1, count + 1)]
    names = [f"{hostname_prefix}{i}" for i in range(1, count + 1)]
    material = pki.generate({names[i]: addresses[i].ip for i in range(members)})
    hosts = tuple(Host(i + 1, names[i], addresses[i], material.members.get(names[i])) for i in range(count))
    return Fleet(
        hosts,
        material,
        _one_line_key(ssh_public_key),
        update_server,
        update_group,
        locksmith_group,
        etcd_token,
        broken_version,
    )


def _file(path: str, text: str, permissions: str, owner: str | None = None) -> dict[str, str]:
    entry = {"path": path, "permissions": permissions, "content": text}
    if owner:
        entry["owner"] = owner
    return entry


def _network_unit(host: Host) -> str:
    # No Gateway= and no DNS=: the fleet's subnet is the whole network (a bridge in a namespace).
    return f"[Match]\nName=en* eth*\n\n[Network]\nAddress={host.address}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"


BROKEN_GATE_DROP_IN = "/etc/systemd/system/locksmithd.service.d/50-broken-update.conf"
BROKEN_GATE_SECONDS = 30


def _broken_gate(version: str) -> str:
    """A health gate that fails while `version` runs: what a release that breaks the host looks like to
    locksmithd (it is in /etc, so it outlives the switch of /usr)."""
    if not all(c.isalnum() or c in ".-+" for c in version):
        raise ValueError(f"broken_version {version!r}: use a release version (digits, letters, . - +)")
    check = f"! grep -qx COREOS_RELEASE_VERSION={version} /usr/share/coreos/release"
    return (
        "[Service]\n"
        f'Environment="LOCKSMITHD_HEALTH_COMMAND={check}"\n'
        f"Environment=LOCKSMITHD_HEALTH_TIMEOUT={BROKEN_GATE_SECONDS}s\n"
    )


def _etcd2(fleet: Fleet, host: Host) -> dict[str, Any]:
    return {
        "name": host.hostname,
        "initial_cluster": ",".join(f"{m.hostname}={m.peer_url}" for m in fleet.members),
        "initial_cluster_state": "new",
        "initial_cluster_token": fleet.etcd_token,
        "initial_advertise_peer_urls": host.peer_url,
        "listen_peer_urls": host.peer_url,
        "listen_client_urls": f"{host.client_url},https://127.0.0.1:{CLIENT_PORT}",
        "advertise_client_urls": host.client_url,
        "heartbeat_interval": HEARTBEAT_MS,
        "election_timeout": ELECTION_MS,
        "cert_file": MEMBER_CERT,
        "key_file": MEMBER_KEY,
        "trusted_ca_file": CA_FILE,
        "client_cert_auth": True,
        "peer_cert_file": MEMBER_CERT,
        "peer_key_file": MEMBER_KEY,
        "peer_trusted_ca_file": CA_FILE,
        "peer_client_cert_auth": True,
    }


def document(fleet: Fleet, host: Host) -> dict[str, Any]:
    """The cloud-config of `host` as data (what `render` writes out)."""
    files = [
        _file(CA_FILE, fleet.pki.ca_pem, "0644"),
        _file(CLIENT_CERT, fleet.pki.client.cert_pem, "0644"),
        _file(CLIENT_KEY, fleet.pki.client.key_pem, "0600"),
    ]
    if fleet.broken_version is not None:
        files.append(_file(BROKEN_GATE_DROP_IN, _broken_gate(fleet.broken_version), "0644"))
    units: list[dict[str, Any]] = [{"name": NETWORK_UNIT, "content": _network_unit(host)}]
    coreos: dict[str, Any] = {}
    if host.member is not None:
        files.append(_file(MEMBER_CERT, host.member.cert_pem, "0644"))
        files.append(_file(MEMBER_KEY, host.member.key_pem, "0600", ETCD_OWNER))
        coreos["etcd2"] = _etcd2(fleet, host)
        units.append({"name": ETCD_UNIT, "command": "start"})
    coreos["update"] = {
        "group": fleet.update_group,
        "server": fleet.update_server,
        "reboot_strategy": "etcd-lock",
    }
    locksmith = {
        "endpoint": fleet.endpoints,
        "etcd_cafile": CA_FILE,
        "etcd_certfile": CLIENT_CERT,
        "etcd_keyfile": CLIENT_KEY,
    }
    if fleet.locksmith_group:
        locksmith["group"] = fleet.locksmith_group
    coreos["locksmith"] = locksmith
    coreos["units"] = units
    return {
        "hostname": host.hostname,
        "users": [{"name": "core", "groups": ["sudo"], "ssh_authorized_keys": [fleet.ssh_public_key]}],
        "write_files": files,
        "coreos": coreos,
    }


class _Dumper(yaml.SafeDumper):
    """PEM blocks and unit files as literal blocks (`|`), readable in the drive as they will be on disk."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render(fleet: Fleet, host: Host) -> str:
    """`host`'s `#cloud-config` document."""
    body = yaml.dump(document(fleet, host), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
    return "#cloud-config\n" + body


def render_all(fleet: Fleet) -> Mapping[str, str]:
    """Every host's document, by host name."""
    return {host.hostname: render(fleet, host) for host in fleet.hosts}
