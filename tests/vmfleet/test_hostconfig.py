"""The VMs' cloud-configs, judged by our own coreos-cloudinit: validated, and applied into image-shaped trees."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.vmfleet import hostconfig
from harness.vmfleet.hostconfig import Fleet
from locksmith.cloudconfig import services, units

from .conftest import ETCD_GID, ETCD_UID, apply, drop_in_environment, image_tree, validate

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFleetTestsOnly0000000000000 demo@host"
SERVER = "http://10.77.0.1:8080/v1/update/"
ENDPOINTS = "https://10.77.0.11:2379,https://10.77.0.12:2379,https://10.77.0.13:2379"
ETCD_DROP_IN = f"run/systemd/system/{services.ETCD_UNIT}.d/{services.DROP_IN}"
LOCKSMITHD_DROP_IN = f"run/systemd/system/{services.LOCKSMITHD}.d/{services.DROP_IN}"


def fleet(count: int, **kw: str) -> Fleet:
    return hostconfig.plan(count, ssh_public_key=SSH_KEY, update_server=SERVER, **kw)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("count", [3, 5])
def test_every_document_passes_our_validator_without_a_finding(count: int, tmp_path: Path) -> None:
    documents = hostconfig.render_all(fleet(count, locksmith_group="demo"))
    assert list(documents) == [f"vm{i}" for i in range(1, count + 1)]
    for name, text in documents.items():
        assert text.startswith("#cloud-config\n")
        checked = validate(text, tmp_path / f"{name}.yml")
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), name


def test_the_first_three_are_the_etcd_cluster_and_every_host_locks_through_it() -> None:
    plan = fleet(5)
    docs = {name: yaml.safe_load(text) for name, text in hostconfig.render_all(plan).items()}
    assert [h.hostname for h in plan.members] == ["vm1", "vm2", "vm3"]
    for i, (name, doc) in enumerate(docs.items(), 1):
        coreos = doc["coreos"]
        assert doc["hostname"] == name
        assert coreos["update"] == {"group": "stable", "server": SERVER, "reboot_strategy": "etcd-lock"}
        assert coreos["locksmith"]["endpoint"] == ENDPOINTS
        assert "group" not in coreos["locksmith"]
        (network,) = [u for u in coreos["units"] if u["name"] == hostconfig.NETWORK_UNIT]
        assert f"Address=10.77.0.{10 + i}/24\n" in network["content"] and "Gateway" not in network["content"]
        paths = [f["path"] for f in doc["write_files"]]
        if i <= 3:
            assert coreos["etcd2"]["initial_cluster"] == (
                "vm1=https://10.77.0.11:2380,vm2=https://10.77.0.12:2380,vm3=https://10.77.0.13:2380"
            )
            assert coreos["etcd2"]["listen_client_urls"] == f"https://10.77.0.{10 + i}:2379,https://127.0.0.1:2379"
            assert {"name": hostconfig.ETCD_UNIT, "command": "start"} in coreos["units"]
            assert hostconfig.MEMBER_KEY in paths
        else:
            assert "etcd2" not in coreos
            assert hostconfig.MEMBER_KEY not in paths
            assert all(u["name"] != hostconfig.ETCD_UNIT for u in coreos["units"])


def test_the_names_it_relies_on_are_the_image_s() -> None:
    assert units.is_network(hostconfig.NETWORK_UNIT)
    # coreos.etcd2's drop-in goes to etcd.service; the unit it starts must be that unit (Debian's alias).
    assert services.ETCD_UNIT == "etcd.service"
    unit = Path("/lib/systemd/system/etcd.service").read_text()
    assert f"Alias={hostconfig.ETCD_UNIT}" in unit.splitlines()
    assert "User=etcd" in unit.splitlines()  # so the member's key is etcd's


def test_a_member_s_document_applied_writes_its_keys_0600_and_the_tls_settings(tmp_path: Path) -> None:
    plan = fleet(3, locksmith_group="demo")
    tree = image_tree(tmp_path / "vm1")
    done = apply(hostconfig.render(plan, plan.hosts[0]), tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed" not in done.stdout
    assert "not the running system, skipped: systemctl start etcd2.service" in done.stdout

    tls = tree / hostconfig.TLS_DIR.lstrip("/")
    assert (tls / "ca.pem").read_text() == plan.pki.ca_pem
    assert (tls / "client-key.pem").read_text() == plan.pki.client.key_pem
    assert (tls / "member-key.pem").read_text() == plan.pki.members["vm1"].key_pem
    for key in ("client-key.pem", "member-key.pem"):
        assert mode(tls / key) == 0o600
    assert mode(tls / "ca.pem") == mode(tls / "member.pem") == 0o644
    member_key = (tls / "member-key.pem").stat()
    assert (member_key.st_uid, member_key.st_gid) == (ETCD_UID, ETCD_GID)
    assert (tls / "client-key.pem").stat().st_uid == 0

    etcd = drop_in_environment(tree / ETCD_DROP_IN)
    assert {k: v for k, v in etcd.items() if "FILE" in k or "AUTH" in k} == {
        "ETCD_CERT_FILE": hostconfig.MEMBER_CERT,
        "ETCD_KEY_FILE": hostconfig.MEMBER_KEY,
        "ETCD_TRUSTED_CA_FILE": hostconfig.CA_FILE,
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_CERT_FILE": hostconfig.MEMBER_CERT,
        "ETCD_PEER_KEY_FILE": hostconfig.MEMBER_KEY,
        "ETCD_PEER_TRUSTED_CA_FILE": hostconfig.CA_FILE,
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
    }
    assert etcd["ETCD_NAME"] == "vm1"
    assert etcd["ETCD_LISTEN_PEER_URLS"] == etcd["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "https://10.77.0.11:2380"
    assert etcd["ETCD_ADVERTISE_CLIENT_URLS"] == "https://10.77.0.11:2379"

    assert drop_in_environment(tree / LOCKSMITHD_DROP_IN) == {
        "LOCKSMITHD_ENDPOINT": ENDPOINTS,
        "LOCKSMITHD_GROUP": "demo",
        "LOCKSMITHD_ETCD_CAFILE": hostconfig.CA_FILE,
        "LOCKSMITHD_ETCD_CERTFILE": hostconfig.CLIENT_CERT,
        "LOCKSMITHD_ETCD_KEYFILE": hostconfig.CLIENT_KEY,
    }
    update = (tree / "etc/coreos/update.conf").read_text().splitlines()
    assert sorted(update) == sorted(["GROUP=stable", f"SERVER={SERVER}", "REBOOT_STRATEGY=etcd-lock"])
    network = (tree / "etc/systemd/network" / hostconfig.NETWORK_UNIT).read_text()
    assert "Name=en* eth*" in network and "Address=10.77.0.11/24" in network
    assert (tree / "etc/hostname").read_text() == "vm1\n"
    assert "core:" in (tree / "etc/passwd").read_text()
    assert (tree / "home/core/.ssh/authorized_keys").read_text() == SSH_KEY + "\n"


def test_a_host_that_is_no_member_gets_the_client_files_only(tmp_path: Path) -> None:
    plan = fleet(4)
    tree = image_tree(tmp_path / "vm4")
    done = apply(hostconfig.render(plan, plan.hosts[3]), tree)
    assert done.returncode == 0, done.stdout + done.stderr
    tls = tree / hostconfig.TLS_DIR.lstrip("/")
    assert sorted(p.name for p in tls.iterdir()) == ["ca.pem", "client-key.pem", "client.pem"]
    assert mode(tls / "client-key.pem") == 0o600
    assert not (tree / ETCD_DROP_IN).exists()
    assert drop_in_environment(tree / LOCKSMITHD_DROP_IN)["LOCKSMITHD_ENDPOINT"] == ENDPOINTS


def test_bad_plans_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^members 3: a fleet of 2 hosts can have 1 to 2 etcd members$"):
        fleet(2)
    for key in ("ssh-ed25519 AAAA one\nssh-ed25519 AAAA two", "not a key", ""):
        with pytest.raises(ValueError, match=r"^ssh_public_key: use one OpenSSH public key line"):
            hostconfig.plan(3, ssh_public_key=key, update_server=SERVER)


def test_a_broken_release_gets_a_health_gate_that_fails_only_while_it_runs(tmp_path: Path) -> None:
    plan = fleet(3, broken_version="2.0.0")
    for name, text in hostconfig.render_all(plan).items():
        checked = validate(text, tmp_path / f"{name}.yml")
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), name
        (drop_in,) = [f for f in yaml.safe_load(text)["write_files"] if f["path"] == hostconfig.BROKEN_GATE_DROP_IN]
        (command,) = re.findall(r'^Environment="LOCKSMITHD_HEALTH_COMMAND=(.*)"$', drop_in["content"], re.MULTILINE)
        for version, healthy in (("1.0.0", True), ("2.0.0", False), ("2.0.0.1", True)):
            release = tmp_path / "release"
            release.write_text(f"COREOS_RELEASE_VERSION={version}\nCOREOS_RELEASE_BOARD=amd64-usr\n")
            ran = subprocess.run(["sh", "-c", command.replace("/usr/share/coreos/release", str(release))], check=False)
            assert (ran.returncode == 0) is healthy, (version, command)
    assert all(hostconfig.BROKEN_GATE_DROP_IN not in text for text in hostconfig.render_all(fleet(3)).values())
    with pytest.raises(ValueError, match="broken_version"):
        hostconfig.render_all(fleet(3, broken_version="2.0.0; reboot"))
