"""Where user data comes from: a file, an OpenStack config drive, a URL, or `cloud-config-url=` on the
kernel command line. Each returns the raw bytes (None: this source has no user data) and metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from locksmith.cloudconfig.userdata import MAX_USER_DATA

URL_TIMEOUT = 10.0
URL_ATTEMPTS = 3
CMDLINE_KEY = "cloud-config-url"


class DatasourceError(RuntimeError):
    """A source we were told to read but cannot; str() is one line naming it and the fix."""


@dataclass
class Source:
    user_data: bytes | None
    # hostname, public_keys and the $private_ipv4-style values, when the source has them.
    hostname: str | None = None
    public_keys: list[str] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_USER_DATA + 1)
    if len(data) > MAX_USER_DATA:
        raise DatasourceError(f"{path}: over the {MAX_USER_DATA // 1024 // 1024} MiB user data limit; make it smaller")
    return data


def from_file(path: Path) -> Source:
    try:
        return Source(_read_capped(path))
    except FileNotFoundError:
        raise DatasourceError(f"{path}: no such file; give the path of the user data") from None
    except IsADirectoryError:
        raise DatasourceError(f"{path}: is a directory; give the user data file (or use --from-configdrive)") from None
    except OSError as exc:
        raise DatasourceError(f"{path}: cannot read ({exc.strerror})") from None


def _json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DatasourceError(f"{path}: not readable JSON ({exc}); fix or remove it") from None
    return data if isinstance(data, dict) else {}


def from_configdrive(root: Path) -> Source:
    """The OpenStack layout CoreOS read: openstack/latest/{user_data,meta_data.json}, ec2 addresses."""
    if not root.is_dir():
        raise DatasourceError(f"{root}: no config drive mounted there; mount the config-2 volume first")
    user_data_path = root / "openstack" / "latest" / "user_data"
    source = from_file(user_data_path) if user_data_path.exists() else Source(None)
    meta = _json(root / "openstack" / "latest" / "meta_data.json")
    if isinstance(meta.get("hostname"), str):
        source.hostname = str(meta["hostname"])
    keys = meta.get("public_keys")
    if isinstance(keys, dict):
        source.public_keys = [str(k).strip() for k in keys.values() if isinstance(k, str)]
    ec2 = _json(root / "ec2" / "2009-04-04" / "meta-data.json")
    for ours, theirs in (("private_ipv4", "local-ipv4"), ("public_ipv4", "public-ipv4")):
        if isinstance(ec2.get(theirs), str) and ec2[theirs]:
            source.addresses[ours] = str(ec2[theirs])
    return source


def from_url(url: str) -> Source:
    if not url.startswith(("http://", "https://")):
        raise DatasourceError(f"{url}: not an http(s) URL")
    # Imported here: every boot reads a config drive or a file, and httpx with tenacity would be a third
    # of coreos-cloudinit's start on the boot's critical path (seconds on a slow VM) for a URL few use.
    import httpx
    import tenacity

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(URL_ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=0.5, max=4),
        retry=tenacity.retry_if_exception_type(httpx.TransportError),
        reraise=True,
    )
    def fetch() -> tuple[int, bytes]:
        with httpx.Client(timeout=URL_TIMEOUT, follow_redirects=True) as client, client.stream("GET", url) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_USER_DATA:
                    raise DatasourceError(f"{url}: over the {MAX_USER_DATA // 1024 // 1024} MiB user data limit")
            return response.status_code, bytes(body)

    try:
        status, body = fetch()
    except httpx.HTTPError as exc:
        kind = exc.__class__.__name__
        raise DatasourceError(f"{url}: unreachable after {URL_ATTEMPTS} attempts ({kind}: {exc})") from None
    if status == 404:
        return Source(None)  # CoreOS: no user data there is not an error
    if status != 200:
        raise DatasourceError(f"{url}: the server answered {status}; check the URL")
    return Source(body)


def from_cmdline(cmdline: str) -> Source:
    """`cloud-config-url=URL` on the kernel command line (the last one wins, as the kernel's own)."""
    urls = [word.split("=", 1)[1] for word in cmdline.split() if word.startswith(f"{CMDLINE_KEY}=")]
    if not urls:
        return Source(None)
    return from_url(urls[-1])
