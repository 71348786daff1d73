"""What a host installs: `pip install .` (no extras) gives the product only — no harness, no fakes, no
matplotlib — and the agent starts from it."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of the tracked tree, so the build's scratch files never land in the checkout.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.split():
        src = ROOT / name
        if src.is_file():
            dst = build / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(build)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("locksmith-*.whl")
    return found


def test_the_wheel_holds_the_product_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {"locksmith", "strategies"} <= top
    assert top - {"locksmith", "strategies"} == {next(t for t in top if t.endswith(".dist-info"))}
    assert not [n for n in names if "harness" in n or "fake" in n or "devtools" in n or "chaos" in n]


def test_the_wheel_requires_no_harness_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    plain = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert plain, "the product has runtime dependencies"
    assert not [r for r in plain if r.lower().startswith(("matplotlib", "pytest", "hypothesis", "freezegun"))]
    assert "locksmithd" in entry_points and "locksmithctl" in entry_points
    for harness_program in ("locksmith-demo", "locksmith-chaos", "locksmith-update-server"):
        assert harness_program not in entry_points


def test_the_agent_starts_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "empty.conf").write_text("")
    # -I -S: no site module, so the checkout's editable install is invisible; the runtime
    # dependencies come from this interpreter's site-packages, after the wheel's own tree.
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from locksmith.agent.main import main\n"
        "code = main(sys.argv[3:])\n"
        "assert main.__code__.co_filename.startswith(sys.argv[1]), main.__code__.co_filename\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('harness', 'matplotlib'))\n"
        "print('exit', code, 'leaked', leaked)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            probe,
            str(target),
            sysconfig.get_path("purelib"),
            "--reboot-strategy",
            "off",
            "--machine-id-file",
            str(machine_id),
            "--coordinator-file",
            str(tmp_path / "coordinator.conf"),
            "--config",
            str(tmp_path / "empty.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "exit 0 leaked []" in proc.stdout
    assert "STATE=running" in (tmp_path / "coordinator.conf").read_text()
