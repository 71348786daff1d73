"""The fleet's certificates, checked by cryptography's path validation (the etcd test uses them for real)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from harness.devtools import pki

MEMBERS = {"vm1": IPv4Address("10.77.0.11"), "vm2": IPv4Address("10.77.0.12"), "vm3": IPv4Address("10.77.0.13")}


@pytest.fixture(scope="module")
def material() -> pki.FleetPki:
    return pki.generate(MEMBERS)


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def policy(ca: x509.Certificate) -> PolicyBuilder:
    return PolicyBuilder().store(Store([ca])).time(datetime.now(UTC))


def test_each_member_certificate_serves_its_address_loopback_and_name_and_is_a_client_too(
    material: pki.FleetPki,
) -> None:
    ca = cert(material.ca_pem)
    for name, address in MEMBERS.items():
        leaf = cert(material.members[name].cert_pem)
        for subject in (x509.IPAddress(address), x509.IPAddress(pki.LOOPBACK), x509.DNSName(name)):
            chain = policy(ca).build_server_verifier(subject).verify(leaf, [])
            assert chain[-1] == ca
        assert policy(ca).build_client_verifier().verify(leaf, []).chain[-1] == ca
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    other = cert(material.members["vm2"].cert_pem)
    with pytest.raises(x509.verification.VerificationError):
        policy(ca).build_server_verifier(x509.IPAddress(MEMBERS["vm1"])).verify(other, [])


def test_the_client_certificate_is_for_clients_only_and_names_no_host(material: pki.FleetPki) -> None:
    ca = cert(material.ca_pem)
    client = cert(material.client.cert_pem)
    # cryptography's client policy is the web's (a SAN required); Go's, etcd's, asks for none.
    client.verify_directly_issued_by(ca)
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.verification.VerificationError):
        policy(ca).build_server_verifier(x509.IPAddress(pki.LOOPBACK)).verify(client, [])
    with pytest.raises(x509.ExtensionNotFound):
        client.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_keys_are_p256_and_validity_is_a_week(material: pki.FleetPki) -> None:
    now = datetime.now(UTC)
    pems = [material.ca_pem, material.client.cert_pem, *(m.cert_pem for m in material.members.values())]
    for pem in pems:
        c = cert(pem)
        key = c.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        assert c.not_valid_before_utc <= now <= c.not_valid_after_utc
        assert c.not_valid_after_utc - now <= pki.DEFAULT_VALIDITY
    ca = cert(material.ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for m in material.members.values():
        leaf = cert(m.cert_pem)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        leaf.verify_directly_issued_by(ca)


def test_written_files_keys_0600_and_each_key_matches_its_certificate(material: pki.FleetPki, tmp_path: Path) -> None:
    out = tmp_path / "pki"
    out.mkdir()
    # A key file already there with a looser mode gets 0600 too.
    (out / "client-key.pem").write_text("old")
    (out / "client-key.pem").chmod(0o644)
    files = pki.write(material, out)
    assert files.ca.read_text() == material.ca_pem
    pairs = [files.client, *files.members.values()]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ca.pem", *(f.name for p in pairs for f in (p.cert, p.key))]
    )
    for pair in pairs:
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(pair.cert.stat().st_mode) == 0o644
        key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
        certificate = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        assert key.public_key() == certificate.public_key()


def test_no_private_key_in_a_repr(material: pki.FleetPki) -> None:
    assert "PRIVATE KEY" not in repr(material)
    assert "PRIVATE KEY" in material.client.key_pem


def test_a_bad_member_name_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^member name 'vm_1': use a host name label") as bad:
        pki.generate({"vm_1": "10.77.0.11"})
    assert "\n" not in str(bad.value)


def test_validity_starts_a_little_before_now() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    c = cert(pki.generate({"vm1": "10.77.0.11"}, now=now, validity=timedelta(days=2)).client.cert_pem)
    assert c.not_valid_before_utc == now - pki.BACKDATE
    assert c.not_valid_after_utc == now + timedelta(days=2)
