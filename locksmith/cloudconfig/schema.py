"""The cloud-config schema: every key CoreOS's coreos-cloudinit knew, with its type and value check.

A key is declared once here; the validator (`validate.py`) walks a document against these declarations
and the appliers read the typed result. `-` and `_` in keys are the same (`ssh-authorized-keys`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

Kind = Literal["string", "bool", "int", "strings", "struct", "structs"]

# A value check returns None when the value is fine, else the problem ("is not ...: use ...").
Check = Callable[[str], str | None]


@dataclass(frozen=True)
class Field:
    kind: Kind
    check: Check | None = None
    struct: dict[str, Field] | None = None
    required: bool = False
    # The agent's or the engine's own parser judges this value (settings_check.py): program and variable.
    owner: tuple[Literal["agent", "engine"], str] | None = None
    env: str | None = None  # the variable the value is written to (drop-ins)
    unsupported: str | None = None  # known to CoreOS, but nothing here applies it: why
    note: str | None = None  # applied, but not as its name says: how (said as an info finding)


def _choice(*allowed: str) -> Check:
    def check(text: str) -> str | None:
        return None if text in allowed else f"invalid value {text!r}: use one of {', '.join(allowed)}"

    return check


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_hostname(text: str) -> str | None:
    if len(text) > 253 or not all(_HOST_LABEL.fullmatch(p) for p in text.split(".")):
        return f"invalid value {text!r}: a host name is dot-separated labels of letters, digits and '-' (≤ 63 each)"
    return None


def _abs_path(text: str) -> str | None:
    if not text.startswith("/"):
        return f"invalid value {text!r}: use an absolute path"
    if ".." in text.split("/"):
        return f"invalid value {text!r}: a path may not contain '..'"
    return None


def _permissions(text: str) -> str | None:
    return None if re.fullmatch(r"0?[0-7]{3,4}", text) else f"invalid value {text!r}: use octal like 0644"


def _owner(text: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?", text):
        return None
    return f"invalid value {text!r}: use user or user:group"


def _account_field(text: str) -> str | None:
    # /etc/passwd and /etc/shadow are ':'-separated lines: a ':' or a newline would corrupt them.
    if ":" in text or not text.isprintable():
        return "invalid value: ':' and control characters cannot go into /etc/passwd or /etc/shadow"
    return None


def _user_name(text: str) -> str | None:
    if re.fullmatch(r"[a-z_][a-z0-9_-]*\$?", text) and len(text) <= 32:
        return None
    return f"invalid value {text!r}: a user name is lower-case letters, digits, '_' and '-' (≤ 32)"


def _url_list(text: str) -> str | None:
    for url in text.split(","):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https", "unix", "unixs") or not (parts.netloc or parts.path):
            return f"invalid URL {url.strip()!r}: use e.g. http://10.0.0.1:2379 (comma-separated for several)"
    return None


def _url(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"invalid URL {text!r}: use e.g. https://discovery.etcd.io/<token>"
    return None


def _initial_cluster(text: str) -> str | None:
    for member in text.split(","):
        name, eq, urls = member.strip().partition("=")
        if not name or not eq or _url_list(urls):
            return f"invalid value {member.strip()!r}: use name=http://host:2380 (comma-separated members)"
    return None


def _unit_name(text: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9:_.\\@-]+\.[a-z]+", text) and "/" not in text:
        return None
    return f"invalid value {text!r}: use a systemd unit name with its suffix, e.g. web.service"


def _file_name(text: str) -> str | None:
    if text and "/" not in text and text not in (".", ".."):
        return None
    return f"invalid value {text!r}: use a file name without '/'"


ENCODINGS = ("b64", "base64", "gz", "gzip", "gz+base64", "gzip+base64", "gz+b64", "gzip+b64")
COMMANDS = ("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart")

USER: dict[str, Field] = {
    "name": Field("string", required=True, check=_user_name),
    "passwd": Field("string", check=_account_field),
    "ssh_authorized_keys": Field("strings"),
    "gecos": Field("string", check=_account_field),
    "homedir": Field("string", check=_abs_path),
    "no_create_home": Field("bool"),
    "primary_group": Field("string"),
    "groups": Field("strings"),
    "no_user_group": Field("bool"),
    "system": Field("bool"),
    "no_log_init": Field("bool"),
    "shell": Field("string", check=_abs_path),
    "coreos_ssh_import_github": Field("string", unsupported="importing keys from GitHub needs the network"),
    "coreos_ssh_import_github_users": Field("strings", unsupported="importing keys from GitHub needs the network"),
    "coreos_ssh_import_url": Field("string", unsupported="importing keys from a URL is not supported"),
}


def _writable_path(text: str) -> str | None:
    if problem := _abs_path(text):
        return problem
    if text == "/usr" or text.startswith("/usr/"):
        return f"invalid value {text!r}: /usr is read-only (the OS image); write under /etc or /var"
    return None


WRITE_FILE: dict[str, Field] = {
    "path": Field("string", required=True, check=_writable_path),
    "content": Field("string"),
    "owner": Field("string", check=_owner),
    "permissions": Field("string", check=_permissions),
    "encoding": Field("string", check=_choice(*ENCODINGS)),
}

DROP_IN: dict[str, Field] = {
    "name": Field("string", required=True, check=_file_name),
    "content": Field("string"),
}

UNIT: dict[str, Field] = {
    "name": Field("string", required=True, check=_unit_name),
    "content": Field("string"),
    "command": Field("string", check=_choice(*COMMANDS)),
    "enable": Field("bool"),
    "runtime": Field("bool"),
    "mask": Field("bool"),
    "drop_ins": Field("structs", struct=DROP_IN),
}

UPDATE: dict[str, Field] = {
    "reboot_strategy": Field("string", owner=("agent", "REBOOT_STRATEGY"), env="REBOOT_STRATEGY"),
    "group": Field("string", owner=("engine", "GROUP"), env="GROUP"),
    "server": Field("string", owner=("engine", "SERVER"), env="SERVER"),
}

LOCKSMITH: dict[str, Field] = {
    "endpoint": Field("string", owner=("agent", "LOCKSMITHD_ENDPOINT"), env="LOCKSMITHD_ENDPOINT"),
    "group": Field("string", owner=("agent", "LOCKSMITHD_GROUP"), env="LOCKSMITHD_GROUP"),
    "window_start": Field("string", owner=("agent", "REBOOT_WINDOW_START"), env="REBOOT_WINDOW_START"),
    "window_length": Field("string", owner=("agent", "REBOOT_WINDOW_LENGTH"), env="REBOOT_WINDOW_LENGTH"),
    "etcd_cafile": Field("string", owner=("agent", "LOCKSMITHD_ETCD_CAFILE"), env="LOCKSMITHD_ETCD_CAFILE"),
    "etcd_certfile": Field("string", owner=("agent", "LOCKSMITHD_ETCD_CERTFILE"), env="LOCKSMITHD_ETCD_CERTFILE"),
    "etcd_keyfile": Field("string", owner=("agent", "LOCKSMITHD_ETCD_KEYFILE"), env="LOCKSMITHD_ETCD_KEYFILE"),
    "etcd_username": Field("string", owner=("agent", "LOCKSMITHD_ETCD_USERNAME"), env="LOCKSMITHD_ETCD_USERNAME"),
    "etcd_password": Field("string", owner=("agent", "LOCKSMITHD_ETCD_PASSWORD"), env="LOCKSMITHD_ETCD_PASSWORD"),
}


def _etcd(kind: Kind = "string", check: Check | None = None, env: str | None = None, **kw: object) -> Field:
    return Field(kind, check=check, env=env, **kw)  # type: ignore[arg-type]


ETCD2: dict[str, Field] = {
    "advertise_client_urls": _etcd(check=_url_list),
    "ca_file": _etcd(),  # see ETCD2_DEPRECATED_CA below
    "cert_file": _etcd(),
    "client_cert_auth": _etcd("bool"),
    "cors": _etcd(),
    "data_dir": _etcd(check=_abs_path),
    "debug": _etcd("bool"),
    "discovery": _etcd(check=_url),
    "discovery_fallback": _etcd(check=_choice("exit", "proxy")),
    "discovery_proxy": _etcd(check=_url),
    "discovery_srv": _etcd(),
    "election_timeout": _etcd("int"),
    "enable_pprof": _etcd("bool"),
    "force_new_cluster": _etcd("bool"),
    "heartbeat_interval": _etcd("int"),
    "initial_advertise_peer_urls": _etcd(check=_url_list),
    "initial_cluster": _etcd(check=_initial_cluster),
    "initial_cluster_state": _etcd(check=_choice("new", "existing")),
    "initial_cluster_token": _etcd(),
    "key_file": _etcd(),
    "listen_client_urls": _etcd(check=_url_list),
    "listen_peer_urls": _etcd(check=_url_list),
    "log_package_levels": _etcd(),
    "max_snapshots": _etcd("int"),
    "max_wals": _etcd("int"),
    "name": _etcd(),
    "peer_ca_file": _etcd(),
    "peer_cert_file": _etcd(),
    "peer_client_cert_auth": _etcd("bool"),
    "peer_key_file": _etcd(),
    "peer_trusted_ca_file": _etcd(),
    "proxy": _etcd(check=_choice("on", "off", "readonly")),
    "proxy_dial_timeout": _etcd("int"),
    "proxy_failure_wait": _etcd("int"),
    "proxy_read_timeout": _etcd("int"),
    "proxy_refresh_interval": _etcd("int"),
    "proxy_write_timeout": _etcd("int"),
    "snapshot_count": _etcd("int"),
    "strict_reconfig_check": _etcd("bool"),
    "trusted_ca_file": _etcd(),
    "wal_dir": _etcd(check=_abs_path),
}
# etcd 2's --ca-file meant "trust this CA and require client certificates"; etcd 3.4 has no such flag and
# would ignore ETCD_CA_FILE (a cluster open to any client), so it is written as what it meant:
# etcd 2's name → (the trusted CA key, the client-certificate key) etcd 3.4 reads.
ETCD2_DEPRECATED_CA = {
    "ca_file": ("trusted_ca_file", "client_cert_auth"),
    "peer_ca_file": ("peer_trusted_ca_file", "peer_client_cert_auth"),
}
for _name, _f in list(ETCD2.items()):
    ETCD2[_name] = replace(_f, env="ETCD_" + _name.upper())
for _old, (_trusted, _auth) in ETCD2_DEPRECATED_CA.items():
    ETCD2[_old] = replace(ETCD2[_old], note=f"etcd 3.4 has no {_old}: written as {_trusted} with {_auth} true")

OEM: dict[str, Field] = {
    "id": Field("string"),
    "name": Field("string"),
    "version_id": Field("string"),
    "home_url": Field("string"),
    "bug_report_url": Field("string"),
}

_NOT_HERE = "this image has no such service"

COREOS: dict[str, Field] = {
    "units": Field("structs", struct=UNIT),
    "update": Field("struct", struct=UPDATE),
    "locksmith": Field("struct", struct=LOCKSMITH),
    "etcd2": Field("struct", struct=ETCD2),
    "oem": Field("struct", struct=OEM),
    "etcd": Field("struct", struct={}, unsupported="etcd 0.4 is gone; use coreos.etcd2"),
    "fleet": Field("struct", struct={}, unsupported=_NOT_HERE),
    "flannel": Field("struct", struct={}, unsupported=_NOT_HERE),
}

TOP: dict[str, Field] = {
    "hostname": Field("string", check=check_hostname),
    "users": Field("structs", struct=USER),
    "ssh_authorized_keys": Field("strings"),
    "write_files": Field("structs", struct=WRITE_FILE),
    "manage_etc_hosts": Field("string", check=_choice("localhost")),
    "coreos": Field("struct", struct=COREOS),
}

ROOT = Field("struct", struct=TOP)


def _places() -> dict[str, str]:
    where: dict[str, str] = {}
    for name in COREOS:
        where.setdefault(name, "coreos")
    for section, fields in (("coreos.update", UPDATE), ("coreos.locksmith", LOCKSMITH)):
        for name in fields:
            where.setdefault(name, section)
    for name in TOP:
        where.setdefault(name, "the top level")
    return where


# key -> the one place it belongs (the first declaration wins for names used twice).
PLACES: dict[str, str] = _places()
