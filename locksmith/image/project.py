"""The project itself, installed into the image's /usr from a wheel of this checkout.

Not a venv, not Debian's python3-* packages: bookworm's httpx (0.23), structlog (22) and cryptography (38)
are older than pyproject.toml's floors. Instead `pip install --target /usr/lib/locksmith/site` of the product
wheel and its dependencies as cp311 manylinux wheels (cached by the dependency list), byte-compiled with
hash-based .pyc (no timestamps: reproducible), started by small scripts under the image's /usr/bin/python3.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tomllib
from pathlib import Path

from locksmith.image.errors import ImageError, run
from locksmith.image.rootfs import cache_lock

SITE = "usr/lib/locksmith/site"
_PLATFORM = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp"]
_PLATFORM += ["--abi", "cp311", "--only-binary=:all:"]
_HOST_ONLY_SCRIPTS = {"locksmith-image"}  # the builder is not something a host runs


def project_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "systemd").is_dir():
        raise ImageError(f"{root} is not a locksmith checkout; run locksmith-image from a clone (pip install -e .)")
    return root


def _pyproject(root: Path) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]


def _wheelhouse(root: Path, cache_dir: Path) -> Path:
    """Dependency wheels for the image's Python, downloaded once per dependency list."""
    deps = sorted(_pyproject(root)["dependencies"])
    house = cache_dir / f"wheels-{hashlib.sha256(chr(10).join(deps).encode()).hexdigest()[:16]}"
    if house.is_dir():
        return house
    with cache_lock(cache_dir):
        if house.is_dir():  # fetched by the builder we waited for
            return house
        partial = house.with_name(house.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--dest", str(partial), *_PLATFORM, *deps]
        run(pip, "downloading the project's dependency wheels from PyPI")
        partial.rename(house)
    return house


_NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


def install_project(tree: Path, cache_dir: Path, work: Path) -> None:
    """The product wheel plus dependencies into tree/usr/lib/locksmith/site, and /usr/bin launchers."""
    root = project_root()
    wheels = work / "wheels"
    # From a private copy: setuptools writes build/ and *.egg-info into the tree it builds, so two builders
    # on one checkout (two test workers) broke each other's wheel, and stale build/ files could slip in.
    source = work / "source"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)], "building the wheel")
    house = _wheelhouse(root, cache_dir)
    site = tree / SITE
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--no-index", "--target", str(site)]
    # By name from a wheel folder, not by file path: pip would record the (temporary) path in
    # direct_url.json and RECORD, and every USR image would differ.
    install += ["--find-links", str(house), "--find-links", str(wheels), *_PLATFORM, _pyproject(root)["name"]]
    run(install, "installing the project into the image")
    # Hash-checked pyc: Python never rewrites them (/usr is read-only) and they carry no build time.
    compile_cmd = [sys.executable, "-m", "compileall", "-q", "-j", "1", "--invalidation-mode", "unchecked-hash"]
    if sys.version_info[:2] == (3, 11):
        run([*compile_cmd, "-d", "/" + SITE, str(site)], "byte-compiling the project")
    for bin_dir in site.glob("bin"):
        shutil.rmtree(bin_dir)  # pip's own launchers point at the build host's Python
    for name, target in _pyproject(root)["scripts"].items():
        if name in _HOST_ONLY_SCRIPTS:
            continue
        module, func = target.split(":")
        script = tree / "usr/bin" / name
        script.write_text(
            "#!/usr/bin/python3 -I\n"
            f"import sys\nsys.path.insert(0, '/{SITE}')\n"
            f"from {module} import {func}\nsys.exit({func}())\n"
        )
        script.chmod(0o755)


def _wanted_by(unit: Path) -> list[str]:
    targets = [line.partition("=")[2].split() for line in unit.read_text().splitlines() if line.startswith("WantedBy=")]
    return [t for line in targets for t in line]


def install_units(tree: Path) -> dict[str, list[str]]:
    """The project's units into /usr/lib/systemd/system and its D-Bus policies.

    Returns {target: units it wants}: each unit's own WantedBy=; a service without one (the cloud-config
    units, started by udev or other units as on CoreOS) is wanted by multi-user.target as before."""
    systemd = project_root() / "systemd"
    wants: dict[str, list[str]] = {}
    for unit in sorted([*systemd.glob("*.service"), *systemd.glob("*.target")]):
        shutil.copy2(unit, tree / "usr/lib/systemd/system" / unit.name)
        targets = _wanted_by(unit) or (["multi-user.target"] if unit.suffix == ".service" else [])
        for target in targets:
            wants.setdefault(target, []).append(unit.name)
    policy_dir = tree / "usr/share/dbus-1/system.d"
    policy_dir.mkdir(parents=True, exist_ok=True)
    for policy in sorted(systemd.glob("*.conf")):
        shutil.copy2(policy, policy_dir / policy.name)
    return wants
