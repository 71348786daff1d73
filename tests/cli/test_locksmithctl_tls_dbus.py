"""locksmithctl against a TLS etcd (right and wrong CA), and its D-Bus commands on a private bus."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from harness.devtools.dbus import PrivateBus
from harness.devtools.etcd import EtcdCluster, EtcdTLS
from harness.devtools.fake_logind import FakeLogind
from locksmith.bus.system import call_daemon
from locksmith.bus.update_engine import STATUS_UPDATE_MATCH_RULE

from .test_locksmithctl import LOCKSMITHCTL, MACHINE_ID, Ctl, clean_env


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EtcdCluster, Path, Path]]:
    """A server-TLS etcd; yields it with its CA file and an unrelated CA file."""
    d = tmp_path_factory.mktemp("cli-pki")
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("cli test CA", ca_key, None)
    ca_file = _pem(d / "ca.pem", ca)
    other_ca = _pem(d / "other-ca.pem", _cert("some other CA", other_key, None))
    server = _pem(d / "server.pem", _cert("etcd", server_key, (ca.subject, ca_key)))
    key_file = d / "server-key.pem"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with EtcdCluster(d / "etcd", tls=EtcdTLS(server, key_file)) as cluster:
        yield cluster, ca_file, other_ca


def test_tls_with_the_right_ca_only(tls_etcd: tuple[EtcdCluster, Path, Path], tmp_path: Path) -> None:
    cluster, ca, _other = tls_etcd
    ctl = Ctl(cluster.endpoints, clean_env(tmp_path))
    r = ctl("--endpoint", cluster.endpoints[0], "--etcd-cafile", str(ca), "lock")
    assert r.returncode == 0, r.stderr
    r = ctl("--endpoint", cluster.endpoints[0], "--etcd-cafile", str(ca), "status")
    assert r.returncode == 0 and MACHINE_ID in r.stdout


def test_tls_with_a_wrong_ca_is_a_clear_error(tls_etcd: tuple[EtcdCluster, Path, Path], tmp_path: Path) -> None:
    cluster, _ca, other = tls_etcd
    ctl = Ctl(cluster.endpoints, clean_env(tmp_path))
    r = ctl("--endpoint", cluster.endpoints[0], "--etcd-cafile", str(other), "--timeout", "2", "status")
    assert r.returncode == 1
    assert r.stderr.startswith("Error getting status: ")
    assert "certificate" in r.stderr.lower()
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


async def run_ctl(ctl: Ctl, *args: str) -> tuple[int, str, str]:
    """Async, so a D-Bus service in this event loop can answer the subprocess."""
    proc = await asyncio.create_subprocess_exec(
        LOCKSMITHCTL, *args, env=ctl.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def bus_ctl(dbus_bus: PrivateBus, tmp_path: Path) -> Ctl:
    env = clean_env(tmp_path)
    env["DBUS_SYSTEM_BUS_ADDRESS"] = dbus_bus.address
    env["LOCKSMITHCTL_ENDPOINT"] = f"file://{tmp_path}/kv.db"
    return Ctl([env["LOCKSMITHCTL_ENDPOINT"]], env)


@pytest.mark.skipif(os.geteuid() != 0, reason="reboot is root only; this run is not root")
async def test_reboot_takes_the_lock_then_calls_logind(bus_ctl: Ctl) -> None:
    async with FakeLogind() as logind:
        code, _out, err = await run_ctl(bus_ctl, "reboot")
        assert code == 0, err
        call = await asyncio.wait_for(logind.wait_for_reboot(), 5)
    assert call.interactive is False
    assert await bus_ctl.raw() == f'{{"semaphore":0,"max":1,"holders":["{MACHINE_ID}"]}}'.encode()


@pytest.mark.skipif(os.geteuid() != 0, reason="reboot is root only; this run is not root")
async def test_reboot_refused_releases_the_lock(bus_ctl: Ctl) -> None:
    async with FakeLogind(refuse_reboot="not allowed") as logind:
        code, _out, err = await run_ctl(bus_ctl, "reboot")
    assert code == 1
    assert err.startswith("Error rebooting: logind refused Reboot(false)")
    assert "the lock was released" in err and err.count("\n") == 1
    assert logind.calls == []
    assert await bus_ctl.raw() == b'{"semaphore":1,"max":1,"holders":[]}'


@pytest.mark.skipif(os.geteuid() != 0, reason="reboot is root only; this run is not root")
async def test_reboot_when_the_lock_is_taken_does_not_reboot(bus_ctl: Ctl) -> None:
    assert (await run_ctl(bus_ctl, "lock", "someone-else"))[0] == 0
    async with FakeLogind() as logind:
        code, _out, err = await run_ctl(bus_ctl, "reboot")
    assert code == 1 and err.startswith("Error locking: semaphore is at 0")
    assert logind.calls == []


async def test_send_need_reboot_emits_status_update(bus_ctl: Ctl) -> None:
    listener = await MessageBus(bus_address=bus_ctl.env["DBUS_SYSTEM_BUS_ADDRESS"]).connect()
    seen: list[Message] = []
    listener.add_message_handler(lambda m: seen.append(m) if m.message_type is MessageType.SIGNAL else None)
    await call_daemon(listener, "AddMatch", "s", [STATUS_UPDATE_MATCH_RULE])
    try:
        code, _out, err = await run_ctl(bus_ctl, "send-need-reboot")
        assert code == 0, err
        for _ in range(50):
            if any(m.member == "StatusUpdate" for m in seen):
                break
            await asyncio.sleep(0.05)
    finally:
        listener.disconnect()
    updates = [m for m in seen if m.member == "StatusUpdate"]
    assert updates and updates[0].body[2] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"


async def test_send_need_reboot_without_a_bus_is_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-such-socket"
    code, _out, err = await run_ctl(Ctl([], env), "send-need-reboot")
    assert code == 1
    assert err.startswith("Error sending need-reboot: cannot connect to the system bus")
    assert err.count("\n") == 1
