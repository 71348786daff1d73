"""TLS material for tests and the VM fleet: a CA, a certificate per etcd member, and one client certificate.

A member's certificate is for both ends (serverAuth and clientAuth): etcd presents it to clients and to
its peers, and as the client when it dials a peer. Its names are the member's address, 127.0.0.1 (a
client on the member itself) and its host name; the address matters twice, since etcd's peer port also
checks that a peer's certificate names the address the peer connects from. The client certificate
(locksmithd, locksmithctl, the observer) names no host: one certificate is used from every VM and from
the host side.

EC P-256 keys and a week's validity: the material lives as long as one demo, never longer. The CA's key
stays in memory; the VMs need the CA's certificate only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY = timedelta(days=7)
# A VM's clock can lag the host's by a little (the RTC is read at boot): still valid for it.
BACKDATE = timedelta(minutes=5)
CLIENT_NAME = "locksmith"
LOOPBACK = IPv4Address("127.0.0.1")
_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM text. The key is never part of a repr."""

    cert_pem: str
    key_pem: str = field(repr=False)


@dataclass(frozen=True)
class FleetPki:
    ca_pem: str
    members: Mapping[str, KeyPair]  # by member name, which is the VM's host name
    client: KeyPair


@dataclass(frozen=True)
class PemFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PkiFiles:
    ca: Path
    members: Mapping[str, PemFiles]
    client: PemFiles


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _cn(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca(start: datetime, end: datetime) -> _Issuer:
    key = _new_key()
    name = _cn("locksmith fleet CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(name, key, cert)


def _leaf(
    issuer: _Issuer,
    common_name: str,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
    start: datetime,
    end: datetime,
) -> KeyPair:
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_cn(common_name))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(_cert_pem(builder.sign(issuer.key, hashes.SHA256())), _key_pem(key))


def generate(
    members: Mapping[str, IPv4Address | str],
    *,
    client_name: str = CLIENT_NAME,
    validity: timedelta = DEFAULT_VALIDITY,
    now: datetime | None = None,
) -> FleetPki:
    """A CA and the certificates of `members` (name -> address) and of one client, valid from `now`
    (less a few minutes) for `validity`."""
    for name in members:
        if not _HOSTNAME.fullmatch(name):
            raise ValueError(f"member name {name!r}: use a host name label (a-z, 0-9, '-', at most 63)")
    start = (now or datetime.now(UTC)) - BACKDATE
    end = start + BACKDATE + validity
    ca = _ca(start, end)
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    issued = {}
    for name, address in members.items():
        sans: list[x509.GeneralName] = [
            x509.IPAddress(IPv4Address(address)),
            x509.IPAddress(LOOPBACK),
            x509.DNSName(name),
        ]
        issued[name] = _leaf(ca, name, both, sans, start, end)
    client = _leaf(ca, client_name, [ExtendedKeyUsageOID.CLIENT_AUTH], [], start, end)
    return FleetPki(_cert_pem(ca.cert), issued, client)


def _write(path: Path, text: str, mode: int) -> Path:
    # Created with its final mode (never briefly world-readable), and a file already there gets it too.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), mode)
        f.write(text)
    return path


def write(pki: FleetPki, directory: Path) -> PkiFiles:
    """The PEM files under `directory` (made if missing): `ca.pem`, `member-<name>.pem` and
    `member-<name>-key.pem`, `client.pem` and `client-key.pem`; private keys mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)

    def pair(stem: str, keys: KeyPair) -> PemFiles:
        return PemFiles(
            _write(directory / f"{stem}.pem", keys.cert_pem, 0o644),
            _write(directory / f"{stem}-key.pem", keys.key_pem, 0o600),
        )

    return PkiFiles(
        ca=_write(directory / "ca.pem", pki.ca_pem, 0o644),
        members={name: pair(f"member-{name}", keys) for name, keys in pki.members.items()},
        client=pair("client", pki.client),
    )
